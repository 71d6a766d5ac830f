"""Power-law fits recover known exponents, with honest intervals (analysis.power_laws).

Synthetic observables (tests/synthetic_scaling.py) follow a crossover from a T -> 0
plateau to y = A T^e_T P^e_P at T >> T_c(P), with log-normal noise shared by a seed
across points and independent per point. The window rule must keep the crossover out,
the exponents must come back, and the 95% intervals must cover the truth in about 95%
of independent synthetic studies without being uselessly wide.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from sgdnoise.analysis.power_laws import fit_power_law, power_laws, window_start
from sgdnoise.analysis.running_exponents import running_exponents
from sgdnoise.config import ConfigError, expand_study
from sgdnoise.stages.study_fits import study_fits
from sgdnoise.workflow_plan import CROSSOVER_FIGURES, SCALING_FIGURES
from tests.synthetic_scaling import SIZES, TEMPERATURES, crossover, perceptron_summary


def test_noiseless_power_law_is_recovered_exactly_over_the_whole_range():
    values = crossover(
        np.random.default_rng(0),
        e_t=1.5,
        e_p=-0.25,
        tc0=1e-9,
        seed_noise=0.0,
        point_noise=0.0,
        replicas=3,
    )
    fit = fit_power_law(values, resamples=50)
    np.testing.assert_allclose(fit["exponent"].values, [1.5, -0.25], atol=1e-9)
    assert bool(fit["window"].all())
    assert fit["exponent_high"].values - fit["exponent_low"].values == pytest.approx(0, abs=1e-8)


def test_window_keeps_the_crossover_out():
    """Noise-free crossover: the window starts well above T_c, the exponents are right."""
    values = crossover(np.random.default_rng(1), n=2.0, a=0.5, seed_noise=0.05, point_noise=0.0)
    fit = fit_power_law(values, resamples=100)
    tc = 1.0 * (SIZES / SIZES[0]) ** -0.5
    for p, critical in zip(SIZES, tc, strict=True):
        inside = fit["window"].sel(P=p).values
        assert inside.sum() >= 3
        assert TEMPERATURES[inside].min() >= 3 * critical  # where the local slope is 0.9
    assert fit["exponent"].sel(regressor="temperature").item() == pytest.approx(1.0, abs=0.01)
    assert fit["exponent"].sel(regressor="P").item() == pytest.approx(0.5, abs=0.01)
    for regressor, truth in (("temperature", 1.0), ("P", 0.5)):
        assert fit["exponent_low"].sel(regressor=regressor) <= truth
        assert fit["exponent_high"].sel(regressor=regressor) >= truth


def test_window_rule_stops_at_curvature_and_needs_min_points():
    log_t = np.log(TEMPERATURES)
    straight = 2.0 * log_t
    bent = np.where(log_t > 0, 2.0 * log_t, 0.5 * log_t)  # slope 0.5 below T = 1
    per_seed = np.zeros((log_t.size, 4))
    start = window_start(np.stack([straight, bent]), log_t, per_seed)
    assert start[0] == 0
    assert log_t[start[1]] >= 0 and log_t[start[1] - 1] < 0
    assert window_start(straight[None, -2:], log_t[-2:], per_seed[-2:])[0] == -1


def _coverage(trials: int, **law) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coverage of the truth, mean half-width and spread of the estimates over trials."""
    rng = np.random.default_rng(2024)
    truth = np.array([law.get("e_t", 1.0), law.get("e_p", 0.5)])
    covered, half_widths, estimates = [], [], []
    for trial in range(trials):
        fit = fit_power_law(crossover(rng, **law), resamples=100, seed=trial)
        low, high = fit["exponent_low"].values, fit["exponent_high"].values
        covered.append((low <= truth) & (truth <= high))
        half_widths.append((high - low) / 2)
        estimates.append(fit["exponent"].values)
    return np.mean(covered, 0), np.mean(half_widths, 0), np.std(estimates, 0, ddof=1)


@pytest.mark.parametrize(
    "law",
    [
        {"tc0": 1e-9, "point_noise": 0.05},  # pure power law, independent noise per point
        {"n": 2.0, "point_noise": 0.05},  # crossover, noisy
        {"n": 2.0, "point_noise": 0.01, "replicas": 3},  # crossover, precise, three seeds
    ],
    ids=["power-law", "crossover", "crossover-precise"],
)
def test_intervals_cover_the_true_exponents(law):
    coverage, half_width, spread = _coverage(50, **law)
    assert (coverage >= 0.86).all(), coverage  # nominal 0.95; 50 trials
    # not vacuous: the Student-t half-width is t_{R-1} ~ 2.8-4.3 standard errors
    t_quantile = stats.t.ppf(0.975, df=law.get("replicas", 5) - 1)
    assert (half_width <= 2.5 * t_quantile * spread + 1e-3).all(), (half_width, spread)


def test_non_completed_replicas_exclude_their_point():
    values = crossover(np.random.default_rng(3), n=2.0)
    values[2, -1, 0] = np.nan  # a replica out of budget at P = 4096, highest T
    fit = fit_power_law(values, resamples=100)
    assert fit["points_excluded"].item() == 1
    assert not fit["window"].values[2, -1]
    assert fit["exponent_low"].sel(regressor="P") <= 0.5 <= fit["exponent_high"].sel(regressor="P")


def test_study_power_laws_measure_the_perceptron_predictions():
    """A summary obeying paper B's scaling: gamma, b and the noise exponents come back."""
    summary = perceptron_summary(np.random.default_rng(4), replicas=4)
    fits = power_laws(summary, resamples=200)
    assert set(fits["regressor"].values) == {"temperature", "P", "N"}
    for chi in (0.0, 1.0, 3.0):
        at = fits.sel(chi=chi)
        assert at["gamma_predicted"].item() == pytest.approx(1 / (1 + chi))
        assert at["b_predicted"].item() == pytest.approx((3 + chi) / (1 + chi))
        for name in ("gamma", "b", "delta"):
            assert at[f"{name}_low"] <= at[f"{name}_predicted"] <= at[f"{name}_high"], name
        noise = at.sel(observable="noise")
        for regressor in ("temperature", "P", "N"):
            pick = noise.sel(regressor=regressor)
            assert pick["exponent_low"] <= pick["exponent_predicted"] <= pick["exponent_high"]
    assert fits["power_law_window"].sel(observable="signal").any()
    assert "highest T" in fits.attrs["power_law_window_rule"]


def test_study_fits_artifact_has_units_and_both_analyses(tmp_path):
    from sgdnoise.io.artifact import read_artifact, write_artifact

    summary = perceptron_summary(np.random.default_rng(5), chis=(1.0,), dims=(32.0,))
    fits = study_fits(summary, ["power_laws", "critical_temperature", "training_curves"])
    write_artifact(fits, tmp_path / "fits.nc", "fit")
    back = read_artifact(tmp_path / "fits.nc", "fit")
    for name in (
        "gamma",
        "gamma_low",
        "gamma_high",
        "a",
        "a_low",
        "a_high",
        "critical_temperature",
        "collapse_exponent",
        "power_law_window",
    ):
        assert name in back, name
        assert back[name].attrs["units"]
    assert back["power_law_window"].dtype == bool
    assert not back["power_law_window"].sel(observable="test_error").any()  # not a power law
    assert back.attrs["study_analyses"] == "power_laws, critical_temperature"
    with pytest.raises(ValueError, match="study-level"):
        study_fits(summary, ["training_curves"])


@pytest.mark.slow
def test_scaling_figures_render_from_summary_and_fits(tmp_path):
    from sgdnoise.io.artifact import write_artifact
    from sgdnoise.plots import render

    summary = perceptron_summary(np.random.default_rng(6), chis=(1.0, 3.0), dims=(16.0, 64.0))
    write_artifact(summary, tmp_path / "summary.nc", "summary")  # two d: the row in d too
    fits = study_fits(summary, ["power_laws", "critical_temperature"])
    write_artifact(fits, tmp_path / "fits.nc", "fit")
    for figure in SCALING_FIGURES + CROSSOVER_FIGURES:
        out = tmp_path / f"{figure}.png"
        render(figure, str(tmp_path / "summary.nc"), str(out), str(tmp_path / "fits.nc"))
        assert out.stat().st_size > 10_000, figure


@pytest.mark.parametrize("given", ["no fits", "fits of another analysis"])
def test_scaling_figures_refuse_to_draw_without_their_study_fits(tmp_path, given):
    """A figure of a study-level analysis never reruns the fits: without them it raises a
    ValueError naming the missing variables and the stage that computes them."""
    import xarray as xr

    from sgdnoise.plots import FIGURES

    summary = perceptron_summary(np.random.default_rng(6), chis=(1.0,), dims=(16.0,))
    extra = {} if given == "no fits" else {"fits": xr.Dataset({"unrelated": 0.0})}
    for figure in SCALING_FIGURES + CROSSOVER_FIGURES:
        with pytest.raises(ValueError, match=f"{figure} needs .* study-fits"):
            FIGURES[figure](summary, str(tmp_path / f"{figure}.png"), **extra)
        assert not (tmp_path / f"{figure}.png").exists()


def test_the_stage_computes_every_study_level_analysis_of_the_registry():
    """The workflow asks study_fits for the analyses its registry puts in that stage: the
    stage must know a fit for each of them."""
    from sgdnoise.stages.study_fits import STUDY_FITS
    from sgdnoise.workflow_plan import ANALYSES, analyses_of_stage

    assert set(analyses_of_stage(list(ANALYSES), "study_fits")) == set(STUDY_FITS)


def _with_correction(rng, amplitude: float, sizes=SIZES, replicas: int = 8) -> xr.DataArray:
    """y = T P^0.5 exp(amplitude P^-0.5) x seed noise: running slope 0.5 - amplitude P^-0.5 / 2."""
    values = crossover(rng, e_t=1.0, e_p=0.5, tc0=1e-6, replicas=replicas, sizes=sizes)
    return values * np.exp(amplitude * values["P"] ** -0.5)


def _everything_in_window(values: xr.DataArray) -> xr.DataArray:
    return xr.ones_like(values.isel(replica=0, drop=True), dtype=bool)


def test_running_exponents_of_a_pure_power_law_cover_it_at_every_size():
    """Resolves: a chord slope off by a log base or a pair shift, and intervals that are
    too narrow (8 seeds, 5% noise: each running exponent is known to ~0.01)."""
    values = _with_correction(np.random.default_rng(3), amplitude=0.0)
    result = running_exponents(values, _everything_in_window(values), predicted=0.5)
    assert (result["running_exponent_low"] <= 0.5).all()
    assert (result["running_exponent_high"] >= 0.5).all()
    assert float((result["running_exponent_high"] - result["running_exponent_low"]).max()) < 0.06
    np.testing.assert_allclose(result["P_mid"], np.sqrt(SIZES[:-1] * SIZES[1:]))
    assert bool(result["prediction_inside"])
    wrong = running_exponents(values, _everything_in_window(values), predicted=0.6)
    assert not bool(wrong["prediction_inside"])  # a 20% wrong prediction is refused


def test_running_exponents_show_the_approach_and_the_extrapolation_recovers_it():
    """Corrections P^-1/2 of size 30 at P = 1024 (slope 0.5 - 15 / sqrt(P)): the global
    fit reads ~0.2 too low; the running exponents climb towards 0.5 and the omega = 1/2
    extrapolation recovers it to 0.02 (it fails when the correction is ignored)."""
    values = _with_correction(np.random.default_rng(4), amplitude=30.0)
    result = running_exponents(values, _everything_in_window(values), predicted=0.5)
    running = result["running_exponent"].values
    assert np.all(np.diff(running) > 0) and running[-1] < 0.45  # the approach, from below
    at_infinity = result["exponent_extrapolated"].sel(correction=0.5)
    assert abs(float(at_infinity) - 0.5) < 0.02
    assert bool(result["prediction_inside"])
    global_fit = fit_power_law(values)["exponent"].sel(regressor="P")
    assert float(global_fit) < 0.4  # what a verdict from the global fit alone would read


def test_running_exponents_use_only_the_window_at_both_sizes():
    """A pair with no temperature in the window at both sizes has no running exponent."""
    values = _with_correction(np.random.default_rng(5), amplitude=0.0)
    window = _everything_in_window(values)
    window[1] = False  # the second size contributes nothing
    result = running_exponents(values, window, predicted=0.5)
    assert np.isnan(result["running_exponent"].values[:2]).all()
    assert np.isfinite(result["running_exponent"].values[2:]).all()


def test_study_power_laws_carry_the_running_exponents():
    summary = perceptron_summary(np.random.default_rng(6), chis=(1.0,), dims=(16.0,))
    fits = power_laws(summary, resamples=50)
    pick = fits.sel(observable="t_star", chi=1.0, N=16)
    assert pick["running_exponent"].sizes["size_pair"] == SIZES.size - 1
    assert (pick["running_exponent_low"] <= 2.0).all() and (
        pick["running_exponent_high"] >= 2.0
    ).all()
    assert bool(pick["prediction_inside"])


def test_running_exponents_in_d_recover_the_d_laws_and_see_a_wrong_one():
    """Synthetic perceptron obeying signal ~ d^1/2, t* ~ d, noise ~ d^0 exactly: every
    running exponent in d covers its law (8 seeds). Resolves a d-exponent off by 0.1
    (the signal at the largest d made to grow as d^0.6 over the last pair): the last
    pair's intervals then exclude 1/2 at most P, while the exact law's include it."""
    dims = (16.0, 32.0, 64.0)
    summary = perceptron_summary(np.random.default_rng(8), chis=(1.0,), dims=dims, replicas=8)
    fits = power_laws(summary, resamples=50)
    for name in ("signal", "noise", "t_star"):
        pick = fits.sel(observable=name, chi=1.0)
        predicted = float(pick["exponent_predicted"].sel(regressor="N"))
        finite = np.isfinite(pick["running_exponent_N"].values)
        assert finite.mean() >= 0.5  # pairs whose d share no window temperature: NaN
        low = pick["running_exponent_N_low"].values[finite]
        high = pick["running_exponent_N_high"].values[finite]
        assert ((low <= predicted) & (predicted <= high)).mean() >= 0.8, name
    np.testing.assert_allclose(fits["N_mid"], np.sqrt(np.array(dims[:-1]) * dims[1:]))

    bent = summary.copy()
    bent["signal"] = summary["signal"] * xr.where(summary["N"] == dims[-1], 2.0**0.1, 1.0)
    last_pair = power_laws(bent, resamples=50).sel(observable="signal", chi=1.0, N_pair=1)
    finite = np.isfinite(last_pair["running_exponent_N"].values)
    excluded = (last_pair["running_exponent_N_low"].values[finite] > 0.5).mean()
    assert excluded >= 0.8
    assert abs(float(last_pair["running_exponent_N"].mean()) - 0.6) < 0.03


def test_a_study_of_one_size_is_refused_before_running():
    """power_laws measures exponents in P: a grid of one P (seen: a partial paper grid that
    trained every point, then failed drawing the running exponents) is refused at
    validation, naming the key and the sizes it has."""
    study = {
        "base": {
            "model": {"kind": "perceptron", "constraint": "none", "alpha": 32768},
            "loss": {"kind": "hinge"},
            "data": {"kind": "depleted_sign", "N": 16, "P": 1024, "chi": 1},
            "optimizer": {"kind": "minibatch_sgd", "batch_size": 2},
            "run": {"stop": "zero_loss", "max_steps": None, "max_time": 1e9},
        },
        "grid": {"optimizer.temperature": [1e-4, 1e-3]},
        "analyses": ["power_laws"],
    }
    with pytest.raises(ConfigError, match=r"at least two training-set sizes data.P .*P = 1024"):
        expand_study("one_size", study)
    study["grid"]["data.P"] = [1024, 2048]
    assert len(expand_study("two_sizes", study)) == 4
