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

Uncertainty: bootstrap over seeds (replica r of every point is seed r; the replica
indices are resampled jointly for the whole study), the rule above re-applied in every
resample, and the Student-t interval on log T_opt (statistics.student_interval).
``optimal_temperature_interior_fraction`` is the fraction of resamples with an interior
minimum: well below 1, the minimum sits near a grid edge and the interval is optimistic.

Exponent k, per group: least squares of log T_opt on log alpha over the feature regime,
in every resample. The feature regime is chosen explicitly: the alphas at most
``max_alpha`` whose T_opt is interior in that resample; at least ``MIN_FIT_ALPHAS`` of
them, else k is NaN. By default ``max_alpha`` is the lazy/feature crossover of the data:
the alpha where the tangent kernel's change at the lowest temperature crosses 1 (the
phase diagram's boundary; per group, so per depth), since a lazy alpha's flat test-error
curve can show a spurious interior minimum (measured: at alpha = 2^8, 2^10 on the
paper's FC-5L); without a kernel change in the summary there is no bound. Alphas whose
minimum is at the lowest temperature leave the fit by the second condition. Student-t
interval from the same resamples, beside the prediction (D-1)/(D+1).
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
    """T_opt per alpha and group with intervals, and k per group beside (D-1)/(D+1).

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

    log_alpha = np.log(error[alpha_dim].values.astype(float))
    per_group = log_topt.reshape(draws, -1, alphas)
    if max_alpha is None:  # the feature regime from the data: below the kernel's crossover
        bound = feature_regime_bound(summary, groups, alpha_dim)
    else:
        bound = np.full(per_group.shape[1], max_alpha)
    rows_bound = np.tile(bound, draws)  # rows of per_group.reshape: draw-major
    slopes, intercepts, used = fit_exponent(log_alpha, per_group.reshape(-1, alphas), rows_bound)
    slopes, intercepts = slopes.reshape(draws, -1), intercepts.reshape(draws, -1)
    k_low, k_high = student_interval(slopes[0], slopes[1:], replicas, confidence)

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
            "optimal_temperature_in_fit": per_point(used.reshape(draws, -1)[0]),
            "optimal_temperature_exponent": per_fit(slopes[0]),
            "optimal_temperature_exponent_low": per_fit(k_low),
            "optimal_temperature_exponent_high": per_fit(k_high),
            "optimal_temperature_log_amplitude": per_fit(intercepts[0]),
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
    "optimal_temperature_predicted_exponent": (
        "1",
        "paper B's k = (D - 1)/(D + 1), D = model.depth hidden layers (NaN if not an fcn)",
    ),
}
