"""Phase diagram of the alpha-trick networks in the (alpha, T) plane (docs/physics.md B5).

Pure functions on a study summary (stages.aggregate) whose grid sweeps model.alpha and
optimizer.temperature (and possibly data.P or other axes, kept as extra dimensions).

Per cell (one grid point), over its replicas (seeds):
- ``test_error``: mean and standard error of the final test error over the replicas
  that did not diverge (a diverged replica has no trained predictor);
- ``weight_change`` |w* - w0| / |w0|, ``kernel_change`` ||K* - K0|| / ||K0||: means over
  the same replicas; ``t_star``: mean over the replicas that reached zero loss;
- ``diverged_fraction`` and ``unfinished_fraction`` (budget exhausted before zero loss):
  the cells a figure must mark.

Boundaries, located only where the data straddle them (NaN elsewhere), by log-log
linear interpolation between neighbouring grid values:
- lazy/feature: at each T, the alpha where the seed-averaged kernel change crosses
  ``LAZY_KERNEL_CHANGE`` = 1 (the tangent kernel has changed by as much as its initial
  size); scanning from the largest alpha (lazy side) down, the first crossing.
- noise: at each alpha, the lowest T at which the seed-averaged weight change reaches
  ``NOISE_FACTOR`` = 2 times its value at the lowest T of the grid (the T -> 0 plateau):
  noise has doubled the distance the weights travel.
- best temperature T_opt(alpha): the T of lowest mean test error among the cells with
  no diverged replica.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import xarray as xr

from sgdnoise.analysis.scaling_data import last_finite
from sgdnoise.analysis.statistics import standard_error

ALPHA, TEMPERATURE, SAMPLES = "model.alpha", "optimizer.temperature", "data.P"
LAZY_KERNEL_CHANGE = 1.0
NOISE_FACTOR = 2.0


def swept_dimension(summary: xr.Dataset, path: str) -> str | None:
    """The summary dimension of a swept config key path (None if it is not swept)."""
    axes = json.loads(summary.attrs.get("grid_axes", "{}"))
    return next((dim for dim, swept in axes.items() if swept == path), None)


def _require_dimension(summary: xr.Dataset, path: str) -> str:
    dim = swept_dimension(summary, path)
    if dim is None:
        raise ValueError(
            f"the phase diagram needs the grid to sweep {path}; it sweeps "
            f"{summary.attrs.get('grid_axes', '{}')}"
        )
    return dim


def cell_statistics(summary: xr.Dataset) -> xr.Dataset:
    """Seed statistics of every cell: the grid dims of the summary, no replica or time."""
    status = summary["replica_status"].astype(str)
    diverged = status == "diverged"
    kept = ~diverged
    test_error = last_finite(summary["test_error"]).where(kept)
    statistics = xr.Dataset(
        {
            "test_error": test_error.mean("replica"),
            "test_error_stderr": xr.apply_ufunc(
                standard_error,
                test_error,
                input_core_dims=[["replica"]],
                kwargs={"axis": -1},
            ),
            "weight_change": last_finite(summary["weight_change"]).where(kept).mean("replica"),
            "kernel_change": mean_kernel_change(summary),
            "t_star": summary["t_star"].where(status == "completed").mean("replica"),
            "diverged_fraction": diverged.mean("replica"),
            "unfinished_fraction": (status == "budget_exhausted").mean("replica"),
        }
    )
    return statistics.drop_vars(["time", "step"], errors="ignore")


def mean_kernel_change(summary: xr.Dataset) -> xr.DataArray:
    """Per cell, the tangent kernel's relative change averaged over the seeds that did not
    diverge."""
    kept = summary["replica_status"].astype(str) != "diverged"
    return summary["kernel_change"].where(kept).mean("replica")


def _log_crossing(x: np.ndarray, y: np.ndarray, level: float) -> float:
    """x where log(y) crosses log(level) between two neighbours (x in log2 units)."""
    ly, ll = np.log(y[0]), np.log(level)
    return float(x[0] + (x[1] - x[0]) * (ll - ly) / (np.log(y[1]) - ly))


def _boundary(
    statistics: xr.Dataset,
    variable: str,
    dim: str,
    locate: Callable[[np.ndarray, np.ndarray], float],
    long_name: str,
) -> xr.DataArray:
    """``locate(values, log2 coordinate)`` of a variable along ``dim``, at every other
    coordinate."""
    log_coordinate = np.log2(statistics[dim].values.astype(float))
    boundary = xr.apply_ufunc(
        lambda values: locate(values, log_coordinate),
        statistics[variable],
        input_core_dims=[[dim]],
        vectorize=True,
    )
    boundary.attrs.update(units="1", long_name=long_name)
    return boundary


def lazy_feature_boundary(statistics: xr.Dataset, alpha_dim: str) -> xr.DataArray:
    """log2 alpha of the lazy/feature crossover at every other coordinate (NaN if none).

    Scans alpha downwards from the lazy side; the first pair of neighbours whose kernel
    change goes from below to at or above LAZY_KERNEL_CHANGE brackets the crossover.
    """

    def locate(kernel: np.ndarray, log_alpha: np.ndarray) -> float:
        order = np.argsort(log_alpha)[::-1]
        kernel, log_alpha = kernel[order], log_alpha[order]
        for i in range(len(kernel) - 1):
            pair = kernel[i : i + 2]
            if np.isfinite(pair).all() and pair[0] < LAZY_KERNEL_CHANGE <= pair[1]:
                return _log_crossing(log_alpha[i : i + 2], pair, LAZY_KERNEL_CHANGE)
        return np.nan

    long_name = f"log2 alpha where the kernel change crosses {LAZY_KERNEL_CHANGE:g}"
    return _boundary(statistics, "kernel_change", alpha_dim, locate, long_name)


def noise_boundary(statistics: xr.Dataset, temperature_dim: str) -> xr.DataArray:
    """log2 T at which noise starts to move the weights (NaN if not within the grid).

    The lowest T whose weight change reaches NOISE_FACTOR times the weight change at the
    lowest T of the grid, interpolated between it and the T below.
    """

    def locate(change: np.ndarray, log_temperature: np.ndarray) -> float:
        order = np.argsort(log_temperature)
        change, log_temperature = change[order], log_temperature[order]
        if not np.isfinite(change[0]) or change[0] <= 0:
            return np.nan
        level = NOISE_FACTOR * change[0]
        for i in range(len(change) - 1):
            pair = change[i : i + 2]
            if not np.isfinite(pair).all():
                return np.nan
            if pair[1] >= level:
                return _log_crossing(log_temperature[i : i + 2], pair, level)
        return np.nan

    long_name = f"log2 T where the weight change reaches {NOISE_FACTOR:g} x its lowest-T value"
    return _boundary(statistics, "weight_change", temperature_dim, locate, long_name)


def best_temperature(statistics: xr.Dataset, temperature_dim: str) -> xr.DataArray:
    """T_opt: the temperature of lowest mean test error among cells with no divergence."""
    error = statistics["test_error"].where(statistics["diverged_fraction"] == 0)
    usable = error.notnull().any(temperature_dim)
    best = error.fillna(np.inf).idxmin(temperature_dim).where(usable)
    best.attrs.update(units="1", long_name="temperature T of lowest mean test error")
    return best


def phase_diagram(summary: xr.Dataset) -> xr.Dataset:
    """Cell statistics plus the boundaries and T_opt of a summary sweeping alpha and T."""
    alpha_dim = _require_dimension(summary, ALPHA)
    temperature_dim = _require_dimension(summary, TEMPERATURE)
    statistics = cell_statistics(summary)
    statistics["lazy_feature_log2_alpha"] = lazy_feature_boundary(statistics, alpha_dim)
    statistics["noise_log2_temperature"] = noise_boundary(statistics, temperature_dim)
    statistics["best_temperature"] = best_temperature(statistics, temperature_dim)
    statistics.attrs.update(alpha_dim=alpha_dim, temperature_dim=temperature_dim)
    return statistics
