"""Means, standard errors and bootstrap intervals over the independent units of a study.

Units. The replicas of a run are independent samples of the dynamics, except the two
replicas of a same-init pair (run.pairing same_init: replicas 2k and 2k + 1 share w(0)
and, with data.per_replica, their training set). Their observables are correlated: the
contact fraction at zero loss had a within-pair correlation of 0.5-0.85 (sphere,
P/N = 0.5, SGD), so a standard error over replicas understated the true one by
1.3-1.4x. A pair is therefore ONE unit: errors are taken over unit means and bootstrap
resamples draw whole units of ``per_unit`` consecutive replicas (``RunConfig.replicas_per_unit``).
Solver seeds of the DMFT are units of one; so are the seeds of a scaling study
(replica r of every grid point is seed r, resampled jointly for all points).

Notation: x_u is the mean of unit u over its replicas, n the number of units with a
finite x_u (diverged replicas are NaN and skipped), xbar = sum_u x_u / n, and

    s^2 = sum_u (x_u - xbar)^2 / (n - 1)        (n - 1 degrees of freedom),
    se  = s / sqrt(n)                            (standard error of xbar).

Axes: the replica (or seed) axis is the first one (``axis`` selects another), except in
``bootstrap_means``, whose curves (C, nT, R) carry the seeds last as
scaling_data.temperature_curves returns them.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np


def unit_means(values: np.ndarray, per_unit: int = 1) -> np.ndarray:
    """x_u: the mean over the replicas of each unit (axis 0), (replicas / per_unit, ...).

    NaN-aware: a unit with one diverged replica is the other one; a unit of NaNs is NaN.
    ValueError if the replicas do not split into whole units.
    """
    if per_unit == 1:
        return values
    if values.shape[0] % per_unit:
        raise ValueError(f"{values.shape[0]} replicas do not split into units of {per_unit}")
    grouped = values.reshape(values.shape[0] // per_unit, per_unit, *values.shape[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a unit whose replicas all diverged
        return np.nanmean(grouped, axis=1)


def standard_error(values: np.ndarray, per_unit: int = 1, axis: int = 0) -> np.ndarray:
    """se = s / sqrt(n): the standard error of the mean over the units along ``axis``
    (replicas or solver seeds), s with n - 1 degrees of freedom, n counting the units
    with a finite value; NaN where fewer than two units have one."""
    moved = np.moveaxis(np.asarray(values, dtype=float), axis, 0)
    units = unit_means(moved, per_unit)
    count = np.sum(np.isfinite(units), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fewer than two finite units
        spread = np.nanstd(units, axis=0, ddof=1)
    return np.where(count >= 2, spread / np.sqrt(np.maximum(count, 1)), np.nan)


def mean_and_error(
    values: np.ndarray, per_unit: int = 1, axis: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The mean over the replicas along ``axis`` (NaN-skipping; with every replica finite
    it is xbar, the mean of the unit means) and its ``standard_error`` over units."""
    values = np.asarray(values, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a point without finite replicas
        mean = np.nanmean(values, axis=axis)
    return mean, standard_error(values, per_unit, axis)


def error_bar(
    values: np.ndarray, per_unit: int = 1, geometric: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mean over the replicas (axis 0) and the ends of its one-standard-error bar.

    Arithmetic: (xbar, xbar - se, xbar + se). Geometric (positive values: the average a
    log-log fit takes): the same for log x mapped back, (e^m, e^(m - se), e^(m + se)) with
    m the mean of log x and se its standard error, a bar symmetric in log x.
    """
    data = np.log(values) if geometric else np.asarray(values, dtype=float)
    centre, error = mean_and_error(data, per_unit)
    ends = (centre, centre - error, centre + error)
    return tuple(np.exp(end) for end in ends) if geometric else ends


def bootstrap_indices(
    rng: np.random.Generator, replicas: int, resamples: int, per_unit: int = 1
) -> np.ndarray:
    """Replica indices of ``resamples`` bootstrap resamples, (resamples, replicas): each
    row draws replicas / per_unit whole units with replacement (their replicas in
    order)."""
    units = replicas // per_unit
    drawn = rng.integers(0, units, size=(resamples, units))
    return (drawn[..., None] * per_unit + np.arange(per_unit)).reshape(resamples, -1)


def resample_counts(
    rng: np.random.Generator, replicas: int, resamples: int, per_unit: int = 1
) -> np.ndarray:
    """Bootstrap multiplicities of the replicas, (resamples, replicas), each row summing
    to ``replicas``: how often each replica appears in the resamples of
    ``bootstrap_indices`` (the same draws from ``rng``)."""
    draws = bootstrap_indices(rng, replicas, resamples, per_unit)
    counts = np.zeros((resamples, replicas))
    np.add.at(counts, (np.arange(resamples)[:, None], draws), 1.0)
    return counts


def bootstrap_means(data: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Seed means of curves (C, nT, R), R seeds last: (1 + resamples, C, nT), the plain
    mean first, then the means of the resamples.

    The resamples draw the seeds jointly for every curve and temperature (one row of
    ``resample_counts`` from ``np.random.default_rng(seed)`` per resample), so that
    correlations between points sharing a seed are kept; a missing value counts 0 (the
    analyses keep only points where every seed has a value).
    """
    replicas = data.shape[-1]
    rng = np.random.default_rng(seed)
    counts = np.vstack([np.ones((1, replicas)), resample_counts(rng, replicas, resamples)])
    return np.einsum("br,ctr->bct", counts, np.nan_to_num(data)) / replicas


def percentile_interval(samples: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of bootstrap samples (1-D):
    their (1 - c) / 2 and (1 + c) / 2 quantiles, linearly interpolated."""
    tail = round(50.0 * (1.0 - confidence), 12)  # 2.5 exactly at 95%
    low, high = np.percentile(samples, [tail, 100.0 - tail])
    return float(low), float(high)


def percentile_bootstrap(
    statistic: Callable[[np.ndarray | slice], float],
    replicas: int,
    resamples: int,
    rng: np.random.Generator,
    per_unit: int = 1,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """A statistic of the replicas and its percentile-bootstrap interval over units.

    ``statistic(indices)`` evaluates the statistic on the replicas ``indices``: all of
    them (``slice(None)``) for the estimate, an index array with repeats for a resample.
    Returns (estimate, low, high): the ``percentile_interval`` of the statistic over
    ``resamples`` resamples of whole units (``bootstrap_indices``).
    """
    estimate = statistic(slice(None))
    draws = bootstrap_indices(rng, replicas, resamples, per_unit)
    samples = np.array([statistic(indices) for indices in draws])
    return (float(estimate), *percentile_interval(samples, confidence))


def bootstrap_spread(replicates: np.ndarray, units: int) -> np.ndarray:
    """sqrt(n / (n - 1)) x the standard deviation (n - 1 dof) of bootstrap replicates
    (axis 0), n = ``units`` the number of independent units resampled.

    For a mean over n units the bootstrap variance is (n - 1) / n s^2 / n; the factor
    turns it into the classical squared standard error s^2 / n. Replicates that gave no
    value (NaN) are skipped; NaN where fewer than two gave one.
    """
    finite = np.isfinite(replicates)
    count = finite.sum(axis=0)
    mean = np.where(finite, replicates, 0.0).sum(axis=0) / np.maximum(count, 1)
    squares = np.where(finite, (replicates - mean) ** 2, 0.0).sum(axis=0)
    variance = np.where(count >= 2, squares / np.maximum(count - 1, 1), np.nan)
    return np.sqrt(variance) * math.sqrt(units / max(units - 1, 1))


def student_interval(
    estimate: np.ndarray, replicates: np.ndarray, units: int, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Interval estimate +- t_{n-1} sqrt(n / (n - 1)) sd(bootstrap replicates).

    ``replicates`` has the resample axis first; n = ``units``. For a statistic linear in
    the unit means (a least-squares fit of seed-averaged data in a fixed window is one)
    the bootstrap variance is (n - 1) / n times the squared classical standard error,
    and this is the Student-t interval with n - 1 degrees of freedom: nominal coverage
    with few units, where the percentile bootstrap covers too rarely (~80% for n = 5
    instead of 95%).
    """
    from scipy import stats  # here: 1.3 s at import, which most jobs never need

    spread = bootstrap_spread(replicates, units)
    quantile = stats.t.ppf(0.5 + confidence / 2, df=max(units - 1, 1))
    return estimate - quantile * spread, estimate + quantile * spread
