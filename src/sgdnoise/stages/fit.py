"""Stage fit: the per-point analyses of a run (and its two-time artifact).

- teff (needs the two-time artifact): T_eff per window with CI, stationarity, FDT curve;
- replica_distance (pairing same_init, stop zero_loss): d with CI;
- margins (always, from the final stabilities): contacts, kappa_eff, gap density;
- dmft (with the point's dmft artifact): the theory's T_eff by the same fit, its FDT
  curve and its loss at the run's times, as dmft_* variables (analysis.dmft_fits).
"""

from __future__ import annotations

import xarray as xr

from sgdnoise.analysis import dmft_fits, fdt, margins, replica_distance
from sgdnoise.analysis.replica_statistics import replicas_per_unit
from sgdnoise.io.artifact import artifact_config, provenance
from sgdnoise.io.metadata import describe


def fit_point(
    run: xr.Dataset, two_time: xr.Dataset | None = None, dmft: xr.Dataset | None = None
) -> xr.Dataset:
    """Every per-point analysis that applies to this run, in one fits Dataset."""
    config = artifact_config(run)
    per_unit = replicas_per_unit(config["run"])  # a same-init pair is one independent unit
    final_stabilities = run["final_stabilities"].values
    parts = [margins.margins(final_stabilities, config["loss"]["kappa"], per_unit=per_unit)]
    units = dict(margins.UNITS)
    if config["run"]["pairing"] == "same_init":
        parts.append(replica_distance.replica_distance(run, seed=config["run"]["seed"]))
        units.update(replica_distance.UNITS)
    if two_time is not None:
        parts.append(
            fdt.fit_effective_temperature(
                two_time, config["optimizer"], seed=config["run"]["seed"], per_unit=per_unit
            )
        )
        units.update(fdt.UNITS)
    if dmft is not None:
        parts.append(dmft_fits.dmft_fits(dmft, run))
        units.update(dmft_fits.UNITS)
    fits = xr.merge(parts, combine_attrs="no_conflicts")
    fits.attrs.update(provenance("fit", config))
    units["lag"] = ("lr x steps", "time difference s = t - t_w")
    return describe(fits, units)
