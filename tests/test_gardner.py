"""Gardner's capacity against direct quadrature and known values (docs/physics.md A2)."""

import math

import numpy as np
import pytest
from scipy import integrate

from sgdnoise.theory import gardner_capacity


def test_gardner_capacity_is_two_at_zero_margin():
    assert gardner_capacity(0.0) == pytest.approx(2.0, rel=1e-15)


@pytest.mark.parametrize("kappa", [0.1, 0.5, 1.0, 2.0, 4.0])
def test_gardner_capacity_matches_quadrature(kappa):
    def integrand(z):
        return math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi) * (z + kappa) ** 2

    second_moment, _ = integrate.quad(integrand, -kappa, np.inf, epsabs=1e-13, epsrel=1e-13)
    assert gardner_capacity(kappa) == pytest.approx(1.0 / second_moment, rel=1e-10)


def test_gardner_capacity_decreases_like_one_over_kappa_squared():
    kappas = np.array([0.0, 0.5, 1.0, 2.0, 8.0])
    values = np.array([gardner_capacity(k) for k in kappas])
    assert np.all(np.diff(values) < 0)
    # Int Dz (z + kappa)^2 -> 1 + kappa^2 for large kappa
    assert gardner_capacity(8.0) == pytest.approx(1.0 / 65.0, rel=1e-10)


@pytest.mark.parametrize("kappa", [-0.5, float("nan"), float("inf")])
def test_gardner_capacity_rejects_kappa_outside_its_domain(kappa):
    with pytest.raises(ValueError, match="kappa"):
        gardner_capacity(kappa)


def test_gardner_docstring_examples_hold():
    import doctest

    import sgdnoise.theory.gardner as module

    failures, tried = doctest.testmod(module)
    assert tried >= 2 and failures == 0
