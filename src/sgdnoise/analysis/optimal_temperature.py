"""Optimal temperature T_opt(alpha) and its exponent k in the feature regime (docs/physics.md B5).

Paper B: in the feature-learning regime of the alpha-trick networks the temperature of
lowest test error grows with the output scale as T_opt ~ alpha^k, with k = (D - 1)/(D + 1)
argued for D hidden layers (model.depth of an ``fcn``). Pure functions on a study summary
(stages.aggregate) whose grid sweeps model.alpha and optimizer.temperature; every other
swept axis (model.depth, data.P, ...) is a group, fitted separately.

T_opt, one curve (the test error against T at one alpha and group):

    points         a temperature enters only if every replica completed (reached zero
                   training loss): the rule of the scaling analyses
                   (scaling_data.complete_points), so that every resample averages the
                   same seeds;
    minimum        the usable temperature T_m of lowest seed-mean test error;
    T_opt          the vertex of the parabola in log T through T_m and its two usable
                   neighbours (it lies between the midpoints of T_m and each neighbour);
    status         ``interior`` when it exists. A minimum at the lowest or highest usable
                   temperature (``minimum_at_lowest_temperature`` /
                   ``minimum_at_highest_temperature``) only bounds T_opt: T_opt is NaN, and
                   the grid minimum T_m is kept as the bound. Fewer than three usable
                   temperatures: ``too_few_temperatures``; three equal means: ``flat``.

Stability edge T_edge, one curve: the temperature above which SGD stops reaching zero
loss (seeds diverge or stall until the budget ends). With T_a the highest temperature
where at least EDGE_FRACTION of the seeds completed and T_b the next one up, T_edge is
where the completed fraction, linear in log T between them, falls through EDGE_FRACTION;
NaN when no temperature reaches it or the highest one does (the edge is above the grid).
T_opt sits at or below it by construction (a usable temperature has every seed
completed), so its exponent, fitted like k, tells whether T_opt ~ alpha^k is the noise's
optimum or the edge's own scaling (measured on the paper's network: at D = 2 the test
error falls up to the edge).

Uncertainty: bootstrap over seeds (replica r of every point is seed r; the replica
indices are resampled jointly for the whole study), the rule above re-applied in every
resample, and the Student-t interval on log T_opt (statistics.student_interval).
Where every seed completes at T_a and none at T_b the seeds' bootstrap cannot see where
inside [T_a, T_b] the edge lies: the edge's interval then spans at least the bracket, and
the interval of its exponent adds, in quadrature, the slope's spread from such edges
uniform within their brackets.
``optimal_temperature_interior_fraction`` is the fraction of resamples with an interior
minimum: well below 1, the minimum sits near a grid edge and the interval is optimistic.

Exponent k, per group: least squares of log T_opt on log alpha over the feature regime, in
every resample. The feature regime is chosen explicitly: the alphas at most ``max_alpha``
whose T_opt is interior in that resample; at least ``MIN_FIT_ALPHAS`` of them, else k is
NaN. The edge's exponent likewise, from the alphas with a T_edge. By default ``max_alpha``
is the lazy/feature crossover of the data: the alpha where the tangent kernel's change at
the lowest temperature crosses 1 (the phase diagram's boundary; per group, so per depth),
since a lazy alpha's flat test-error curve can show a spurious interior minimum (measured:
at alpha = 2^8, 2^10 on the paper's FC-5L); without a kernel change in the summary there
is no bound. Alphas whose minimum is at the lowest temperature leave the fit by the second
condition. Student-t interval from the same resamples, beside the prediction (D-1)/(D+1).
Units: T and T_opt in the config's temperature units (T = lr / (h B)); alpha and k are
dimensionless.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from sgdnoise.analysis.phase_diagram import (
    ALPHA,
    LAZY_KERNEL_CHANGE,
    lazy_feature_boundary,
    mean_kernel_change,
    swept_dimension,
)
from sgdnoise.analysis.phase_diagram import TEMPERATURE as TEMPERATURE_PATH
from sgdnoise.analysis.scaling_data import (
    REPLICA,
    TEMPERATURE,
    complete_points,
    observables_at_stop,
)
from sgdnoise.analysis.statistics import bootstrap_means, student_interval
from sgdnoise.io.artifact import study_config

DEPTH = "model.depth"
RESAMPLES = 400
CONFIDENCE = 0.95
MIN_FIT_ALPHAS = 3  # more points than the two parameters of the line
EDGE_FRACTION = 0.5  # the stability edge: where this fraction of the seeds stops completing
STATUSES = (
    "interior",
    "minimum_at_lowest_temperature",
    "minimum_at_highest_temperature",
    "too_few_temperatures",
    "flat",
)
INTERIOR, LOWEST, HIGHEST, TOO_FEW, FLAT = range(len(STATUSES))


def parabola_minimum(
    means: np.ndarray, log_temperature: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log T_opt, the index of the grid minimum and the status code (``STATUSES``) per row.

    ``means``: seed-mean test errors, rows = resamples, columns = increasing
    ``log_temperature`` (the usable temperatures of one curve). log T_opt is the vertex of
    the parabola through the column of lowest mean and its two neighbours, NaN unless the
    status is INTERIOR. With divided differences d1 = (y1 - y0)/(x1 - x0),
    d2 = (y2 - y1)/(x2 - x1) and curvature c = (d2 - d1)/(x2 - x0) >= 0 (the middle point
    is the lowest): x* = (x0 + x1)/2 - d1/(2c).
    """
    rows, n = means.shape
    log_topt = np.full(rows, np.nan)
    if n < 3:
        return log_topt, np.zeros(rows, dtype=int), np.full(rows, TOO_FEW)
    lowest = np.argmin(means, axis=1)
    status = np.where(lowest == 0, LOWEST, np.where(lowest == n - 1, HIGHEST, INTERIOR))
    inside = np.flatnonzero(status == INTERIOR)
    columns = lowest[inside, None] + np.arange(-1, 2)
    x = log_temperature[columns]
    y = np.take_along_axis(means[inside], columns, axis=1)
    d1 = (y[:, 1] - y[:, 0]) / (x[:, 1] - x[:, 0])
    d2 = (y[:, 2] - y[:, 1]) / (x[:, 2] - x[:, 1])
    curvature = (d2 - d1) / (x[:, 2] - x[:, 0])
    curved = curvature > 0
    status[inside[~curved]] = FLAT
    vertex = 0.5 * (x[:, 0] + x[:, 1]) - d1 / (2 * np.where(curved, curvature, 1.0))
    log_topt[inside[curved]] = vertex[curved]
    return log_topt, lowest, status


def fit_exponent(
    log_alpha: np.ndarray, log_topt: np.ndarray, max_alpha: float | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slope k and intercept of log T_opt = k log alpha + log A per row, and the fit mask.

    ``log_topt``: (rows, alphas), NaN where T_opt is not interior. A row is fitted over
    its finite entries with alpha <= ``max_alpha`` (the mask): one bound for every row, or
    one per row (NaN: no bound); NaN, and an empty mask, where fewer than MIN_FIT_ALPHAS.
    """
    rows = log_topt.shape[0]
    bound = np.broadcast_to(np.inf if max_alpha is None else np.asarray(max_alpha, float), rows)
    in_regime = ~(log_alpha[None, :] > np.log(bound)[:, None])  # a NaN bound never excludes
    used = np.isfinite(log_topt) & in_regime
    slope = np.full(log_topt.shape[0], np.nan)
    intercept = np.full(log_topt.shape[0], np.nan)
    fitted = used.sum(axis=1) >= MIN_FIT_ALPHAS
    for row in np.flatnonzero(fitted):
        keep = used[row]
        slope[row], intercept[row] = np.polyfit(log_alpha[keep], log_topt[row, keep], 1)
    return slope, intercept, used & fitted[:, None]


def stability_edge(
    completed: np.ndarray, log_temperature: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """log T_edge per row (the module docstring's rule) and the width in log T left
    unresolved by the grid: that of the bracket [T_a, T_b] where the fraction jumps from 1
    to 0 across it (every seed completes at T_a, none at T_b: the edge, drawn at the
    bracket's middle, is anywhere inside), 0 where the fraction is graded.

    ``completed`` is the fraction of seeds that reached zero loss, rows = resamples,
    columns = increasing ``log_temperature``. NaN where no temperature reaches
    EDGE_FRACTION or the highest does.
    """
    rows, n = completed.shape
    reached = completed >= EDGE_FRACTION
    last = n - 1 - np.argmax(reached[:, ::-1], axis=1)  # highest temperature reaching it
    inside = np.flatnonzero(reached.any(axis=1) & (last < n - 1))
    below, above = last[inside], last[inside] + 1
    fraction_below, fraction_above = completed[inside, below], completed[inside, above]
    step = (fraction_below - EDGE_FRACTION) / (fraction_below - fraction_above)
    width = log_temperature[above] - log_temperature[below]
    log_edge, unresolved = np.full((2, rows), np.nan)
    log_edge[inside] = log_temperature[below] + step * width
    unresolved[inside] = np.where((fraction_below == 1.0) & (fraction_above == 0.0), width, 0.0)
    return log_edge, unresolved


def feature_regime_bound(summary: xr.Dataset, groups: list[str], alpha_dim: str) -> np.ndarray:
    """Per group (flattened, C order), the alpha of the lazy/feature crossover at the
    lowest temperature: where the mean kernel change of the non-diverged seeds crosses
    LAZY_KERNEL_CHANGE (phase_diagram.lazy_feature_boundary). NaN (no bound) without a
    kernel change in the summary or without a crossing."""
    sizes = [summary.sizes[g] for g in groups]
    if "kernel_change" not in summary:
        return np.full(int(np.prod(sizes)), np.nan)
    temperature_dim = swept_dimension(summary, TEMPERATURE_PATH)
    kernel = mean_kernel_change(summary)
    coldest = kernel.isel({temperature_dim: int(np.argmin(kernel[temperature_dim].values))})
    boundary = lazy_feature_boundary(xr.Dataset({"kernel_change": coldest}), alpha_dim)
    return 2.0 ** boundary.transpose(*groups).values.reshape(-1)


def _fit_in_resamples(
    log_alpha: np.ndarray,
    log_values: np.ndarray,
    bound: np.ndarray,
    replicas: int,
    confidence: float,
    resolution: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Exponent fit of ``log_values`` (draws, curves), curves = groups x alphas (alpha
    last), in every draw (the first is the plain estimate): slope, intercept and the fit
    mask of the estimate, the slope's Student-t interval. ``bound``: the feature-regime
    alpha bound per group. ``resolution``: per curve, a standard deviation of the plain
    log value that the seeds' bootstrap does not see (the grid's); its effect on the
    least-squares slope is added to the interval's half-width in quadrature (normal
    quantile)."""
    alphas = len(log_alpha)
    draws = log_values.shape[0]
    rows = log_values.reshape(-1, alphas)  # draw-major, then group
    slopes, intercepts, used = fit_exponent(log_alpha, rows, np.tile(bound, draws))
    slopes, intercepts = slopes.reshape(draws, -1), intercepts.reshape(draws, -1)
    low, high = student_interval(slopes[0], slopes[1:], replicas, confidence)
    in_fit = used.reshape(draws, -1)[0].reshape(-1, alphas)
    if resolution is not None:
        from scipy import stats  # here: 1.3 s at import, which most jobs never need

        centred = np.where(in_fit, log_alpha - _masked_mean(log_alpha, in_fit), 0.0)
        weights = centred / np.maximum((centred**2).sum(axis=1, keepdims=True), 1e-300)
        variance = (weights**2 * np.nan_to_num(resolution.reshape(-1, alphas)) ** 2).sum(axis=1)
        half = np.hypot(
            0.5 * (high - low), stats.norm.ppf(0.5 + confidence / 2) * np.sqrt(variance)
        )
        low, high = slopes[0] - half, slopes[0] + half
    return {
        "slope": slopes[0],
        "intercept": intercepts[0],
        "in_fit": in_fit.reshape(-1),
        "low": low,
        "high": high,
    }


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of ``values`` (alphas,) over each row of ``mask`` (rows, alphas), as a column."""
    return ((values * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1))[:, None]


def predicted_exponent(depth: float) -> float:
    """The paper's k = (D - 1)/(D + 1) for D hidden layers."""
    return (depth - 1.0) / (depth + 1.0)


def _predictions(summary: xr.Dataset, template: xr.DataArray) -> xr.DataArray:
    """(D - 1)/(D + 1) on the dims of ``template`` (the groups): D from the depth axis or
    the config; NaN if the model is not an fcn."""
    config = study_config(summary)
    depth_dim = swept_dimension(summary, DEPTH)
    if config.model.kind != "fcn":
        return xr.full_like(template, np.nan, dtype=float)
    if depth_dim is None:
        return xr.full_like(template, predicted_exponent(config.model.depth), dtype=float)
    return predicted_exponent(template[depth_dim].astype(float)).broadcast_like(template)


def optimal_temperature(
    summary: xr.Dataset,
    max_alpha: float | None = None,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> xr.Dataset:
    """T_opt and the stability edge per alpha and group with intervals, and their exponents
    per group (k beside (D-1)/(D+1)).

    Dims: the summary's grid dims other than temperature (alpha last) for T_opt; the
    groups (the other grid dims) for k. See the module docstring for the rules.
    """
    alpha_dim = swept_dimension(summary, ALPHA)
    if alpha_dim is None or swept_dimension(summary, TEMPERATURE_PATH) is None:
        raise ValueError(
            f"the optimal temperature needs the grid to sweep {ALPHA} and {TEMPERATURE_PATH}; "
            f"it sweeps {summary.attrs.get('grid_axes', '{}')}"
        )
    error = observables_at_stop(summary)["test_error"]
    groups = [d for d in error.dims if d not in (alpha_dim, TEMPERATURE, REPLICA)]
    error = error.transpose(*groups, alpha_dim, TEMPERATURE, REPLICA)
    data = error.values.reshape(-1, error.sizes[TEMPERATURE], error.sizes[REPLICA])
    replicas, alphas = error.sizes[REPLICA], error.sizes[alpha_dim]
    log_temperature = np.log(error[TEMPERATURE].values.astype(float))
    usable = complete_points(data)
    means = bootstrap_means(data, resamples, seed)
    draws, curves = means.shape[:2]

    log_topt = np.full((draws, curves), np.nan)
    status = np.full(curves, TOO_FEW)
    grid_minimum = np.full(curves, np.nan)
    for c in range(curves):
        valid = np.flatnonzero(usable[c])
        log_topt[:, c], lowest, codes = parabola_minimum(means[:, c, valid], log_temperature[valid])
        status[c] = codes[0]
        if codes[0] != TOO_FEW:
            grid_minimum[c] = np.exp(log_temperature[valid[lowest[0]]])
    low, high = student_interval(log_topt[0], log_topt[1:], replicas, confidence)
    interior = np.isfinite(log_topt[1:]).mean(axis=0)

    # the completed fraction (finite test error at the stop) in the same resamples of seeds
    completed = bootstrap_means(np.isfinite(data).astype(float), resamples, seed)
    log_edge, unresolved = stability_edge(
        completed.reshape(-1, completed.shape[-1]), log_temperature
    )
    log_edge, unresolved = log_edge.reshape(draws, curves), unresolved[:curves]
    edge_low, edge_high = student_interval(log_edge[0], log_edge[1:], replicas, confidence)
    edge_low = np.fmin(edge_low, log_edge[0] - unresolved / 2)  # at least the grid's bracket
    edge_high = np.fmax(edge_high, log_edge[0] + unresolved / 2)

    log_alpha = np.log(error[alpha_dim].values.astype(float))
    if max_alpha is None:  # the feature regime from the data: below the kernel's crossover
        bound = feature_regime_bound(summary, groups, alpha_dim)
    else:
        bound = np.full(curves // alphas, max_alpha)
    k = _fit_in_resamples(log_alpha, log_topt, bound, replicas, confidence)
    edge = _fit_in_resamples(
        log_alpha, log_edge, bound, replicas, confidence, unresolved / np.sqrt(12.0)
    )

    group_shape = [error.sizes[d] for d in groups]
    point_dims, point_shape = [*groups, alpha_dim], [*group_shape, alphas]

    def per_point(values: np.ndarray) -> tuple[list[str], np.ndarray]:
        return point_dims, np.asarray(values).reshape(point_shape)

    def per_fit(values: np.ndarray) -> tuple[list[str], np.ndarray]:
        return groups, np.asarray(values).reshape(group_shape)

    result = xr.Dataset(
        {
            "optimal_temperature": per_point(np.exp(log_topt[0])),
            "optimal_temperature_low": per_point(np.exp(low)),
            "optimal_temperature_high": per_point(np.exp(high)),
            "optimal_temperature_status": per_point(np.array(STATUSES, dtype=object)[status]),
            "optimal_temperature_interior_fraction": per_point(interior),
            "optimal_temperature_grid_minimum": per_point(grid_minimum),
            "optimal_temperature_in_fit": per_point(k["in_fit"]),
            "optimal_temperature_exponent": per_fit(k["slope"]),
            "optimal_temperature_exponent_low": per_fit(k["low"]),
            "optimal_temperature_exponent_high": per_fit(k["high"]),
            "optimal_temperature_log_amplitude": per_fit(k["intercept"]),
            "stability_edge": per_point(np.exp(log_edge[0])),
            "stability_edge_low": per_point(np.exp(edge_low)),
            "stability_edge_high": per_point(np.exp(edge_high)),
            "stability_edge_in_fit": per_point(edge["in_fit"]),
            "stability_edge_exponent": per_fit(edge["slope"]),
            "stability_edge_exponent_low": per_fit(edge["low"]),
            "stability_edge_exponent_high": per_fit(edge["high"]),
            "stability_edge_log_amplitude": per_fit(edge["intercept"]),
        },
        coords={d: error[d].values for d in point_dims},
    )
    result["optimal_temperature_predicted_exponent"] = _predictions(
        summary, result["optimal_temperature_exponent"]
    )
    result.attrs.update(
        optimal_temperature_criterion=(
            "vertex in log T of the parabola through the usable temperature of lowest seed-"
            "mean test error and its two neighbours (usable: every replica completed); NaN "
            "with a status when the minimum is at the lowest or highest usable temperature"
        ),
        optimal_temperature_feature_regime=(
            "alphas with an interior T_opt (in each resample)"
            + (
                " and below the lazy/feature crossover at the lowest temperature (kernel "
                f"change {LAZY_KERNEL_CHANGE:g}; no bound without a kernel change or crossing)"
                if max_alpha is None
                else f" and alpha <= {max_alpha:g}"
            )
            + f"; k fitted with at least {MIN_FIT_ALPHAS} of them"
        ),
        stability_edge_criterion=(
            f"temperature where the fraction of seeds reaching zero loss falls through "
            f"{EDGE_FRACTION:g}, linear in log T between the highest temperature where it is "
            f"at least that and the next one; NaN if none reaches it or the highest grid "
            f"temperature does"
        ),
        optimal_temperature_method=(
            f"Student-t bootstrap over seeds ({resamples} joint resamples of the replica "
            f"index, rule re-applied) on log T_opt; k from least squares of log T_opt on "
            f"log alpha, same resamples; confidence {confidence}"
        ),
        optimal_temperature_bootstrap_seed=seed,
    )
    return result


UNITS = {
    "optimal_temperature": (
        "temperature",
        "optimal temperature T_opt: vertex of the parabola in log T at the test-error minimum",
    ),
    "optimal_temperature_low": ("temperature", "lower end of the interval of T_opt"),
    "optimal_temperature_high": ("temperature", "upper end of the interval of T_opt"),
    "optimal_temperature_status": (
        "1",
        "interior, or why T_opt is not given: " + ", ".join(STATUSES[1:]),
    ),
    "optimal_temperature_interior_fraction": (
        "1",
        "fraction of the bootstrap resamples with an interior minimum",
    ),
    "optimal_temperature_grid_minimum": (
        "temperature",
        "usable grid temperature of lowest seed-mean test error (a bound at a grid edge)",
    ),
    "optimal_temperature_in_fit": ("1", "whether the alpha enters the fit of k"),
    "optimal_temperature_exponent": ("1", "exponent k of T_opt ~ alpha^k (feature regime)"),
    "optimal_temperature_exponent_low": ("1", "lower end of the interval of k"),
    "optimal_temperature_exponent_high": ("1", "upper end of the interval of k"),
    "optimal_temperature_log_amplitude": (
        "1",
        "log A of the fitted line T_opt = A alpha^k (log T_opt at alpha = 1)",
    ),
    "stability_edge": (
        "temperature",
        f"stability edge T_edge: where the fraction of seeds reaching zero loss falls "
        f"through {EDGE_FRACTION:g}",
    ),
    "stability_edge_low": ("temperature", "lower end of the interval of T_edge"),
    "stability_edge_high": ("temperature", "upper end of the interval of T_edge"),
    "stability_edge_in_fit": ("1", "whether the alpha enters the fit of the edge's exponent"),
    "stability_edge_exponent": ("1", "exponent of T_edge ~ alpha^k_edge (feature regime)"),
    "stability_edge_exponent_low": ("1", "lower end of the interval of k_edge"),
    "stability_edge_exponent_high": ("1", "upper end of the interval of k_edge"),
    "stability_edge_log_amplitude": (
        "1",
        "log of the fitted T_edge = A alpha^k_edge at alpha = 1",
    ),
    "optimal_temperature_predicted_exponent": (
        "1",
        "paper B's k = (D - 1)/(D + 1), D = model.depth hidden layers (NaN if not an fcn)",
    ),
}
