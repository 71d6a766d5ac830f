"""Stage study_fits: the study-level analyses of an aggregated summary, in fits.nc.

Input: results/<study>/summary.nc (stages.aggregate). Output: results/<study>/fits.nc
(artifact kind "fit") with, for the analyses the study asks for,

- power_laws: exponents of the observables at stopping in T, P and N, with intervals,
  the scaling predictions beside them and the fit window of every point
  (analysis.power_laws);
- critical_temperature: T_c per curve, the exponent a of T_c ~ P^-a and the collapse
  exponent, with intervals (analysis.critical_temperature).

Both work on any summary with the needed variables (replica_status, t_star and the
recorded observables), perceptron or network.
"""

from __future__ import annotations

import xarray as xr

from sgdnoise.analysis import critical_temperature, power_laws
from sgdnoise.analysis.scaling_data import TEMPERATURE, with_temperature
from sgdnoise.io.artifact import provenance
from sgdnoise.io.metadata import describe
from sgdnoise.workflow_plan import ANALYSES, analyses_of_stage

STUDY_ANALYSES = tuple(analyses_of_stage(list(ANALYSES), "study_fits"))


def study_fits(summary: xr.Dataset, analyses: list[str]) -> xr.Dataset:
    """The study-level fits the analyses ask for (ValueError if none applies)."""
    asked = [name for name in analyses if name in STUDY_ANALYSES]
    if not asked:
        raise ValueError(
            f"no study-level analysis among {analyses}; study-level analyses: "
            + ", ".join(STUDY_ANALYSES)
        )
    parts, units = [], {}
    if "power_laws" in asked:
        parts.append(power_laws.power_laws(summary))
        units.update(power_laws.UNITS)
    if "critical_temperature" in asked:
        parts.append(critical_temperature.critical_temperature(summary))
        units.update(critical_temperature.UNITS)
    fits = xr.merge(parts, combine_attrs="drop_conflicts", join="outer")
    if "power_law_window" in fits:  # observables without a power law: never in a window
        fits["power_law_window"] = fits["power_law_window"].fillna(False).astype(bool)
    for part in parts:
        fits.attrs.update(part.attrs)
    fits.attrs.update(provenance("fit"))
    fits.attrs["study_analyses"] = ", ".join(asked)
    fits.attrs["grid_axes"] = summary.attrs.get("grid_axes", "{}")
    fits.attrs["example_config"] = summary.attrs.get("example_config", "{}")
    source = with_temperature(summary)
    for name in fits.coords:
        if name in source.coords and name not in units:
            attrs = source[name].attrs
            units[name] = (attrs.get("units", "1"), attrs.get("long_name", f"grid axis {name}"))
    units.setdefault(TEMPERATURE, ("1", "temperature T = lr / (h B)"))
    return describe(fits, units)
