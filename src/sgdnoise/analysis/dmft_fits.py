"""The DMFT read on the simulation's grids, and its T_eff by the simulation's own FDT fit.

A dmft artifact (stages.dmft.solve_dmft) holds, per solver seed, the loss, C(t, t), C(t, t_w)
and chi(t, t_w) on the step grid k = 0..T. Here they are read at the run's recorded steps
and on the lag grid of the two-time stage (fdt.lag_grid), so that theory and simulation
are compared at identical times, and the theory's effective temperature is fitted by
fdt.fit_effective_temperature with the solver seeds in the place of the replicas: the
same windows, the same stationarity check, and a bootstrap interval that measures the
solver's Monte Carlo error. At the run's last step the DMFT's replica distance of a
same-init pair and the margins of its final stabilities (analysis.margins, the simulation's
own code, solver seeds as replicas: contact fraction, fraction within delta, gap density)
are read too; kappa_eff and the number of contacts are left out (an extreme and a count
over P samples: no N -> infinity value). Every variable is the simulation's name with a
``dmft_`` prefix, so that a fits artifact (and the study summary) holds both side by side.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from sgdnoise.analysis import fdt, margins
from sgdnoise.analysis.statistics import standard_error
from sgdnoise.config.point import PointConfig
from sgdnoise.io.artifact import ArtifactError, artifact_config

PREFIX = "dmft_"


def dmft_two_time(dmft: xr.Dataset, config: PointConfig) -> xr.Dataset:
    """The DMFT's C(t_w + s, t_w), C(t, t), chi and loss on the two-time stage's lag grid.

    Shaped like a two-time artifact (dims replica, t_w, lag), with the solver seeds as
    replicas, so that fdt.fit_effective_temperature applies unchanged.
    """
    lr = float(config.optimizer.lr)
    waiting_times = dmft["t_w"].values
    lags, lag_steps = fdt.lag_grid(config.run, lr, float(waiting_times.max()))
    later = dmft["waiting_step"].values[:, None] + lag_steps[None, :]  # (t_w, lag)
    columns = np.arange(waiting_times.size)[:, None]

    def at_waiting_times(name: str) -> np.ndarray:  # (seed, step, t_w) -> (seed, t_w, lag)
        return dmft[name].values[:, later, columns]

    dims = ("replica", "t_w", "lag")
    return xr.Dataset(
        {
            "correlation": (dims, at_waiting_times("seed_C_waiting")),
            "self_correlation": (dims, dmft["seed_C_diagonal"].values[:, later]),
            "chi": (dims, at_waiting_times("seed_chi")),
            "lag_train_loss": (dims, dmft["seed_loss"].values[:, later]),
        },
        coords={
            "replica": np.arange(dmft.sizes["solver_seed"]),
            "t_w": waiting_times,
            "lag": lags,
        },
    )


def _at_recorded_steps(dmft: xr.Dataset, name: str, run: xr.Dataset) -> xr.DataArray:
    """A (step,) DMFT variable at the run's recorded steps, on the run's record axis."""
    values = dmft[name].reindex(record=run["step"].values).values  # DMFT record k = step k
    return xr.DataArray(values, dims=("record",), coords={"time": ("record", run["time"].values)})


END_OF_TRAINING = (
    "contact_fraction",
    "contact_fraction_stderr",
    "fraction_within",
    "fraction_within_stderr",
    "gap_density",
    "gap_density_stderr",
)


def dmft_end_of_training(dmft: xr.Dataset, kappa: float) -> xr.Dataset:
    """The DMFT's replica distance and margins at its last step, named as the simulation's.

    The distance is NaN (not drawn) when the replica pair's iteration did not converge.

    Refuses (ArtifactError, naming the file) an artifact written before sgdnoise solved
    the replica pair and kept the final stabilities.
    """
    missing = {"seed_replica_distance", "seed_final_stability"} - set(dmft.data_vars)
    if missing:
        raise ArtifactError(
            f"{dmft.encoding.get('source', 'dmft artifact')}: has no {sorted(missing)} (written "
            "by an older sgdnoise); rerun the dmft rule (snakemake --forcerun dmft)"
        )
    distance = dmft["seed_replica_distance"].values[:, -1]
    if dmft.attrs.get("replica_pair_status") != "converged":  # said by the solve's warning
        distance = np.full_like(distance, np.nan)
    boundary = margins.margins(dmft["seed_final_stability"].values, kappa)
    return (
        boundary[list(END_OF_TRAINING)]
        .assign(
            replica_distance=((), distance.mean()),
            replica_distance_stderr=((), standard_error(distance)),
        )
        .drop_attrs()
    )


def dmft_fdt(dmft: xr.Dataset, config: PointConfig) -> xr.Dataset:
    """The DMFT's T_eff by the simulation's FDT fit (solver seeds as replicas) and its FDT
    curve with standard errors over seeds, at the run's waiting times and lags."""
    two_time = dmft_two_time(dmft, config)
    fits = fdt.fit_effective_temperature(two_time, config.optimizer, seed=config.run.seed)
    delta_c, chi = fdt.fdt_arrays(two_time)
    for name, values in (("fdt_delta_c", delta_c), ("fdt_chi", chi)):
        per_seed = np.nanmean(values, axis=1)  # mean over t_w: (seed, lag)
        fits[f"{name}_stderr"] = ("lag", standard_error(per_seed))
    return fits


def dmft_fits(dmft: xr.Dataset, run: xr.Dataset) -> xr.Dataset:
    """The DMFT beside a run: its T_eff and FDT curve (when the run measures the response:
    dmft_fdt), its replica distance and margins at the end (dmft_end_of_training), and
    its loss and violated fraction at the run's times.

    Refuses (ArtifactError, naming the file) a DMFT solved for another config than the run's.
    """
    config = artifact_config(run)
    if artifact_config(dmft) != config:
        raise ArtifactError(
            f"{dmft.encoding.get('source', 'dmft artifact')}: solved for another config than "
            "the run's; it is stale: rerun the dmft rule"
        )
    parts = [dmft_end_of_training(dmft, config.loss.kappa)]
    if config.run.response.waiting_times:
        parts.insert(0, dmft_fdt(dmft, config))
    fits = xr.merge(parts, compat="no_conflicts", combine_attrs="override")
    teff_method = fits.attrs.get("teff_method", "")
    fits = fits.rename({name: PREFIX + name for name in fits.data_vars})
    for name in ("loss", "violated_fraction"):
        target = "train_loss" if name == "loss" else name
        fits[PREFIX + target] = _at_recorded_steps(dmft, name, run)
        if f"{name}_stderr" in dmft:
            fits[f"{PREFIX}{target}_stderr"] = _at_recorded_steps(dmft, f"{name}_stderr", run)
    fits[PREFIX + "status"] = xr.DataArray(dmft.attrs.get("status", "unknown"))
    fits.attrs = {"dmft_paths": int(dmft.attrs.get("paths", -1))}
    if teff_method:
        fits.attrs["dmft_teff_method"] = teff_method.replace("replicas", "solver seeds")
    return fits


UNITS = {
    **{
        PREFIX + name: (units, f"DMFT: {text}")
        for name, (units, text) in fdt.UNITS.items()
        if name != "window"
    },
    PREFIX + "fdt_delta_c_stderr": ("1", "DMFT: standard error over solver seeds of Delta C"),
    PREFIX + "fdt_chi_stderr": ("1", "DMFT: standard error over solver seeds of chi"),
    PREFIX + "train_loss": ("1", "DMFT: training loss per sample at the run's recorded times"),
    PREFIX + "train_loss_stderr": ("1", "DMFT: standard error over solver seeds of the loss"),
    PREFIX + "violated_fraction": ("1", "DMFT: fraction of violated samples at the run's times"),
    PREFIX + "violated_fraction_stderr": ("1", "DMFT: standard error of the violated fraction"),
    PREFIX + "status": ("1", "DMFT solver status: converged, not_converged or diverged"),
    PREFIX + "replica_distance": (
        "1",
        "DMFT: distance |w_a - w_b|^2 / N of a same-init pair at the end",
    ),
    PREFIX + "replica_distance_stderr": (
        "1",
        "DMFT: standard error over solver seeds of the distance",
    ),
    **{
        PREFIX + name: (units, f"DMFT (solver seeds as replicas): {text}")
        for name, (units, text) in margins.UNITS.items()
        if name in END_OF_TRAINING
    },
}
