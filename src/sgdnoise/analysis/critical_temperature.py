"""Crossover temperature T_c(P), its exponent a, and a curve collapse (docs/physics.md B5).

At small T the trained model no longer depends on T: the observables at stopping
(weight change, signal, test error, t*, ...) sit on a T -> 0 plateau. The crossover
temperature T_c is where SGD noise starts to change the trained model. Criterion
(explicit, one number per curve y(T) at fixed P, N and group):

    plateau        y_0 = <y>(T_min), the seed mean at the lowest temperature, accepted
                   only if the next temperature is still on it: |<y>(T_2)/y_0 - 1| <
                   threshold / 2 (else T_c is not measured: ``plateau_reached`` = 0);
    departure      D(T) = |<y>(T) / y_0 - 1|;
    T_c            the first temperature where D reaches ``threshold`` (0.5: the
                   observable has changed by half its plateau value), interpolated
                   linearly in log T between the two temperatures that bracket it
                   (NaN if D never reaches it in the range).

Seed means <y> are arithmetic (a test error can be 0); points where a replica did not
complete are left out of the curve. Uncertainty: bootstrap over seeds (replica indices
resampled jointly for the whole study), the criterion re-applied in every resample, and
the Student-t interval on log T_c (statistics.student_interval).

Exponent a (T_c ~ P^-a): least squares of log T_c on log P (and log N when swept) over
the curves with a T_c, in every resample; a = -slope, Student-t interval. The line drawn
through the T_c of each N at that a has log A = mean over P of (log T_c + a log P).

Collapse (independent estimate): if T_c ~ P^-a the departure curves log(<y>/y_0) of
different P coincide as functions of x = log T + a log P. The collapse exponent
minimises the mean squared distance between every curve and the linear interpolation
of every other curve on their overlap in x (a grid over [-3, 3] refined twice), per
group and N; its interval comes from the same seed bootstrap.
Units: T and T_c in the config's temperature units (T = lr / (h B)).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from sgdnoise.analysis.scaling_data import (
    REPLICA,
    complete_points,
    fit_groups,
    log_axes,
    observables_at_stop,
    temperature_curves,
)
from sgdnoise.analysis.statistics import bootstrap_means, student_interval

DEPARTURE_THRESHOLD = 0.5
RESAMPLES = 400
CONFIDENCE = 0.95
COLLAPSE_RANGE = (-3.0, 3.0)
COLLAPSE_GRID = 31
MIN_OVERLAP = 3  # comparisons needed for a collapse cost


def departure_temperature(
    means: np.ndarray, log_temperature: np.ndarray, threshold: float = DEPARTURE_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """log T_c per row of ``means`` (rows: resamples; columns: increasing T), and plateau_ok.

    See the module docstring for the criterion. NaN where the plateau is not reached or
    the departure never reaches ``threshold``.
    """
    rows, n = means.shape
    result = np.full(rows, np.nan)
    if n < 3:
        return result, np.zeros(rows, dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        departure = np.abs(means / means[:, :1] - 1.0)
    plateau = (departure[:, 1] < threshold / 2) & (means[:, 0] != 0)
    reached = departure >= threshold
    reached[:, :2] = False
    first = np.argmax(reached, axis=1)
    found = reached.any(axis=1) & plateau
    index = np.flatnonzero(found)
    k = first[index]
    below, above = departure[index, k - 1], departure[index, k]
    fraction = (threshold - below) / (above - below)
    result[index] = log_temperature[k - 1] + fraction * (
        log_temperature[k] - log_temperature[k - 1]
    )
    return result, plateau


def curve_critical_temperatures(
    means: np.ndarray,
    usable: np.ndarray,
    log_temperature: np.ndarray,
    threshold: float = DEPARTURE_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """log T_c of every curve in every draw, and each curve's plateau flag and value.

    ``means``: seed means (draws, C, nT), the plain means first (statistics.bootstrap_means);
    ``usable``: (C, nT), the points where every seed has a value (the only ones a curve
    keeps). Returns log T_c (draws, C), NaN for a curve with fewer than three usable
    temperatures; plateau_reached (C,) and the plateau value y_0 (C,) of the plain means.
    """
    draws, curves = means.shape[:2]
    log_tc = np.full((draws, curves), np.nan)
    plateau = np.zeros(curves, dtype=bool)
    plateau_value = np.full(curves, np.nan)
    for c in range(curves):
        valid = np.flatnonzero(usable[c])
        if valid.size < 3:
            continue
        log_tc[:, c], ok = departure_temperature(
            means[:, c, valid], log_temperature[valid], threshold
        )
        plateau[c], plateau_value[c] = ok[0], means[0, c, valid[0]]
    return log_tc, plateau, plateau_value


def log_linear_fits(log_y: np.ndarray, regressors: np.ndarray) -> np.ndarray:
    """Least squares of log y = c_0 + sum_j c_j x_j in every draw, over its finite entries.

    ``log_y``: (draws, C); ``regressors``: (C, k), the x_j of each curve. Returns the
    coefficients (draws, 1 + k), intercept first; NaN in a draw with no more finite
    entries than coefficients or a rank-deficient design.
    """
    draws, curves = log_y.shape
    design = np.concatenate([np.ones((curves, 1)), regressors], axis=1)
    parameters = design.shape[1]
    coefficients = np.full((draws, parameters), np.nan)
    for b in range(draws):
        known = np.isfinite(log_y[b])
        if known.sum() > parameters and np.linalg.matrix_rank(design[known]) == parameters:
            coefficients[b] = np.linalg.lstsq(design[known], log_y[b, known], rcond=None)[0]
    return coefficients


def collapse_cost(
    curves: list[tuple[np.ndarray, np.ndarray, float]], exponents: np.ndarray
) -> np.ndarray:
    """Mean squared distance between curves (log T, log(y/y_0), log P) at each exponent a.

    Every point of each curve is compared with the linear interpolation of every other
    curve at the same x = log T + a log P, where x lies inside that curve's range.
    Returns an array like ``exponents`` (inf where fewer than MIN_OVERLAP comparisons).
    """
    exponents = np.asarray(exponents, dtype=float)
    total = np.zeros(exponents.shape)
    count = np.zeros(exponents.shape)
    for i, (x_i, f_i, log_p_i) in enumerate(curves):
        for j, (x_j, f_j, log_p_j) in enumerate(curves):
            if i == j:
                continue
            # curve i's points in curve j's frame: x_i + a (log P_i - log P_j)
            moved = x_i[None, :] + exponents[..., None] * (log_p_i - log_p_j)
            inside = (moved >= x_j[0]) & (moved <= x_j[-1])
            squared = (f_i - np.interp(moved, x_j, f_j)) ** 2
            total += np.where(inside, squared, 0.0).sum(-1)
            count += inside.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count >= MIN_OVERLAP, total / count, np.inf)


def collapse_exponent(curves: list[tuple[np.ndarray, np.ndarray, float]]) -> tuple[float, float]:
    """The exponent a that best collapses the curves, and the cost there (NaN if none).

    A grid over COLLAPSE_RANGE, then a grid 20 times finer around the best point, then
    the vertex of the parabola through the best fine point and its neighbours.
    """
    if len(curves) < 2:
        return np.nan, np.nan
    grid = np.linspace(*COLLAPSE_RANGE, COLLAPSE_GRID)
    costs = collapse_cost(curves, grid)
    if not np.isfinite(costs).any():
        return np.nan, np.nan
    best = grid[int(np.argmin(costs))]
    step = grid[1] - grid[0]
    fine = np.linspace(best - step, best + step, 41)
    costs = collapse_cost(curves, fine)
    k = int(np.argmin(costs))
    if 0 < k < fine.size - 1 and np.isfinite(costs[k - 1 : k + 2]).all():
        left, middle, right = costs[k - 1 : k + 2]
        curvature = left - 2 * middle + right
        if curvature > 0:
            shift = 0.5 * (left - right) / curvature
            return float(fine[k] + shift * (fine[1] - fine[0])), float(middle)
    return float(fine[k]), float(costs[k])


def fit_critical_temperature(
    values: xr.DataArray,
    threshold: float = DEPARTURE_THRESHOLD,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> xr.Dataset:
    """T_c per curve, the exponent a of T_c ~ P^-a and the collapse exponent, one group.

    ``values``: one group's observable at stopping, dims (P?, N?, temperature, replica),
    NaN where a replica did not complete.
    """
    values, sizes, data = temperature_curves(values)
    replicas = values.sizes[REPLICA]
    curve_shape = values.shape[:-2]
    usable = complete_points(data)
    log_temperature, log_sizes = log_axes(values, sizes)
    means = bootstrap_means(data, resamples, seed)
    log_tc, plateau, plateau_value = curve_critical_temperatures(
        means, usable, log_temperature, threshold
    )
    tc_low, tc_high = student_interval(log_tc[0], log_tc[1:], replicas, confidence)

    slopes = np.full((means.shape[0], len(sizes)), np.nan)
    varying = [j for j in range(len(sizes)) if np.ptp(log_sizes[:, j]) > 0]
    slopes[:, varying] = log_linear_fits(log_tc, log_sizes[:, varying])[:, 1:]
    slope_low, slope_high = student_interval(slopes[0], slopes[1:], replicas, confidence)

    collapse = _collapse_by_n(values, sizes, means, usable, log_temperature, resamples)
    collapse_low, collapse_high = student_interval(
        collapse[0, :, 0], collapse[1:, :, 0], replicas, confidence
    )
    other = [d for d in sizes if d != "P"]
    collapse_coords = {d: values[d].values for d in other}
    return xr.Dataset(
        {
            "critical_temperature": (sizes, np.exp(log_tc[0]).reshape(curve_shape)),
            "critical_temperature_low": (sizes, np.exp(tc_low).reshape(curve_shape)),
            "critical_temperature_high": (sizes, np.exp(tc_high).reshape(curve_shape)),
            "plateau_reached": (sizes, plateau.reshape(curve_shape)),
            "plateau_value": (sizes, plateau_value.reshape(curve_shape)),
            "critical_temperature_slope": (("size",), slopes[0]),
            "critical_temperature_slope_low": (("size",), slope_low),
            "critical_temperature_slope_high": (("size",), slope_high),
            "collapse_exponent": (
                other,
                collapse[0, :, 0].reshape([values.sizes[d] for d in other]),
            ),
            "collapse_exponent_low": (
                other,
                collapse_low.reshape([values.sizes[d] for d in other]),
            ),
            "collapse_exponent_high": (
                other,
                collapse_high.reshape([values.sizes[d] for d in other]),
            ),
            "collapse_cost": (other, collapse[0, :, 1].reshape([values.sizes[d] for d in other])),
        },
        coords={"size": list(sizes), **{d: values[d].values for d in sizes}, **collapse_coords},
    )


def _collapse_by_n(values, sizes, means, usable, log_temperature, resamples) -> np.ndarray:
    """Collapse exponent and cost per resample and per value of the sizes other than P.

    Returns (1 + resamples, n_other, 2); NaN when P is not swept.
    """
    other = [d for d in sizes if d != "P"]
    n_other = int(np.prod([values.sizes[d] for d in other])) if other else 1
    result = np.full((means.shape[0], n_other, 2), np.nan)
    if "P" not in sizes or values.sizes["P"] < 2:
        return result
    log_p = np.log(values["P"].values.astype(float))
    # curves are ordered P-major: curve index = p * n_other + o
    for o in range(n_other):
        for b in range(means.shape[0]):
            curves = []
            for p in range(values.sizes["P"]):
                c = p * n_other + o
                valid = np.flatnonzero(usable[c])
                if valid.size < 3:
                    continue
                curve = means[b, c, valid]
                if curve[0] <= 0 or (curve <= 0).any():
                    continue
                curves.append((log_temperature[valid], np.log(curve / curve[0]), log_p[p]))
            result[b, o] = collapse_exponent(curves)
    return result


def log_amplitude(critical: xr.DataArray, a: xr.DataArray) -> xr.DataArray:
    """log A of the line T_c = A P^-a at the fitted a through the measured T_c:

        log A = mean over the P with a T_c of (log T_c + a log P),

    at every value of the other dims (NaN with fewer than two T_c or no a)."""
    log_tc = np.log(critical)
    known = np.isfinite(log_tc)
    shifted = (log_tc + a * np.log(critical["P"].astype(float))).where(known)
    return shifted.mean("P").where((known.sum("P") >= 2) & np.isfinite(a))


def critical_temperature(
    summary: xr.Dataset,
    threshold: float = DEPARTURE_THRESHOLD,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> xr.Dataset:
    """T_c, the exponent a and the collapse exponent of every stopping observable.

    Dims: observable, the group dims (e.g. chi), the swept sizes (P, N). Named results:
    ``a`` = -d log T_c / d log P with _low/_high, and ``collapse_exponent`` (the a of
    the collapse in T P^a) with _low/_high.
    """
    result = fit_groups(
        observables_at_stop(summary),
        lambda name, values: fit_critical_temperature(
            values, threshold, resamples, confidence, seed
        ),
    )
    if "P" in result["size"].values:  # a = -slope: the interval's ends swap
        for name, source in (("a", ""), ("a_low", "_high"), ("a_high", "_low")):
            slope = result["critical_temperature_slope" + source]
            result[name] = -slope.sel(size="P", drop=True)
        result["critical_temperature_log_amplitude"] = log_amplitude(
            result["critical_temperature"], result["a"]
        )
    result.attrs.update(
        critical_temperature_criterion=(
            "plateau y_0 = seed mean at the lowest T (accepted if the next T departs by less "
            "than threshold/2); T_c = first T where |<y>/y_0 - 1| reaches threshold, "
            "interpolated linearly in log T; points with a non-completed replica excluded"
        ),
        critical_temperature_threshold=threshold,
        critical_temperature_method=(
            f"Student-t bootstrap over seeds ({resamples} joint resamples of the replica "
            f"index, criterion re-applied) on log T_c; a from least squares of log T_c on "
            f"log P (and log N), same resamples; confidence {confidence}"
        ),
        collapse_method=(
            "a minimising the mean squared distance between the curves log(<y>/y_0) against "
            "log T + a log P (linear interpolation on the overlaps), grid over "
            f"{list(COLLAPSE_RANGE)} refined twice; Student-t bootstrap interval"
        ),
        critical_temperature_bootstrap_seed=seed,
    )
    return result


UNITS = {
    "observable": ("1", "observable at stopping"),
    "size": ("1", "system size the critical temperature is regressed on: P or N"),
    "critical_temperature": (
        "temperature",
        "crossover temperature T_c: departure from the T -> 0 plateau",
    ),
    "critical_temperature_low": ("temperature", "lower end of the interval of T_c"),
    "critical_temperature_high": ("temperature", "upper end of the interval of T_c"),
    "plateau_reached": ("1", "whether the two lowest temperatures lie on the plateau"),
    "plateau_value": ("1", "seed mean of the observable at the lowest temperature (plateau y_0)"),
    "critical_temperature_slope": ("1", "d log T_c / d log size"),
    "critical_temperature_slope_low": ("1", "lower end of the interval of the slope"),
    "critical_temperature_slope_high": ("1", "upper end of the interval of the slope"),
    "a": ("1", "exponent a of T_c ~ P^-a"),
    "a_low": ("1", "lower end of the interval of a"),
    "a_high": ("1", "upper end of the interval of a"),
    "critical_temperature_log_amplitude": (
        "1",
        "log A of the line T_c = A P^-a at the fitted a: mean over P of log T_c + a log P",
    ),
    "collapse_exponent": ("1", "exponent a that best collapses the curves against T P^a"),
    "collapse_exponent_low": ("1", "lower end of the interval of the collapse exponent"),
    "collapse_exponent_high": ("1", "upper end of the interval of the collapse exponent"),
    "collapse_cost": ("1", "mean squared distance between the collapsed curves (log units)"),
}
