"""Phase-diagram analysis on synthetic summaries with known boundaries, and its figures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from sgdnoise.analysis.phase_diagram import (
    LAZY_KERNEL_CHANGE,
    NOISE_FACTOR,
    best_temperature,
    cell_statistics,
    phase_diagram,
)
from sgdnoise.config import canonical_json, resolve_point
from sgdnoise.io.artifact import read_artifact, write_artifact
from sgdnoise.plots import FIGURES

LOG2_ALPHA = np.arange(-6.0, 9.0, 2.0)
LOG2_T = np.arange(-10.0, -1.0, 1.0)
REPLICAS = 3


def summary(
    kernel_change: np.ndarray,
    weight_change: np.ndarray,
    test_error: np.ndarray,
    status: np.ndarray | None = None,
    samples: list[int] | None = None,
) -> xr.Dataset:
    """A summary shaped like stages.aggregate's: (alpha, temperature[, P], replica, record)."""
    shape = (len(LOG2_ALPHA), len(LOG2_T), REPLICAS)
    dims = ["alpha", "temperature", "replica"]
    coords = {"alpha": 2.0**LOG2_ALPHA, "temperature": 2.0**LOG2_T, "replica": np.arange(REPLICAS)}
    axes = {"alpha": "model.alpha", "temperature": "optimizer.temperature"}
    status = np.full(shape, "completed", dtype=object) if status is None else status

    def per_replica(values: np.ndarray) -> np.ndarray:
        return np.broadcast_to(values[..., None], shape).copy()

    def with_time(values: np.ndarray) -> np.ndarray:
        return np.stack([np.zeros_like(values), values], axis=-1)

    variables = {
        "test_error": (dims + ["record"], with_time(per_replica(test_error))),
        "weight_change": (dims + ["record"], with_time(per_replica(weight_change))),
        "kernel_change": (dims, per_replica(kernel_change)),
        "t_star": (dims, np.ones(shape)),
        "replica_status": (dims, status),
    }
    data = xr.Dataset(variables, coords={**coords, "time": ("record", [0.0, 1.0])})
    if samples:
        data = xr.concat([data.expand_dims(P=[p]) for p in samples], dim="P")
        axes["P"] = "data.P"
    config = resolve_point(
        {
            "model": {"kind": "fcn", "depth": 3, "width": 32, "activation": "gelu", "alpha": 1.0},
            "data": {"kind": "mnist_parity", "P": 256, "P_test": 2000},
            "optimizer": {"kind": "minibatch_sgd", "batch_size": 16, "temperature": 0.01},
            "loss": {"kind": "hinge"},
            "run": {"replicas": REPLICAS},
        }
    )
    data.attrs.update(grid_axes=json.dumps(axes), example_config=canonical_json(config))
    return data


def known_landscape():
    """Kernel change 2^(c(T) - log2 alpha), crossing 1 at log2 alpha = c(T) = 1 + log2 T / 4;
    weight change flat below T_c(alpha) = 2^-7.5, proportional to T above: doubled at
    log2 T = -6.5 exactly; test error minimal at log2 T = -5 for every alpha."""
    a, t = np.meshgrid(LOG2_ALPHA, LOG2_T, indexing="ij")
    crossover = 1.0 + t / 4.0
    kernel = 2.0 ** (crossover - a) * LAZY_KERNEL_CHANGE
    weight = 0.01 * np.maximum(1.0, 2.0 ** (t + 7.5))
    error = 0.1 + 0.01 * (t + 5.0) ** 2
    return crossover, kernel, weight, error


def test_boundaries_are_recovered_where_the_grid_straddles_them():
    crossover, kernel, weight, error = known_landscape()
    diagram = phase_diagram(summary(kernel, weight, error))
    lazy = diagram["lazy_feature_log2_alpha"].values
    inside = (crossover[0] >= LOG2_ALPHA.min()) & (crossover[0] <= LOG2_ALPHA.max())
    np.testing.assert_allclose(lazy[inside], crossover[0][inside], atol=1e-12)
    np.testing.assert_allclose(diagram["noise_log2_temperature"].values, -6.5, atol=1e-12)
    np.testing.assert_allclose(np.log2(diagram["best_temperature"].values), -5.0)
    assert NOISE_FACTOR == 2.0


def test_no_boundary_is_invented_when_the_data_do_not_cross():
    _, _, weight, error = known_landscape()
    all_lazy = np.full_like(weight, 0.01 * LAZY_KERNEL_CHANGE)
    flat = np.full_like(weight, 0.2)
    diagram = phase_diagram(summary(all_lazy, flat, error))
    assert diagram["lazy_feature_log2_alpha"].isnull().all()
    assert diagram["noise_log2_temperature"].isnull().all()


def test_diverged_replicas_are_left_out_and_counted():
    _, kernel, weight, error = known_landscape()
    status = np.full((len(LOG2_ALPHA), len(LOG2_T), REPLICAS), "completed", dtype=object)
    status[0, -1, :] = "diverged"  # a whole cell
    status[1, -1, 0] = "diverged"  # one replica of another
    status[2, 0, 1] = "budget_exhausted"
    data = summary(kernel, weight, error, status)
    data["test_error"][1, -1, 0, -1] = np.nan  # a diverged replica's predictor
    statistics = cell_statistics(data)
    assert np.isnan(statistics["test_error"][0, -1])
    assert statistics["test_error"][1, -1] == pytest.approx(error[1, -1])
    assert statistics["diverged_fraction"][1, -1] == pytest.approx(1 / 3)
    assert statistics["unfinished_fraction"][2, 0] == pytest.approx(1 / 3)
    assert statistics["t_star"][2, 0] == pytest.approx(1.0)
    # the lowest-error cell (log2 T = -5) is excluded for alpha index 3 once it diverges
    status[3, 5, 2] = "diverged"
    best = best_temperature(cell_statistics(summary(kernel, weight, error, status)), "temperature")
    assert np.log2(float(best[3])) in (-6.0, -4.0)


@pytest.mark.parametrize("figure", ["phase_diagram", "test_error_vs_temperature"])
@pytest.mark.parametrize("samples", [None, [256, 1024]], ids=["one_P", "two_P"])
def test_figures_render(tmp_path, figure, samples):
    _, kernel, weight, error = known_landscape()
    out = tmp_path / f"{figure}.png"
    FIGURES[figure](summary(kernel, weight, error, samples=samples), str(out))
    assert out.stat().st_size > 10_000


def test_statuses_survive_a_summary_combined_from_runs(tmp_path):
    """A summary combined from runs read back from disk keeps every status whole (the
    fixed string width of the first file read must not truncate 'budget_exhausted')."""
    parts = []
    for index, status in enumerate(["completed", "budget_exhausted"]):
        run = xr.Dataset({"replica_status": (("replica",), np.array([status], dtype=object))})
        run["replica_status"].attrs.update(units="1", long_name="status")
        write_artifact(run, tmp_path / f"{index}.nc", "run")
        parts.append(read_artifact(tmp_path / f"{index}.nc").expand_dims(alpha=[index]))
    write_artifact(xr.concat(parts, "alpha"), tmp_path / "summary.nc", "summary")
    statuses = read_artifact(tmp_path / "summary.nc")["replica_status"].values.ravel()
    assert statuses.tolist() == ["completed", "budget_exhausted"]
