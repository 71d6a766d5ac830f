"""Stage study_fits: the study-level analyses of an aggregated summary, in fits.nc.

Input: results/<study>/summary.nc (stages.aggregate). Output: results/<study>/fits.nc
(artifact kind "fit") with, for the analyses the study asks for,

- power_laws: exponents of the observables at stopping in T, P and N, with intervals,
  the scaling predictions beside them and the fit window of every point
  (analysis.power_laws);
- critical_temperature: T_c per curve, the exponent a of T_c ~ P^-a with the line
  through the T_c at that a, and the collapse exponent, with intervals
  (analysis.critical_temperature);
- discretisation: T_eff / T extrapolated to lr -> 0 along the study's lr axis, for the
  simulation and the DMFT (analysis.fdt.zero_step_extrapolation);
- optimal_temperature: T_opt per alpha (and depth, ...) with intervals and statuses, and
  the exponent k of T_opt ~ alpha^k beside (D-1)/(D+1) (analysis.optimal_temperature);
- margin_crossover: T_c per alpha at fixed P, the slope s of T_c ~ kappa^s (kappa = 1/alpha)
  and c = T_c / kappa, with intervals, beside s = 1 (analysis.margin_crossover).

The scaling analyses work on any summary with the needed variables (replica_status,
t_star and the recorded observables), perceptron or network; the extrapolation on a
summary whose points carry T_eff / T (stages.fit).
"""

from __future__ import annotations

from collections.abc import Callable

import xarray as xr

from sgdnoise.analysis import (
    critical_temperature,
    fdt,
    margin_crossover,
    optimal_temperature,
    power_laws,
)
from sgdnoise.analysis.scaling_data import TEMPERATURE, with_temperature
from sgdnoise.io.artifact import provenance
from sgdnoise.io.metadata import describe

# analysis -> (its study-level fit of a summary, the units of what the fit returns)
STUDY_FITS: dict[str, tuple[Callable[[xr.Dataset], xr.Dataset], dict]] = {
    "power_laws": (power_laws.power_laws, power_laws.UNITS),
    "critical_temperature": (critical_temperature.critical_temperature, critical_temperature.UNITS),
    "discretisation": (fdt.zero_step_extrapolation, fdt.ZERO_STEP_UNITS),
    "optimal_temperature": (optimal_temperature.optimal_temperature, optimal_temperature.UNITS),
    "margin_crossover": (margin_crossover.margin_crossover, margin_crossover.UNITS),
}
STUDY_ANALYSES = tuple(STUDY_FITS)


def study_fits(summary: xr.Dataset, analyses: list[str]) -> xr.Dataset:
    """The study-level fits the analyses ask for (ValueError if none applies)."""
    asked = [name for name in analyses if name in STUDY_FITS]
    if not asked:
        raise ValueError(
            f"no study-level analysis among {analyses}; study-level analyses: "
            + ", ".join(STUDY_ANALYSES)
        )
    parts, units = [], {}
    for name, (fit, fit_units) in STUDY_FITS.items():
        if name in asked:
            parts.append(fit(summary))
            units.update(fit_units)
    fits = xr.merge(parts, compat="no_conflicts", combine_attrs="drop_conflicts", join="outer")
    if "power_law_window" in fits:  # observables without a power law: never in a window
        fits["power_law_window"] = fits["power_law_window"].fillna(False).astype(bool)
    for part in parts:
        fits.attrs.update(part.attrs)
    fits.attrs.update(provenance("fit"))
    fits.attrs["study_analyses"] = ", ".join(asked)
    fits.attrs["grid_axes"] = summary.attrs.get("grid_axes", "{}")
    fits.attrs["example_config"] = summary.attrs["example_config"]
    # grid axes: as the summary declares them (lr as the temperature it was converted to)
    sources = [with_temperature(summary), summary] if TEMPERATURE in fits.coords else [summary]
    for name in fits.coords:
        source = next((s for s in sources if name in s.coords), None)
        if source is not None and name not in units:
            attrs = source[name].attrs
            units[name] = (attrs.get("units", "1"), attrs.get("long_name", f"grid axis {name}"))
    units.setdefault(TEMPERATURE, ("1", "temperature T = lr / (h B)"))
    return describe(fits, units)
