"""Crossover temperature against the margin: T_c(kappa), kappa = 1/alpha, at fixed P (B5, B6).

In paper B's perceptron the temperature where SGD noise starts to change the trained
model is set by the margin kappa = 1/alpha of the alpha-trick hinge, not by the size P of
the training set (docs/physics.md B6). This analysis measures T_c at every alpha of a
study that sweeps model.alpha and optimizer.temperature, every other swept axis (data.chi,
data.N, data.P, ...) being a group held fixed, and fits T_c ~ kappa^s.

Criterion and uncertainty: those of analysis.critical_temperature, unchanged (plateau at
the lowest temperature, T_c the first T where |<y>/y_0 - 1| reaches the threshold,
interpolated in log T; points where a replica did not complete left out; bootstrap over
seeds resampled jointly for the whole study, criterion re-applied in every resample,
Student-t interval on log T_c).

Slope s, per observable and group: least squares of log T_c on log kappa over the alphas
with a T_c in that resample (at least three: more than the line's two parameters), in
every resample, with the Student-t interval of the same resamples. Beside it the ratio
c = T_c / kappa, the geometric mean over the same alphas (the amplitude of T_c = c kappa
at s = 1), with its interval.

Plateau systematic: T_c is a departure from y_0, the value at the lowest temperature, and
on a common temperature grid the lowest T / kappa is largest at the smallest margin: if
the observable has already left its plateau there, y_0 is biased at that alpha alone and
s with it, by more than the seeds' scatter shows (seen on the default slice: s = 0.87
[0.79, 0.94] where s = 1 exactly, with y(T_2) / y_0 = 1.09 at the largest alpha). So s
is refitted with the plateau read one temperature up (the lowest temperature dropped)
and |s' - s| is reported as ``margin_crossover_slope_plateau_systematic``: the interval
to quote is [low - systematic, high + systematic]. A large value says the grid does not
reach low enough temperatures at the largest alpha.

Prediction (our derivation from the definitions of docs/physics.md B1, B3, B4; paper B
gives no exponent). For the unconstrained perceptron with the hinge, write u = w - w0
and h = y u . x / sqrt(d): the loss (1/alpha) max(0, 1 - alpha h) = max(0, kappa - h) has
the force 1 for h < kappa and 0 beyond, so a minibatch step is
u <- u + (lr / B) sum over the batch samples with h < kappa of y x / sqrt(d), from u = 0.
With u = kappa v, v follows the same dynamics with margin 1 and step lr / kappa, i.e.
temperature T / kappa, on the same data and batches. Hence, exactly:

    signal u_1 = kappa S(T / kappa),    noise |u_perp|^2 / (d - 1) = kappa^2 Nz(T / kappa),
    |w* - w0| / |w0| = kappa W(T / kappa) / |w0|,   t* = lr x steps = kappa tau(T / kappa),
    test error = E(T / kappa)  (the sign of u . x does not change with the scale),

so every observable's relative departure from its plateau is a function of T / kappa
alone and T_c = c kappa: s = 1, with c depending on chi, d, P, B and the observable. The
engine's draws depend on step counts only, so on grids where T / kappa repeats from one
alpha to another the runs repeat draw for draw (rescaled). No prediction is made for the
square hinge, a constraint or a ridge (they break the rescaling) or for networks (f is not
linear in w).
Units: T, T_c and kappa in the config's units (T = lr / (h B)); s and c are pure numbers
(c in units of temperature per unit of margin).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from sgdnoise.analysis.critical_temperature import (
    CONFIDENCE,
    DEPARTURE_THRESHOLD,
    RESAMPLES,
    curve_critical_temperatures,
    log_linear_fits,
)
from sgdnoise.analysis.phase_diagram import ALPHA, swept_dimension
from sgdnoise.analysis.phase_diagram import TEMPERATURE as TEMPERATURE_PATH
from sgdnoise.analysis.scaling_data import (
    REPLICA,
    TEMPERATURE,
    complete_points,
    observables_at_stop,
)
from sgdnoise.analysis.statistics import bootstrap_means, student_interval
from sgdnoise.io.artifact import study_config

KAPPA = "kappa"


def predicted_slope(summary: xr.Dataset) -> float:
    """s of T_c ~ kappa^s: 1 for the unconstrained hinge perceptron (module docstring),
    NaN where the rescaling argument does not hold."""
    config = study_config(summary)
    rescales = (
        config.model.kind == "perceptron"
        and config.model.constraint == "none"
        and config.loss.kind == "hinge"
    )
    return 1.0 if rescales else np.nan


def fit_margin_crossover(
    values: xr.DataArray,
    alpha_dim: str,
    threshold: float = DEPARTURE_THRESHOLD,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> xr.Dataset:
    """T_c per alpha and group, the slope s of log T_c on log kappa and c = T_c / kappa.

    ``values``: one observable at stopping (scaling_data.observables_at_stop), with dims
    the groups, ``alpha_dim``, temperature and replica; NaN where a replica did not
    complete.
    """
    groups = [d for d in values.dims if d not in (alpha_dim, TEMPERATURE, REPLICA)]
    values = values.transpose(*groups, alpha_dim, TEMPERATURE, REPLICA)
    replicas, alphas = values.sizes[REPLICA], values.sizes[alpha_dim]
    data = values.values.reshape(-1, values.sizes[TEMPERATURE], replicas)
    log_temperature = np.log(values[TEMPERATURE].values.astype(float))
    means = bootstrap_means(data, resamples, seed)
    log_tc, plateau, plateau_value = curve_critical_temperatures(
        means, complete_points(data), log_temperature, threshold
    )
    tc_low, tc_high = student_interval(log_tc[0], log_tc[1:], replicas, confidence)

    log_kappa = -np.log(values[alpha_dim].values.astype(float))
    per_group = log_tc.reshape(means.shape[0], -1, alphas)
    fits = _kappa_fits(per_group, log_kappa)  # (draws, groups, [log c, s])
    slope = fits[..., 1]
    # the plateau read one temperature up: the seed means only (module docstring)
    shifted_tc, _, _ = curve_critical_temperatures(
        means[:1, :, 1:], complete_points(data[:, 1:]), log_temperature[1:], threshold
    )
    shifted = _kappa_fits(shifted_tc.reshape(1, -1, alphas), log_kappa)[0, :, 1]
    finite = np.isfinite(per_group)
    log_ratio = np.where(finite, per_group - log_kappa, 0.0).sum(-1) / np.maximum(finite.sum(-1), 1)
    log_ratio[~np.isfinite(slope)] = np.nan  # c over the alphas of the fit, as s
    slope_low, slope_high = student_interval(slope[0], slope[1:], replicas, confidence)
    ratio_low, ratio_high = student_interval(log_ratio[0], log_ratio[1:], replicas, confidence)

    group_shape = [values.sizes[d] for d in groups]
    point_dims, point_shape = [*groups, alpha_dim], [*group_shape, alphas]

    def per_point(array: np.ndarray) -> tuple[list[str], np.ndarray]:
        return point_dims, np.asarray(array).reshape(point_shape)

    def per_fit(array: np.ndarray) -> tuple[list[str], np.ndarray]:
        return groups, np.asarray(array).reshape(group_shape)

    return xr.Dataset(
        {
            "margin_critical_temperature": per_point(np.exp(log_tc[0])),
            "margin_critical_temperature_low": per_point(np.exp(tc_low)),
            "margin_critical_temperature_high": per_point(np.exp(tc_high)),
            "margin_plateau_reached": per_point(plateau),
            "margin_plateau_value": per_point(plateau_value),
            "margin_crossover_slope": per_fit(slope[0]),
            "margin_crossover_slope_low": per_fit(slope_low),
            "margin_crossover_slope_high": per_fit(slope_high),
            "margin_crossover_slope_plateau_systematic": per_fit(np.abs(shifted - slope[0])),
            "margin_crossover_log_amplitude": per_fit(fits[0, :, 0]),
            "margin_crossover_ratio": per_fit(np.exp(log_ratio[0])),
            "margin_crossover_ratio_low": per_fit(np.exp(ratio_low)),
            "margin_crossover_ratio_high": per_fit(np.exp(ratio_high)),
        },
        coords={
            **{d: values[d].values for d in point_dims},
            KAPPA: (alpha_dim, np.exp(log_kappa)),
        },
    )


def _kappa_fits(log_tc: np.ndarray, log_kappa: np.ndarray) -> np.ndarray:
    """[log A, s] of log T_c = log A + s log kappa per draw and group: log_tc (draws,
    groups, alphas) -> (draws, groups, 2)."""
    return np.stack(
        [log_linear_fits(log_tc[:, g], log_kappa[:, None]) for g in range(log_tc.shape[1])],
        axis=1,
    )


def margin_crossover(
    summary: xr.Dataset,
    threshold: float = DEPARTURE_THRESHOLD,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> xr.Dataset:
    """T_c(kappa), the slope s of T_c ~ kappa^s and c = T_c / kappa of every observable at
    stopping, beside the predicted s (module docstring).

    Dims: observable, the groups (every grid dim but alpha and temperature), alpha (with
    the coordinate kappa = 1/alpha) for T_c.
    """
    alpha_dim = swept_dimension(summary, ALPHA)
    if alpha_dim is None or swept_dimension(summary, TEMPERATURE_PATH) is None:
        raise ValueError(
            f"the margin crossover needs the grid to sweep {ALPHA} and {TEMPERATURE_PATH}; "
            f"it sweeps {summary.attrs.get('grid_axes', '{}')}"
        )
    observed = observables_at_stop(summary)
    parts = [
        fit_margin_crossover(values, alpha_dim, threshold, resamples, confidence, seed)
        for values in observed.values()
    ]
    result = xr.concat(parts, dim="observable").assign_coords(observable=list(observed))
    result["margin_crossover_predicted_slope"] = predicted_slope(summary)
    result.attrs.update(
        margin_crossover_criterion=(
            "T_c of analysis critical_temperature at every alpha (plateau y_0 = seed mean at "
            "the lowest T, T_c = first T where |<y>/y_0 - 1| reaches threshold, interpolated "
            "in log T); s from least squares of log T_c on log kappa, kappa = 1/alpha, over "
            "the alphas with a T_c (at least three); c = geometric mean of T_c / kappa over them; "
            "plateau systematic |s' - s|, s' with the lowest temperature dropped"
        ),
        margin_crossover_threshold=threshold,
        margin_crossover_method=(
            f"Student-t bootstrap over seeds ({resamples} joint resamples of the replica "
            f"index, criterion re-applied) on log T_c, s and log c; confidence {confidence}"
        ),
        margin_crossover_prediction=(
            "s = 1 exactly for the unconstrained hinge perceptron: u = w - w0 rescaled by "
            "kappa follows the dynamics at margin 1 and temperature T / kappa (sgdnoise's "
            "derivation, not a statement of paper B); NaN elsewhere"
        ),
        margin_crossover_bootstrap_seed=seed,
    )
    return result


UNITS = {
    "observable": ("1", "observable at stopping"),
    KAPPA: ("1", "margin kappa = 1/alpha of the alpha-trick hinge"),
    "margin_critical_temperature": (
        "temperature",
        "crossover temperature T_c at each alpha: departure from the T -> 0 plateau",
    ),
    "margin_critical_temperature_low": ("temperature", "lower end of the interval of T_c"),
    "margin_critical_temperature_high": ("temperature", "upper end of the interval of T_c"),
    "margin_plateau_reached": ("1", "whether the two lowest temperatures lie on the plateau"),
    "margin_plateau_value": (
        "1",
        "seed mean of the observable at the lowest temperature (plateau y_0)",
    ),
    "margin_crossover_slope": ("1", "slope s of T_c ~ kappa^s: d log T_c / d log kappa"),
    "margin_crossover_slope_low": ("1", "lower end of the interval of s"),
    "margin_crossover_slope_high": ("1", "upper end of the interval of s"),
    "margin_crossover_slope_plateau_systematic": (
        "1",
        "|s' - s|, s' with the plateau read one temperature up: widen the interval by it",
    ),
    "margin_crossover_log_amplitude": (
        "1",
        "log A of the fitted line T_c = A kappa^s (log T_c at kappa = 1)",
    ),
    "margin_crossover_ratio": (
        "temperature",
        "c = T_c / kappa: geometric mean over the alphas with a T_c (per unit margin)",
    ),
    "margin_crossover_ratio_low": ("temperature", "lower end of the interval of c"),
    "margin_crossover_ratio_high": ("temperature", "upper end of the interval of c"),
    "margin_crossover_predicted_slope": (
        "1",
        "predicted s: 1 for the unconstrained hinge perceptron (exact rescaling), else NaN",
    ),
}
