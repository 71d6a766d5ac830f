"""Power laws of the observables at stopping, fitted where the law applies (docs/physics.md B5).

In the noise-dominated regime (T well above the crossover T_c) the scaling argument
of paper B predicts, for the perceptron on depleted_sign with exponent chi,

    signal          u_1                  ~ T   d^1/2 P^gamma,  gamma = 1 / (1 + chi)
    noise           |u_perp|^2 / (d - 1) ~ T^2 d^0   P^0       (|u_perp| ~ T sqrt(d))
    training time   t*                   ~ T   d     P^b,      b = (3 + chi) / (1 + chi)
    weight change   |w* - w0| / |w0|     ~ T^delta P^gamma_w,  delta = 1, gamma_w = gamma

(the last from u_1 >> |u_perp|: |w* - w0| ~ u_1 and |w0| ~ sqrt(d)). These are
predictions to test: the exponents are measured, with confidence intervals, and stored
beside the formulas. Units: T, t* in the config's units (T = lr / (h B), t* in lr x
steps); u_1, noise and the weight change are dimensionless.

Fit (one group = fixed values of every swept axis other than T, P and N, e.g. chi):

    log y = log A + e_T log T + e_P log P + e_N log N

by least squares on the seed-averaged log y (the geometric mean over seeds) of the
points inside the power-law window, with a regressor for each of T, P, N that varies.

Window rule (stated, applied by code, never by hand). Each curve y(T) at fixed (P, N)
gets a window of consecutive temperatures ENDING AT THE HIGHEST ONE (the
noise-dominated regime is T >> T_c), grown downwards one temperature at a time from
the top ``min_points`` (3) while each new point lies on the power law of the points
above it: the deviation of its seed-averaged log y from the least-squares line through
the window above, divided by the log T step (a slope error), is below ``tolerance``
(0.01) or not significant (two-sided Student-t test at ``level`` 0.05 on the per-seed
deviations). The growth stops at the first point that breaks this; a curve whose top
points already break it contributes nothing. Points where a replica did not complete,
or where the observable is not positive, are left out of the curve (counted in
``points_excluded``).

Confidence intervals, two parts added in quadrature:
- statistical: bootstrap over seeds (replica indices resampled jointly for all points
  of the study, the window rule re-applied in every resample), as the Student-t
  interval t_{R-1} sqrt(R / (R - 1)) sd_bootstrap, which has nominal coverage for a fit
  linear in the seed averages (it is one for a fixed window);
- systematic (finite window): WINDOW_FACTOR = 2 times the drift d of the exponent when
  every window is cut to its upper half, net of the drift's own seed noise s_d:
  2 sqrt(max(d^2 - s_d^2, 0)). A window still inside the slow approach to the
  asymptote gives a finite-window exponent; this term measures that drift.
Tests (tests/test_power_laws.py) check coverage on synthetic power laws with and
without crossovers.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import stats

from sgdnoise.analysis.running_exponents import (
    CORRECTIONS,
    running_exponents,
    running_exponents_in_dimension,
)
from sgdnoise.analysis.scaling_data import (
    REPLICA,
    TEMPERATURE,
    complete_points,
    fit_groups,
    log_axes,
    observables_at_stop,
    temperature_curves,
)
from sgdnoise.analysis.statistics import (
    bootstrap_means,
    bootstrap_spread,
    standard_error,
    student_interval,
)
from sgdnoise.io.artifact import study_config

OBSERVABLES = ("signal", "noise", "t_star", "weight_change")  # test error: not a power law
SLOPE_TOLERANCE = 0.01
DEVIATION_LEVEL = 0.05
MIN_POINTS = 3
RESAMPLES = 1000
CONFIDENCE = 0.95
WINDOW_FACTOR = 2.0  # systematic = this x |exponent(window) - exponent(upper half)|


def predicted_exponent(observable: str, regressor: str, chi: float) -> float:
    """The scaling prediction of paper B for the perceptron on depleted_sign (NaN: none)."""
    gamma = 1.0 / (1.0 + chi)
    table = {
        ("signal", TEMPERATURE): 1.0,
        ("signal", "P"): gamma,
        ("signal", "N"): 0.5,
        ("noise", TEMPERATURE): 2.0,
        ("noise", "P"): 0.0,
        ("noise", "N"): 0.0,
        ("t_star", TEMPERATURE): 1.0,
        ("t_star", "P"): (3.0 + chi) / (1.0 + chi),
        ("t_star", "N"): 1.0,
        ("weight_change", TEMPERATURE): 1.0,
        ("weight_change", "P"): gamma,
        ("weight_change", "N"): 0.0,
    }
    return table.get((observable, regressor), np.nan)


def window_start(
    log_mean: np.ndarray,
    log_temperature: np.ndarray,
    per_seed: np.ndarray,
    tolerance: float = SLOPE_TOLERANCE,
    level: float = DEVIATION_LEVEL,
    min_points: int = MIN_POINTS,
) -> np.ndarray:
    """Index of the lowest temperature of the power-law window, per resample (-1: none).

    log_mean (resamples, n): seed-averaged log y of one curve at increasing temperatures
    log_temperature (n,); per_seed (n, R): log y of each seed (for standard errors).
    The window [start, n) is grown downwards from the top ``min_points`` temperatures,
    one temperature T_j at a time, while the new point lies on the power law of the
    points above it: the deviation of log y(T_j) from the least-squares line through
    the points j + 1 .. n - 1, divided by log T_(j+1) - log T_j (a slope error), is
    below ``tolerance`` in magnitude or not significant (two-sided Student-t test at
    ``level`` on the per-seed deviations). It stops at the first point that breaks this.
    """
    resamples, n = log_mean.shape
    start = np.full(resamples, -1)
    if n < min_points:
        return start
    replicas = per_seed.shape[1]
    critical = stats.t.ppf(1 - level / 2, df=max(replicas - 1, 1))
    growing = np.ones(resamples, dtype=bool)
    for first in range(n - min_points, -1, -1):
        above = log_temperature[first + 1 :]
        line = np.polyfit(above - above.mean(), np.eye(above.size), 1)  # (2, points)
        weights = line[0] * (log_temperature[first] - above.mean()) + line[1]
        gap = log_temperature[first + 1] - log_temperature[first]
        deviation = (log_mean[:, first] - log_mean[:, first + 1 :] @ weights) / gap
        seed_deviation = (per_seed[first] - weights @ per_seed[first + 1 :]) / gap
        error = float(standard_error(seed_deviation)) if replicas > 1 else 0.0
        growing &= np.abs(deviation) <= max(tolerance, critical * error)
        start[growing] = first
    return start


def fit_power_law(
    values: xr.DataArray,
    tolerance: float = SLOPE_TOLERANCE,
    level: float = DEVIATION_LEVEL,
    min_points: int = MIN_POINTS,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> xr.Dataset:
    """Exponents of y ~ A T^e_T P^e_P N^e_N with Student-t bootstrap intervals over seeds.

    ``values``: one group's observable at stopping, dims (P?, N?, temperature, replica),
    NaN where a replica did not complete. Returns exponent, exponent_low/_high
    (dim ``regressor``), log_amplitude, the window mask (dims of values without the
    replica), points_in_window, points_excluded and resamples_failed.
    """
    values, sizes, data = temperature_curves(values)
    shape = values.shape[:-1]
    replicas = values.sizes[REPLICA]
    with np.errstate(divide="ignore", invalid="ignore"):
        curves = np.log(np.where(data > 0, data, np.nan))  # (C, nT, R)
    usable = complete_points(curves)
    log_temperature, log_sizes = log_axes(values, sizes)
    means = bootstrap_means(curves, resamples, seed)  # (1 + resamples, C, nT)
    draws = means.shape[0]
    window = np.zeros((draws,) + usable.shape, dtype=bool)
    for c in range(curves.shape[0]):
        valid = np.flatnonzero(usable[c])
        if valid.size < min_points:
            continue
        start = window_start(
            means[:, c, valid],
            log_temperature[valid],
            curves[c, valid],
            tolerance,
            level,
            min_points,
        )
        for b in np.flatnonzero(start >= 0):
            window[b, c, valid[start[b] :]] = True

    regressors = [TEMPERATURE, *sizes]
    columns = np.concatenate(
        [
            np.broadcast_to(log_temperature[None, :, None], usable.shape + (1,)),
            np.broadcast_to(log_sizes[:, None, :], usable.shape + (len(sizes),)),
        ],
        axis=-1,
    ).reshape(-1, len(regressors))
    varying = [j for j in range(len(regressors)) if np.ptp(columns[usable.ravel(), j]) > 0]
    design = np.concatenate([np.ones((columns.shape[0], 1)), columns[:, varying]], axis=1)
    targets = means.reshape(draws, -1)
    coefficients = _weighted_least_squares(design, window.reshape(draws, -1).astype(float), targets)
    upper_coefficients = _weighted_least_squares(
        design,
        _upper_half(window, min_points).reshape(draws, -1).astype(float),
        targets,
    )
    exponents = np.full((draws, len(regressors)), np.nan)
    exponents[:, varying] = coefficients[:, 1:]
    drift = np.full((draws, len(regressors)), np.nan)
    drift[:, varying] = coefficients[:, 1:] - upper_coefficients[:, 1:]
    drift_noise = bootstrap_spread(drift[1:], replicas)
    systematic = WINDOW_FACTOR * np.sqrt(np.clip(drift[0] ** 2 - drift_noise**2, 0.0, None))
    low, high = student_interval(exponents[0], exponents[1:], replicas, confidence)
    statistical = (high - low) / 2
    half_width = np.hypot(statistical, systematic)
    low, high = exponents[0] - half_width, exponents[0] + half_width
    point_dims = [*sizes, TEMPERATURE]
    return xr.Dataset(
        {
            "exponent": (("regressor",), exponents[0]),
            "exponent_low": (("regressor",), low),
            "exponent_high": (("regressor",), high),
            "exponent_statistical": (("regressor",), statistical),
            "exponent_systematic": (("regressor",), systematic),
            "log_amplitude": ((), coefficients[0, 0]),
            "window": (point_dims, window[0].reshape(shape)),
            "points_in_window": ((), int(window[0].sum())),
            "points_excluded": ((), int((~usable).sum())),
            "resamples_failed": (
                (),
                int(np.isnan(exponents[1:, varying]).any(axis=1).sum()) if varying else resamples,
            ),
        },
        coords={"regressor": regressors, **{d: values[d].values for d in point_dims}},
    )


def _upper_half(window: np.ndarray, min_points: int) -> np.ndarray:
    """The upper half of each curve's window (last axis: temperature), >= min_points."""
    from_top = np.cumsum(window[..., ::-1], axis=-1)[..., ::-1]
    total = window.sum(axis=-1, keepdims=True)
    keep = np.maximum(min_points, np.ceil(total / 2))
    return window & (from_top <= keep)


def _weighted_least_squares(
    design: np.ndarray, weights: np.ndarray, targets: np.ndarray
) -> np.ndarray:
    """Coefficients per resample of sum_p w_bp (y_bp - X_p beta_b)^2 (NaN if degenerate)."""
    k = design.shape[1]
    normal = np.einsum("bp,pi,pj->bij", weights, design, design)
    right = np.einsum("bp,pi,bp->bi", weights, design, targets)
    result = np.full((weights.shape[0], k), np.nan)
    enough = weights.sum(axis=1) > k
    for b in np.flatnonzero(enough):
        if np.linalg.matrix_rank(normal[b]) == k:
            result[b] = np.linalg.solve(normal[b], right[b])
    return result


def power_laws(
    summary: xr.Dataset,
    tolerance: float = SLOPE_TOLERANCE,
    level: float = DEVIATION_LEVEL,
    min_points: int = MIN_POINTS,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> xr.Dataset:
    """Power-law exponents of every stopping observable of a study, per group, with CIs.

    Dims of the result: observable, the group dims (e.g. chi), regressor (temperature,
    P, N: those swept). ``exponent_predicted`` holds paper B's perceptron predictions
    where they apply (depleted_sign data), NaN elsewhere; ``power_law_window`` marks the
    points each fit used. Named copies of the paper's exponents: gamma (signal vs P),
    b (t* vs P), delta (weight change vs T), each with _low, _high, _predicted.
    """
    observed = {
        name: values for name, values in observables_at_stop(summary).items() if name in OBSERVABLES
    }
    data = study_config(summary).data
    depleted = data.kind == "depleted_sign"
    fixed_chi = data.chi

    def fit(name: str, values: xr.DataArray) -> xr.Dataset:
        result = fit_power_law(values, tolerance, level, min_points, resamples, confidence, seed)
        chi = float(values["chi"]) if "chi" in values.coords else fixed_chi

        def predicted(regressor: str) -> float:
            return predicted_exponent(name, regressor, chi) if depleted else np.nan

        result["exponent_predicted"] = (
            ("regressor",),
            [predicted(r) for r in result["regressor"].values],
        )
        if values.sizes.get("P", 0) >= 2:
            running = running_exponents(values, result["window"], predicted("P"), confidence)
            result = result.merge(running)
        if values.sizes.get("N", 0) >= 2:
            result = result.merge(
                running_exponents_in_dimension(values, result["window"], confidence)
            )
        return result

    result = fit_groups(observed, fit)
    result = result.rename(window="power_law_window")
    result["power_law_window"] = result["power_law_window"].fillna(False).astype(bool)
    for symbol, observable, regressor in (
        ("gamma", "signal", "P"),
        ("b", "t_star", "P"),
        ("delta", "weight_change", TEMPERATURE),
    ):
        if observable in result["observable"] and regressor in result["regressor"]:
            pick = {"observable": observable, "regressor": regressor}
            for suffix in ("", "_low", "_high", "_predicted"):
                source = "exponent" + suffix
                result[symbol + suffix] = result[source].sel(pick, drop=True)
    result.attrs.update(
        power_law_method=(
            "least squares of the seed-averaged log y on log T, log P, log N (those swept) "
            "over the points of the power-law window; interval = statistical (Student-t "
            f"bootstrap over seeds, {resamples} joint resamples of the replica index, window "
            f"rule re-applied) and systematic ({WINDOW_FACTOR:g} x the exponent's drift when "
            "each window is cut to its upper half, net of the drift's seed noise) in "
            f"quadrature; confidence {confidence}"
        ),
        power_law_window_rule=(
            "per curve y(T) at fixed P, N: consecutive temperatures ending at the highest T, "
            "grown downwards from the top min_points while each new point's deviation from "
            "the log-log line through the points above, per unit log T, is below tolerance "
            "or not significant at level (Student t over seeds); points with a "
            "non-completed replica or y <= 0 excluded"
        ),
        running_exponent_method=(
            "per pair of successive P: the chord slope of the seed-averaged log y, averaged "
            "over the temperatures in the power-law window at both sizes, Student-t interval "
            "over seeds; extrapolated as e = e_inf + c P_mid^-omega (least squares) for omega "
            + ", ".join(f"{w:g}" for w in CORRECTIONS)
            + "; in N (the input dimension d): the same chords between successive N at "
            "fixed P, not extrapolated"
        ),
        power_law_slope_tolerance=tolerance,
        power_law_deviation_level=level,
        power_law_min_points=min_points,
        power_law_bootstrap_seed=seed,
    )
    return result


UNITS = {
    "observable": ("1", "observable at stopping"),
    "regressor": ("1", "variable of the power law: temperature, P or N"),
    "exponent": ("1", "fitted power-law exponent of the observable in the regressor"),
    "exponent_low": ("1", "lower end of the exponent's confidence interval"),
    "exponent_high": ("1", "upper end of the exponent's confidence interval"),
    "exponent_statistical": ("1", "statistical half-width of the interval (bootstrap over seeds)"),
    "exponent_systematic": ("1", "systematic half-width of the interval (fit-window dependence)"),
    "exponent_predicted": ("1", "paper B's scaling prediction for the perceptron (NaN: none)"),
    "log_amplitude": ("1", "log A of the fit y = A T^e_T P^e_P N^e_N"),
    "power_law_window": ("1", "whether the point (P, N, T) entered the power-law fit"),
    "points_in_window": ("1", "number of grid points in the power-law fit"),
    "points_excluded": ("1", "grid points left out: a replica not completed or y <= 0"),
    "resamples_failed": ("1", "bootstrap resamples where the fit was degenerate"),
    "size_pair": ("1", "index of a pair of successive training-set sizes P_low < P_high"),
    "P_low": ("1", "smaller training-set size of the pair"),
    "P_high": ("1", "larger training-set size of the pair"),
    "P_mid": ("1", "geometric mean sqrt(P_low P_high), where a running exponent is placed"),
    "correction": ("1", "omega of the assumed corrections to scaling P^-omega"),
    "running_exponent": ("1", "slope in log P of log y between successive sizes (window T)"),
    "running_exponent_low": ("1", "lower end of the running exponent's interval"),
    "running_exponent_high": ("1", "upper end of the running exponent's interval"),
    "exponent_extrapolated": ("1", "e_inf of running exponents e = e_inf + c P^-omega"),
    "exponent_extrapolated_low": ("1", "lower end of the interval of e_inf"),
    "exponent_extrapolated_high": ("1", "upper end of the interval of e_inf"),
    "prediction_inside": ("1", "whether the predicted exponent in P lies in an e_inf interval"),
    "N_pair": ("1", "index of a pair of successive input dimensions N_low < N_high"),
    "N_low": ("1", "smaller input dimension d of the pair"),
    "N_high": ("1", "larger input dimension d of the pair"),
    "N_mid": ("1", "geometric mean sqrt(N_low N_high), where a running exponent in d is placed"),
    "running_exponent_N": ("1", "slope in log d of log y between successive d at fixed P"),
    "running_exponent_N_low": ("1", "lower end of the running exponent in d's interval"),
    "running_exponent_N_high": ("1", "upper end of the running exponent in d's interval"),
    "gamma": ("1", "exponent of the signal u_1 in P (prediction 1 / (1 + chi))"),
    "gamma_low": ("1", "lower end of the interval of gamma"),
    "gamma_high": ("1", "upper end of the interval of gamma"),
    "gamma_predicted": ("1", "predicted gamma = 1 / (1 + chi)"),
    "b": ("1", "exponent of t* in P (prediction (3 + chi) / (1 + chi))"),
    "b_low": ("1", "lower end of the interval of b"),
    "b_high": ("1", "upper end of the interval of b"),
    "b_predicted": ("1", "predicted b = (3 + chi) / (1 + chi)"),
    "delta": ("1", "exponent of the relative weight change in T"),
    "delta_low": ("1", "lower end of the interval of delta"),
    "delta_high": ("1", "upper end of the interval of delta"),
    "delta_predicted": ("1", "predicted delta (1 for the perceptron)"),
}
