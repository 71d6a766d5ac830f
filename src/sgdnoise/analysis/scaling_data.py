"""What the scaling analyses share: observables at stopping, curves y(T), their axes.

A study summary (stages.aggregate) holds, per grid point and replica, the recorded time
series and the per-replica scalars. The scaling analyses (power_laws,
critical_temperature) need one number per replica and point: the observable at
stopping (docs/physics.md B4):

- signal u_1 = u . e, noise |u_perp|^2 / (d - 1), weight_change |w - w0| / |w0| and
  test_error at the last record (a stopped replica's later records repeat its final
  weights, so this is the value at t*);
- t_star (lr x steps), the training time to zero loss.

Only replicas with status ``completed`` carry a value: a ``budget_exhausted`` replica
stopped before zero loss (its t* is unknown and its weights are not a solution) and a
``diverged`` one has none. A point enters a fit only if every replica completed
(``complete_points``): dropping the slow replicas of a point would bias t* and the
weights towards the fast ones. Excluded points are counted and reported, never averaged.

The seeds of a grid point are its replicas (data.per_replica: replica r trains on its
own training set, with its own initialisation and batches). Replica r of every point of
a study is seed r, so a bootstrap over seeds resamples replica indices jointly for all
points: correlations between points that share a seed are kept (statistics.bootstrap_means,
statistics.student_interval).

Temperature: the grid axis ``temperature`` (optimizer.temperature), or ``lr`` converted
with T = lr / (width x batch size) (docs/physics.md B1; width 1 for the perceptron).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

from sgdnoise.io.artifact import study_config

STOPPING_OBSERVABLES = ("signal", "noise", "t_star", "weight_change", "test_error")
TEMPERATURE = "temperature"
SIZE_DIMS = ("P", "N")
REPLICA = "replica"


def with_temperature(summary: xr.Dataset) -> xr.Dataset:
    """The summary with a ``temperature`` dimension (from an ``lr`` axis if needed)."""
    if TEMPERATURE in summary.dims:
        return summary
    if "lr" not in summary.dims:
        raise ValueError(
            "a scaling analysis needs the temperature as a grid axis (optimizer.temperature, "
            f"or optimizer.lr); the summary has dims {sorted(summary.dims)}"
        )
    config = study_config(summary)
    temperature = summary["lr"].values / (config.model.output_width * config.optimizer.batch_size)
    return summary.rename({"lr": TEMPERATURE}).assign_coords({TEMPERATURE: temperature})


def group_dims(values: xr.DataArray) -> list[str]:
    """Dims of a per-replica observable that are neither T, sizes nor the replica."""
    return [d for d in values.dims if d not in (TEMPERATURE, REPLICA, *SIZE_DIMS)]


def size_dims(values: xr.DataArray) -> list[str]:
    """The swept system sizes (P, N) of an observable, in that order."""
    return [d for d in SIZE_DIMS if d in values.dims]


def observables_at_stop(summary: xr.Dataset) -> dict[str, xr.DataArray]:
    """Each available stopping observable, one value per replica (NaN if not completed).

    Dims: the summary's grid dims plus ``replica``; the temperature dim is last before
    the replica. Attributes carry the number of replicas that did not complete.
    """
    summary = with_temperature(summary)
    completed = summary["replica_status"].astype(str) == "completed"
    result = {}
    for name in STOPPING_OBSERVABLES:
        if name not in summary:
            continue
        values = summary[name]
        if "record" in values.dims:
            values = last_finite(values, "record")
        values = values.where(completed)
        order = [d for d in values.dims if d not in (TEMPERATURE, REPLICA)]
        values = values.transpose(*order, TEMPERATURE, REPLICA).astype(float)
        values.attrs = {
            "units": summary[name].attrs.get("units", "1"),
            "long_name": summary[name].attrs.get("long_name", name),
            "replicas_not_completed": int((~completed).sum()),
        }
        result[name] = values
    return result


def fit_groups(
    observed: dict[str, xr.DataArray], fit: Callable[[str, xr.DataArray], xr.Dataset]
) -> xr.Dataset:
    """``fit(name, values)`` for every observable and every group, merged into one Dataset.

    ``values``: one group's observable (dims P?, N?, temperature, replica; the group's
    values as scalar coords). The result has dims observable, the group dims (if any)
    and the fits' own.
    """
    parts = []
    for name, values in observed.items():
        groups = group_dims(values)
        stacked = values.stack(group=groups) if groups else values.expand_dims(group=[0])
        fits = [fit(name, stacked.isel(group=i)) for i in range(stacked.sizes["group"])]
        merged = xr.concat(fits, dim="group", coords="minimal", compat="override")
        merged = (
            merged.assign_coords(group=stacked["group"]).unstack("group")
            if groups
            else merged.isel(group=0)
        )
        parts.append(merged.expand_dims(observable=[name]))
    return xr.concat(parts, dim="observable", join="outer")


def last_finite(values: xr.DataArray, dim: str = "record") -> xr.DataArray:
    """The last finite entry along ``dim`` (NaN where there is none): a run's final record
    in a summary, where shorter runs are padded with NaN."""
    axis = values.get_axis_num(dim)
    data = np.moveaxis(values.values, axis, -1)
    finite = np.isfinite(data)
    last = data.shape[-1] - 1 - np.argmax(finite[..., ::-1], axis=-1)
    picked = np.take_along_axis(data, last[..., None], axis=-1)[..., 0]
    picked = np.where(finite.any(-1), picked, np.nan)
    dims = [d for d in values.dims if d != dim]
    return xr.DataArray(picked, dims=dims, coords={d: values[d] for d in dims})


def complete_points(values: np.ndarray) -> np.ndarray:
    """Mask of points (all axes but the last, the replica) where every replica has a value."""
    return np.isfinite(values).all(axis=-1)


def temperature_curves(values: xr.DataArray) -> tuple[xr.DataArray, list[str], np.ndarray]:
    """One group's observable as curves y(T): (values, sizes, data).

    ``values`` (dims P?, N?, temperature, replica) transposed to (*sizes, temperature,
    replica); ``data`` its array as (C, nT, R), one curve per point of the size grid
    (row-major: P-major when both sizes are swept).
    """
    sizes = size_dims(values)
    values = values.transpose(*sizes, TEMPERATURE, REPLICA)
    data = values.values.reshape(-1, values.sizes[TEMPERATURE], values.sizes[REPLICA])
    return values, sizes, data


def log_axes(values: xr.DataArray, sizes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """log T (nT,) and the log sizes of every curve (C, len(sizes)); (1, 0) without sizes."""
    log_temperature = np.log(values[TEMPERATURE].values.astype(float))
    grids = np.meshgrid(*[np.log(values[d].values.astype(float)) for d in sizes], indexing="ij")
    log_sizes = np.stack([g.ravel() for g in grids], -1) if sizes else np.zeros((1, 0))
    return log_temperature, log_sizes
