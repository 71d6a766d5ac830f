"""Stage fit: the per-point analyses of a run (and its two-time artifact).

- teff (needs the two-time artifact): T_eff per window with CI, stationarity, FDT curve;
- replica_distance (pairing same_init, stop zero_loss): d with CI;
- margins (from the final stabilities of the margin models): contacts, kappa_eff, gap density;
- dmft (with the point's dmft artifact): the theory's T_eff by the same fit, its FDT
  curve and its loss at the run's times, as dmft_* variables (analysis.dmft_fits), beside
  the simulation's loss: its mean over replicas and standard error over units;
- every T_eff also in the units the figures compare (fdt.temperature_ratios): T_eff / b
  under the sum normalisation, T_eff / T for an imposed temperature.
"""

from __future__ import annotations

import xarray as xr

from sgdnoise.analysis import dmft_fits, fdt, margins, replica_distance
from sgdnoise.analysis.statistics import mean_and_error
from sgdnoise.io.artifact import artifact_config, provenance
from sgdnoise.io.metadata import describe

LOSS_UNITS = {
    "train_loss_mean": ("1", "training loss per sample, mean over replicas"),
    "train_loss_stderr": (
        "1",
        "standard error of the mean training loss over independent units (a same-init pair "
        "counts once)",
    ),
}


def loss_statistics(run: xr.Dataset, per_unit: int) -> xr.Dataset:
    """The training loss's mean over replicas and its standard error over units of
    ``per_unit`` replicas, at every record of the run."""
    mean, error = mean_and_error(run["train_loss"].transpose("replica", "record").values, per_unit)
    time = ("record", run["time"].values)
    return xr.Dataset(
        {"train_loss_mean": ("record", mean), "train_loss_stderr": ("record", error)},
        coords={"time": time},
    )


def fit_point(
    run: xr.Dataset, two_time: xr.Dataset | None = None, dmft: xr.Dataset | None = None
) -> xr.Dataset:
    """Every per-point analysis that applies to this run, in one fits Dataset."""
    config = artifact_config(run)
    per_unit = config.run.replicas_per_unit  # a same-init pair is one independent unit
    parts, units = [], {}
    if "final_stabilities" in run:  # the margin models' (model.kind torch has none)
        stabilities = run["final_stabilities"].values
        parts.append(margins.margins(stabilities, config.loss.kappa, per_unit=per_unit))
        units.update(margins.UNITS)
    if config.run.pairing == "same_init":
        parts.append(replica_distance.replica_distance(run, seed=config.run.seed))
        units.update(replica_distance.UNITS)
    if two_time is not None:
        parts.append(
            fdt.fit_effective_temperature(
                two_time, config.optimizer, seed=config.run.seed, per_unit=per_unit
            )
        )
        units.update(fdt.UNITS)
    if dmft is not None:
        parts.append(dmft_fits.dmft_fits(dmft, run))
        parts.append(loss_statistics(run, per_unit))
        units.update(dmft_fits.UNITS, **LOSS_UNITS)
    fits = xr.merge(parts, compat="no_conflicts", combine_attrs="no_conflicts")
    fits = fits.merge(fdt.temperature_ratios(fits, config.optimizer))
    fits.attrs.update(provenance("fit", config))
    units["lag"] = ("lr x steps", "time difference s = t - t_w")
    return describe(fits, units)
