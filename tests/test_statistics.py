"""The statistics every analysis shares (analysis.statistics), against exact references.

Each test says which error it resolves; the checks on hand-computed numbers are also run
on deliberately wrong implementations (ddof = 0, counting replicas instead of same-init
pairs) to show that they would be caught.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sgdnoise.analysis.statistics import (
    bootstrap_indices,
    bootstrap_means,
    bootstrap_spread,
    error_bar,
    mean_and_error,
    percentile_bootstrap,
    percentile_interval,
    resample_counts,
    standard_error,
    student_interval,
    unit_means,
)
from sgdnoise.config import resolve_point

KNOWN = np.array([1.0, 2.0, 3.0, 4.0, 6.0])
# by hand: mean 3.2, squared deviations 4.84 + 1.44 + 0.04 + 0.64 + 7.84 = 14.8,
# s^2 = 14.8 / (5 - 1) = 3.7, se = sqrt(3.7 / 5) = sqrt(0.74)
KNOWN_STDERR = math.sqrt(0.74)


def ddof_zero(values: np.ndarray, per_unit: int = 1) -> np.ndarray:
    """WRONG on purpose: the spread with n instead of n - 1 degrees of freedom."""
    units = unit_means(np.asarray(values, dtype=float), per_unit)
    return np.nanstd(units, axis=0) / np.sqrt(np.isfinite(units).sum(axis=0))


def replicas_as_units(values: np.ndarray, per_unit: int = 1) -> np.ndarray:
    """WRONG on purpose: every replica counted as independent, pairs ignored."""
    return standard_error(values)


def matches_hand_computation(implementation) -> bool:
    return implementation(KNOWN) == pytest.approx(KNOWN_STDERR, rel=1e-14)


def duplicated_pairs_change_nothing(implementation) -> bool:
    data = np.stack([KNOWN, KNOWN**2], axis=1)  # (units, 2 observables)
    pairs = np.repeat(data, 2, axis=0)  # replicas 2k and 2k + 1 identical
    return np.array_equal(implementation(pairs, 2), implementation(data, 1))


def test_standard_error_of_known_data_is_the_hand_computed_one():
    """Resolves: a wrong number of degrees of freedom (ddof = 0 understates the error by
    sqrt((n - 1) / n), 11% at n = 5) or a wrong divisor."""
    assert matches_hand_computation(standard_error)
    assert not matches_hand_computation(ddof_zero)  # the check is tight enough to catch it
    assert ddof_zero(KNOWN) == pytest.approx(math.sqrt(14.8 / 5 / 5), rel=1e-14)


def test_standard_error_skips_diverged_replicas_and_needs_two_units():
    """Resolves: NaN (diverged) replicas counted in n, or a spread from a single unit."""
    with_nan = np.append(KNOWN, np.nan)
    assert standard_error(with_nan) == pytest.approx(KNOWN_STDERR, rel=1e-14)
    assert np.isnan(standard_error(np.array([1.0, np.nan])))
    columns = np.stack([KNOWN, 2 * KNOWN], axis=0)  # replicas on axis 1
    np.testing.assert_allclose(
        standard_error(columns, axis=1), [KNOWN_STDERR, 2 * KNOWN_STDERR], rtol=1e-14
    )


def test_exactly_duplicated_pairs_give_exactly_the_error_bars_of_the_data_without_them():
    """Resolves: same-init pairs counted as two independent replicas. A pair of identical
    replicas carries the information of one: the error must be that of the undoubled
    data, bit for bit; counting replicas shrinks it by sqrt((n - 1) / (2n - 1))."""
    assert duplicated_pairs_change_nothing(standard_error)
    assert not duplicated_pairs_change_nothing(replicas_as_units)
    pairs = np.repeat(KNOWN, 2)
    assert replicas_as_units(pairs, 2) == pytest.approx(KNOWN_STDERR * math.sqrt(4 / 9))
    # the mean and its bar, and the bootstrap (whole pairs drawn), are unchanged too
    assert mean_and_error(pairs, 2) == (np.mean(KNOWN), standard_error(KNOWN))
    alone = percentile_bootstrap(
        lambda units: KNOWN[units].mean(), 5, 200, np.random.default_rng(1)
    )
    doubled = percentile_bootstrap(
        lambda replicas: pairs[replicas].mean(), 10, 200, np.random.default_rng(1), per_unit=2
    )
    assert doubled == alone  # integers: every sum is exact


def test_units_of_a_run():
    """Resolves: pairing read wrongly (only same_init pairs two replicas) and a run whose
    replicas do not split into whole pairs averaged silently."""
    paired = {"data": {"P": 10}, "run": {"pairing": "same_init"}}
    assert resolve_point(paired).run.replicas_per_unit == 2
    assert resolve_point({"data": {"P": 10}}).run.replicas_per_unit == 1
    np.testing.assert_array_equal(unit_means(np.array([1.0, 3.0, np.nan, 5.0]), 2), [2.0, 5.0])
    with pytest.raises(ValueError, match="units of 2"):
        unit_means(np.ones(3), 2)


def test_bootstrap_draws_whole_pairs_and_counts_every_replica_once_per_draw():
    """Resolves: resamples splitting a pair (its two replicas drawn apart) and
    multiplicities that do not add up to the number of replicas."""
    indices = bootstrap_indices(np.random.default_rng(2), 8, 50, per_unit=2)
    assert indices.shape == (50, 8)
    np.testing.assert_array_equal(indices[:, 1::2], indices[:, ::2] + 1)
    assert (indices[:, ::2] % 2 == 0).all()
    counts = resample_counts(np.random.default_rng(2), 8, 50, per_unit=2)
    np.testing.assert_array_equal(counts.sum(axis=1), 8)
    np.testing.assert_array_equal(counts[:, ::2], counts[:, 1::2])
    # one replica per unit: the plain draws of rng.integers (the scaling studies' seeds)
    expected = np.random.default_rng(3).integers(0, 6, size=(4, 6))
    np.testing.assert_array_equal(bootstrap_indices(np.random.default_rng(3), 6, 4), expected)


def test_bootstrap_means_put_the_plain_mean_first_and_resample_seeds_jointly():
    """Resolves: seeds resampled independently per point (breaking their correlation)."""
    data = np.arange(2 * 3 * 4, dtype=float).reshape(2, 3, 4)  # (curves, T, seeds)
    means = bootstrap_means(data, 20, seed=4)
    np.testing.assert_array_equal(means[0], data.mean(axis=-1))
    counts = resample_counts(np.random.default_rng(4), 4, 20)
    np.testing.assert_allclose(means[1:], np.einsum("br,ctr->bct", counts, data) / 4)


def test_percentile_interval_is_central_and_spread_is_the_classical_error():
    """Resolves: off-centre percentiles (2.5 is not 50 x (1 - 0.95) in floating point)
    and a bootstrap spread missing the sqrt(n / (n - 1)) that makes it the standard error."""
    assert percentile_interval(np.arange(101.0)) == (2.5, 97.5)
    assert percentile_interval(np.arange(101.0), 0.5) == (25.0, 75.0)
    # replicates 1, 2, 3 (and one failed): sd 1 with n - 1 dof, times sqrt(4 / 3)
    spread = bootstrap_spread(np.array([1.0, 2.0, 3.0, np.nan]), units=4)
    assert spread == pytest.approx(math.sqrt(4 / 3), rel=1e-14)


def test_geometric_error_bar_is_symmetric_in_log():
    """Resolves: a geometric bar computed on the values instead of their logs."""
    centre, low, high = error_bar(np.exp(np.array([0.0, 2.0])), geometric=True)
    # logs 0 and 2: mean 1, s = sqrt(2), se = 1
    np.testing.assert_allclose([centre, low, high], [math.e, 1.0, math.e**2], rtol=1e-14)
    centre, low, high = error_bar(KNOWN)
    assert (centre, high - centre) == (pytest.approx(3.2), pytest.approx(KNOWN_STDERR))


TRIALS = 400
TRUE_MEAN, SIGMA = 1.0, 2.0


def test_percentile_bootstrap_covers_a_known_mean():
    """Resolves: a bootstrap that does not resample (or resamples the wrong axis), whose
    interval collapses. Gaussian data, 20 units, true mean known: the 95% percentile
    interval of the mean must cover it in 95% of 400 trials, within 0.05 (4.5 binomial
    standard deviations, plus the percentile bootstrap's 1-2% undercoverage at n = 20)."""
    rng = np.random.default_rng(5)
    covered = []
    for _ in range(TRIALS):
        sample = TRUE_MEAN + SIGMA * rng.standard_normal(20)
        _, low, high = percentile_bootstrap(
            lambda units, sample=sample: sample[units].mean(), 20, 400, rng
        )
        covered.append(low <= TRUE_MEAN <= high)
    assert np.mean(covered) == pytest.approx(0.95, abs=0.05)


def test_student_interval_covers_with_five_seeds_where_the_percentile_one_does_not():
    """Resolves: too few degrees of freedom for few seeds. With n = 5 the Student-t
    interval t_4 sqrt(5/4) sd_bootstrap covers the true mean in 95% of trials (within
    0.04: 3.7 binomial standard deviations of 400 trials, plus the bootstrap's own noise);
    the percentile interval covers ~80%, and a normal quantile in place of t_4 (too few
    degrees of freedom ignored) ~87%: both fall below the tolerance."""
    rng = np.random.default_rng(6)
    student, percentile, normal = [], [], []
    for trial in range(TRIALS):
        data = TRUE_MEAN + SIGMA * rng.standard_normal((1, 1, 5))
        means = bootstrap_means(data, 400, seed=trial)[:, 0, 0]
        low, high = student_interval(means[0], means[1:], units=5)
        student.append(low <= TRUE_MEAN <= high)
        low, high = percentile_interval(means[1:])
        percentile.append(low <= TRUE_MEAN <= high)
        half = stats.norm.ppf(0.975) * bootstrap_spread(means[1:], 5)
        normal.append(abs(means[0] - TRUE_MEAN) <= half)
    assert np.mean(student) == pytest.approx(0.95, abs=0.04)
    assert np.mean(percentile) < 0.91 and np.mean(normal) < 0.91
