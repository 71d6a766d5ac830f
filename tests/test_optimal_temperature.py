"""Optimal temperature T_opt(alpha) and its exponent k on synthetic summaries with a known
T_opt = c alpha^k, and the figure drawn from the study fits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from sgdnoise.analysis import optimal_temperature as module
from sgdnoise.analysis.optimal_temperature import (
    optimal_temperature,
    parabola_minimum,
    predicted_exponent,
)
from sgdnoise.config import canonical_json, resolve_point
from sgdnoise.plots import FIGURES
from sgdnoise.stages.study_fits import study_fits

LOG2_T = np.arange(-12.0, -1.0)  # 11 temperatures, one octave apart
LOG2_ALPHA = np.arange(-8.0, 1.0)  # 9 alphas, all in the feature regime
DEPTHS = [2, 4]  # k = 1/3 and 3/5
REPLICAS = 8
CURVATURE = 0.01  # test error per squared octave away from T_opt
SEED_NOISE = 0.0015  # standard deviation of one seed's test error, per point
SEED_OFFSET = 0.01  # a seed's offset shared by all its points (kept by the joint bootstrap)


def true_log2_topt(log2_c: float = -3.0) -> np.ndarray:
    """log2 T_opt = log2 c + k(D) log2 alpha, (depth, alpha), k(D) = (D - 1)/(D + 1)."""
    k = np.array([predicted_exponent(d) for d in DEPTHS])
    return log2_c + k[:, None] * LOG2_ALPHA[None, :]


def synthetic_summary(
    log2_topt: np.ndarray, status: np.ndarray | None = None, seed: int = 1
) -> xr.Dataset:
    """A summary shaped like stages.aggregate's over (depth, alpha, temperature, replica,
    record): test error = 0.1 + CURVATURE (log2 T - log2 T_opt)^2 + seed noise."""
    rng = np.random.default_rng(seed)
    shape = (len(DEPTHS), len(LOG2_ALPHA), len(LOG2_T), REPLICAS)
    distance = LOG2_T[None, None, :, None] - log2_topt[..., None, None]
    error = 0.1 + CURVATURE * distance**2 + SEED_OFFSET * rng.standard_normal(REPLICAS)
    error = error + SEED_NOISE * rng.standard_normal(shape)
    dims = ["depth", "alpha", "temperature", "replica"]
    status = np.full(shape, "completed", dtype=object) if status is None else status
    data = xr.Dataset(
        {
            "test_error": ([*dims, "record"], np.stack([np.full(shape, 0.5), error], axis=-1)),
            "replica_status": (dims, status),
        },
        coords={
            "depth": DEPTHS,
            "alpha": 2.0**LOG2_ALPHA,
            "temperature": 2.0**LOG2_T,
            "replica": np.arange(REPLICAS),
        },
    )
    config = resolve_point(
        {
            "model": {"kind": "fcn", "depth": 2, "width": 32, "activation": "gelu", "alpha": 1.0},
            "data": {"kind": "mnist_parity", "P": 256, "P_test": 1000},
            "optimizer": {"kind": "minibatch_sgd", "batch_size": 16, "temperature": 0.01},
            "loss": {"kind": "hinge"},
            "run": {"replicas": REPLICAS},
        }
    )
    axes = {"depth": "model.depth", "alpha": "model.alpha", "temperature": "optimizer.temperature"}
    data.attrs.update(grid_axes=json.dumps(axes), example_config=canonical_json(config))
    return data


def recovery_problems(fits: xr.Dataset, log2_topt: np.ndarray, k: np.ndarray) -> list[str]:
    """What the fits get wrong about the truth: every T_opt interior, within a fifth of an
    octave, and at least 80% of the 95% intervals covering it (18 intervals: ~95%
    expected); every k interval covering the true k."""
    problems = []
    if not (fits["optimal_temperature_status"] == "interior").all():
        problems.append("a T_opt is not interior")
    measured = np.log2(fits["optimal_temperature"].values)
    if np.nanmax(np.abs(measured - log2_topt)) > 0.2:
        problems.append(f"T_opt off by up to {np.nanmax(np.abs(measured - log2_topt)):.2f} octaves")
    low, high = (np.log2(fits[f"optimal_temperature_{end}"].values) for end in ("low", "high"))
    covered = np.mean((low <= log2_topt) & (log2_topt <= high))
    if covered < 0.8:
        problems.append(f"the T_opt intervals cover the truth {covered:.0%} of the time")
    k_low, k_high = (fits[f"optimal_temperature_exponent_{end}"].values for end in ("low", "high"))
    if not ((k_low <= k) & (k <= k_high)).all():
        problems.append(f"k intervals [{k_low}, {k_high}] miss {k}")
    return problems


@pytest.fixture(scope="module")
def recovered() -> xr.Dataset:
    return optimal_temperature(synthetic_summary(true_log2_topt()))


def test_parabola_vertex_is_exact_on_a_parabola_in_log_t():
    log_t = np.log(2.0 ** np.array([-6.0, -5.0, -3.0, -2.0]))  # uneven spacing
    means = 0.1 + 0.02 * (log_t - np.log(2.0**-3.7)) ** 2
    log_topt, lowest, status = parabola_minimum(means[None, :], log_t)
    assert status[0] == module.INTERIOR and lowest[0] == 2
    assert log_topt[0] == pytest.approx(np.log(2.0**-3.7), abs=1e-12)


def test_t_opt_and_k_are_recovered_within_their_intervals(recovered):
    k = np.array([predicted_exponent(d) for d in DEPTHS])
    assert recovery_problems(recovered, true_log2_topt(), k) == []
    np.testing.assert_allclose(recovered["optimal_temperature_predicted_exponent"], k)
    assert recovered["optimal_temperature_in_fit"].all()
    assert (recovered["optimal_temperature_interior_fraction"] > 0.99).all()


def test_the_check_resolves_a_five_percent_error_in_k_and_an_index_slip(recovered, monkeypatch):
    """What the recovery check resolves, with 8 seeds of test-error noise 0.0015 per point
    (a parabola of curvature 0.01 per squared octave): the k intervals are narrower than
    5% of k (half-widths 0.008 and 0.011 at k = 1/3 and 3/5), so a 5% error in k fails; pairing the
    test error of each temperature with its lower neighbour (an off-by-one index slip, T_opt
    one octave off) fails; the estimates themselves sit within a fifth of an octave."""
    k = np.array([predicted_exponent(d) for d in DEPTHS])
    half_width = (
        recovered["optimal_temperature_exponent_high"] - recovered["optimal_temperature_exponent"]
    )
    assert (half_width < 0.05 * k).all()
    assert recovery_problems(recovered, true_log2_topt(), 1.05 * k)
    assert recovery_problems(recovered, true_log2_topt(), 0.95 * k)

    original = module.parabola_minimum
    monkeypatch.setattr(
        module, "parabola_minimum", lambda means, log_t: original(means[:, 1:], log_t[:-1])
    )
    slipped = optimal_temperature(synthetic_summary(true_log2_topt()), resamples=50)
    assert recovery_problems(slipped, true_log2_topt(), k)


def test_a_minimum_at_the_grid_edge_gives_nan_and_a_status():
    """T_opt above the highest temperature (and within half an octave below it) is only
    bounded: NaN, status minimum_at_highest_temperature, the edge kept as the bound, out of
    the fit; k still comes from the interior alphas."""
    truth = true_log2_topt(log2_c=-1.0)  # up to log2 T_opt = -1 > the grid's -2
    fits = optimal_temperature(synthetic_summary(truth), resamples=100)
    edge = truth > LOG2_T[-1] - 0.5
    assert edge.any() and (~edge).sum(axis=1).min() >= module.MIN_FIT_ALPHAS
    status = fits["optimal_temperature_status"].values
    assert (status[edge] == "minimum_at_highest_temperature").all()
    assert (status[~edge] == "interior").all()
    assert np.isnan(fits["optimal_temperature"].values[edge]).all()
    np.testing.assert_allclose(fits["optimal_temperature_grid_minimum"].values[edge], 2.0**-2)
    np.testing.assert_array_equal(fits["optimal_temperature_in_fit"].values, ~edge)
    k = np.array([predicted_exponent(d) for d in DEPTHS])
    np.testing.assert_allclose(fits["optimal_temperature_exponent"], k, atol=0.05)


def test_the_fit_of_k_stops_at_the_lazy_feature_crossover_of_the_kernel_change():
    """Above the crossover (the tangent kernel's change at the lowest temperature falls
    below 1, here between alpha = 2^-3 and 2^-2 at depth 2 and between 2^-5 and 2^-4 at
    depth 4) the test error has an interior minimum that is not T_opt ~ alpha^k (a lazy
    alpha's flat curve; here a fixed T = 2^-10). The fit of k leaves those alphas out
    and recovers k; fitted over every interior alpha, as without a kernel change, it
    misses k (what this check resolves)."""
    crossover = np.array([-2.5, -4.5])  # log2 alpha of the crossing, per depth
    lazy = LOG2_ALPHA[None, :] > crossover[:, None]
    truth = np.where(lazy, -10.0, true_log2_topt())
    summary = synthetic_summary(truth)
    change = 2.0 ** (crossover[:, None] - LOG2_ALPHA[None, :])  # 1 at the crossing
    summary["kernel_change"] = (
        ("depth", "alpha", "temperature", "replica"),
        np.broadcast_to(change[:, :, None, None], summary["replica_status"].shape).copy(),
    )
    k = np.array([predicted_exponent(d) for d in DEPTHS])
    fits = optimal_temperature(summary, resamples=100)
    np.testing.assert_array_equal(fits["optimal_temperature_in_fit"].values, ~lazy)
    low, high = (fits[f"optimal_temperature_exponent_{end}"].values for end in ("low", "high"))
    assert ((low <= k) & (k <= high)).all()
    unbounded = optimal_temperature(summary.drop_vars("kernel_change"), resamples=100)
    assert unbounded["optimal_temperature_in_fit"].all()
    low, high = (unbounded[f"optimal_temperature_exponent_{end}"].values for end in ("low", "high"))
    assert not ((low <= k) & (k <= high)).any()


def test_points_with_a_replica_not_completed_are_left_out():
    """As in the scaling analyses, a temperature enters only if every replica completed:
    with the minimum cell of one curve unfinished, its neighbours' parabola is used, and
    without its neighbours too, fewer than three temperatures remain."""
    truth = true_log2_topt()
    status = np.full((len(DEPTHS), len(LOG2_ALPHA), len(LOG2_T), REPLICAS), "completed", object)
    status[0, 0, :-2, 0] = "budget_exhausted"  # all but the two highest temperatures
    minimum = int(np.argmin(np.abs(LOG2_T - truth[1, 0])))
    status[1, 0, minimum, 3] = "diverged"
    fits = optimal_temperature(synthetic_summary(truth, status), resamples=50)
    assert fits["optimal_temperature_status"].values[0, 0] == "too_few_temperatures"
    assert np.isnan(fits["optimal_temperature_grid_minimum"].values[0, 0])
    assert fits["optimal_temperature_status"].values[1, 0] == "interior"
    assert not np.isclose(np.log2(fits["optimal_temperature_grid_minimum"][1, 0]), LOG2_T[minimum])


def test_study_fits_store_it_with_units_and_the_figure_renders(tmp_path):
    summary = synthetic_summary(true_log2_topt())
    fits = study_fits(summary, ["optimal_temperature"])
    for name in ("optimal_temperature", "optimal_temperature_exponent"):
        assert fits[name].attrs["units"] and fits[name].attrs["long_name"]
    assert fits["optimal_temperature"].attrs["units"] == "temperature"
    out = tmp_path / "optimal_temperature.png"
    FIGURES["optimal_temperature"](summary, str(out), fits=fits)
    assert out.stat().st_size > 10_000
    one_depth = summary.sel(depth=[4]).squeeze("depth", drop=True)
    one_depth.attrs["grid_axes"] = json.dumps(
        {"alpha": "model.alpha", "temperature": "optimizer.temperature"}
    )
    FIGURES["optimal_temperature"](
        one_depth, str(out), fits=study_fits(one_depth, ["optimal_temperature"])
    )
    with pytest.raises(ValueError, match="optimal_temperature_exponent"):
        FIGURES["optimal_temperature"](summary, str(out))
