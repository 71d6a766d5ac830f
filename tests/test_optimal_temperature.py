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
    log2_topt: np.ndarray,
    status: np.ndarray | None = None,
    seed: int = 1,
    log2_t: np.ndarray = LOG2_T,
) -> xr.Dataset:
    """A summary shaped like stages.aggregate's over (depth, alpha, temperature, replica,
    record): test error = 0.1 + CURVATURE (log2 T - log2 T_opt)^2 + seed noise."""
    rng = np.random.default_rng(seed)
    shape = (len(DEPTHS), len(LOG2_ALPHA), len(log2_t), REPLICAS)
    distance = log2_t[None, None, :, None] - log2_topt[..., None, None]
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
            "temperature": 2.0**log2_t,
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


def test_the_stability_edge_interpolates_the_completed_fraction_in_log_t():
    """Exact on a fraction linear in log T; NaN where no temperature reaches one half or
    the highest does; a low temperature that ran out of budget (fraction 0) is ignored; a
    jump from every seed to none leaves the bracket's width unresolved."""
    log_t = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    completed = np.array(
        [
            [0.0, 1.0, 0.75, 0.25, 0.0],  # crosses 1/2 halfway between 2 and 3
            [1.0, 1.0, 1.0, 1.0, 0.5],  # stable up to the highest temperature
            [0.25, 0.0, 0.0, 0.0, 0.0],  # never half
            [1.0, 0.5, 0.0, 0.0, 0.0],  # exactly half at 1: the edge is there
        ]
    )
    log_edge, unresolved = module.stability_edge(completed, log_t)
    np.testing.assert_allclose(log_edge, [2.5, np.nan, np.nan, 1.0])
    np.testing.assert_allclose(unresolved, [0.0, np.nan, np.nan, 0.0])
    jump = module.stability_edge(np.array([[1.0, 1.0, 0.0]]), log_t[:3])
    np.testing.assert_allclose(jump, [[1.5], [1.0]])  # anywhere in [1, 2]


def seed_edges_summary(log2_edge: np.ndarray, spread_octaves: float = 2.0) -> xr.Dataset:
    """Seeds that reach zero loss below their own edge and diverge above it: seed r's edge
    is log2 T_edge + s_r, s_r spread evenly over ``spread_octaves`` and shared by every
    alpha (a seed stable at one alpha is stable at all, as the joint bootstrap assumes); T
    every half octave."""
    log2_t = np.arange(-12.0, -0.75, 0.5)
    spread = ((np.arange(REPLICAS) + 0.5) / REPLICAS - 0.5) * spread_octaves
    seed_edge = log2_edge[:, :, None, None] + spread[None, None, None, :]
    stable = log2_t[None, None, :, None] < seed_edge
    status = np.where(stable, "completed", "diverged").astype(object)
    return synthetic_summary(true_log2_topt(log2_c=-8.0), status, log2_t=log2_t)


def test_the_stability_edge_and_its_exponent_are_recovered(monkeypatch):
    """T_edge = 2^-5 alpha^k_e, k_e = 1/3 and 3/5 per depth: every T_edge within 0.15 octave
    (measured 0.10; the seeds' spread is 2 octaves, the grid half an octave), k_e inside its
    interval, the interval narrower than 6.5% of k_e (measured half-widths 0.020 and 0.027:
    8 seeds' bootstrap), so that a 7% error in the exponent is resolved;
    interpolating towards the next lower temperature instead of the next higher one (an
    index slip: the edge half an octave low) fails the 0.15-octave check."""
    k = np.array([predicted_exponent(d) for d in DEPTHS])
    truth = -5.0 + k[:, None] * LOG2_ALPHA[None, :]
    fits = optimal_temperature(seed_edges_summary(truth), resamples=100)

    def problems(fits: xr.Dataset, k: np.ndarray) -> list[str]:
        found = []
        error = np.abs(np.log2(fits["stability_edge"].values) - truth)
        if not error.max() <= 0.15:
            found.append(f"T_edge off by up to {error.max():.2f} octaves")
        low, high = (fits[f"stability_edge_exponent_{end}"].values for end in ("low", "high"))
        if not ((low <= k) & (k <= high)).all():
            found.append(f"k_edge intervals [{low}, {high}] miss {k}")
        return found

    assert problems(fits, k) == []
    assert fits["stability_edge_in_fit"].all()
    half_width = fits["stability_edge_exponent_high"] - fits["stability_edge_exponent"]
    assert (half_width < 0.065 * k).all()
    assert problems(fits, 1.07 * k) and problems(fits, 0.93 * k)

    original = module.stability_edge
    monkeypatch.setattr(
        module,
        "stability_edge",
        lambda completed, log_t: original(completed[:, 1:], log_t[:-1]),
    )
    assert problems(optimal_temperature(seed_edges_summary(truth), resamples=20), k)


def test_an_edge_the_grid_does_not_resolve_keeps_its_bracket_in_the_intervals():
    """Every seed with the same edge: the fraction jumps from 1 to 0 within one half-octave
    bracket, which the seeds' bootstrap cannot see (zero spread). The intervals of T_edge
    still cover the truth (they span the bracket) and so does the interval of the
    exponent (the brackets' spread added)."""
    k = np.array([predicted_exponent(d) for d in DEPTHS])
    truth = -5.0 + k[:, None] * LOG2_ALPHA[None, :]
    fits = optimal_temperature(seed_edges_summary(truth, spread_octaves=0.0), resamples=50)
    low, high = (np.log2(fits[f"stability_edge_{end}"].values) for end in ("low", "high"))
    assert ((low <= truth) & (truth <= high)).all()
    np.testing.assert_allclose(high - low, 0.5)
    k_low, k_high = (fits[f"stability_edge_exponent_{end}"].values for end in ("low", "high"))
    assert ((k_low <= k) & (k <= k_high)).all()


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
