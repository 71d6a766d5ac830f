"""depleted_sign samples have the stated law (docs/physics.md B3).

x_1 has density |x_1|^chi exp(-x_1^2 / 2) / Z: |x_1|^2 / 2 ~ Gamma((chi + 1) / 2, 1) with
a symmetric sign, so its CDF is F(x) = 1/2 + sign(x) P((chi + 1)/2, x^2 / 2) / 2 (P the
regularised lower incomplete gamma function). The other coordinates are N(0, 1) and the
label is sign(x_1). Kolmogorov-Smirnov tests on 20,000 draws (fixed seeds) accept the
stated law for chi = 0, 1, 3 and reject the law of a neighbouring chi (the test has
power).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from sgdnoise.data.synthetic import depleted_coordinate, depleted_sign

DRAWS = 20_000


def depleted_cdf(x: np.ndarray, chi: float) -> np.ndarray:
    """CDF of the density ~ |x|^chi exp(-x^2 / 2)."""
    return 0.5 + 0.5 * np.sign(x) * special.gammainc((chi + 1.0) / 2.0, x * x / 2.0)


@pytest.mark.parametrize("chi", [0.0, 1.0, 3.0])
def test_first_coordinate_has_the_depleted_marginal(chi):
    data = depleted_sign(N=4, P=DRAWS, P_test=0, chi=chi, rng=np.random.default_rng(17))
    x1 = data.x_train[:, 0]
    assert stats.kstest(x1, lambda x: depleted_cdf(x, chi)).pvalue > 1e-3
    wrong = chi + 0.5
    assert stats.kstest(x1, lambda x: depleted_cdf(x, wrong)).pvalue < 1e-6


@pytest.mark.parametrize("chi", [0.0, 1.0, 3.0])
def test_density_near_the_boundary_scales_as_x_to_the_chi(chi):
    """P(|x_1| < eps) ~ eps^(chi + 1): the depletion that sets gamma = 1 / (1 + chi)."""
    x1 = depleted_coordinate(1_000_000, chi, np.random.default_rng(5))
    small, smaller = 0.5, 0.25
    inside, inner = np.sum(np.abs(x1) < small), np.sum(np.abs(x1) < smaller)
    exact = special.gammainc((chi + 1) / 2, small**2 / 2) / special.gammainc(
        (chi + 1) / 2, smaller**2 / 2
    )
    poisson = 4.0 / np.sqrt(inner)  # four standard errors of the inner count
    assert inside / inner == pytest.approx(exact, rel=poisson)
    assert exact == pytest.approx(2.0 ** (chi + 1), rel=0.07)  # the power law near x = 0


def test_other_coordinates_are_standard_normal_and_labels_are_the_sign():
    data = depleted_sign(N=5, P=DRAWS, P_test=3000, chi=3.0, rng=np.random.default_rng(3))
    rest = data.x_train[:, 1:].ravel()
    assert stats.kstest(rest, "norm").pvalue > 1e-3
    np.testing.assert_array_equal(data.y_train, np.where(data.x_train[:, 0] >= 0, 1.0, -1.0))
    np.testing.assert_array_equal(data.y_test, np.where(data.x_test[:, 0] >= 0, 1.0, -1.0))
    assert abs(data.y_train.mean()) < 4 / np.sqrt(DRAWS)
    np.testing.assert_array_equal(data.teacher, np.eye(5)[0])
