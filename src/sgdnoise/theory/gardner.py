"""Gardner's storage capacity of the perceptron with margin kappa (docs/physics.md A2).

For random patterns and a margin kappa >= 0 the sample ratio P/N up to which the
constraints h_mu >= kappa can all be satisfied on the sphere |w|^2 = N is

    (P/N)_c(kappa) = 1 / Int_{-kappa}^{inf} Dz (z + kappa)^2,     Dz = e^{-z^2/2} dz / sqrt(2 pi).

The Gaussian integral is closed-form: with Phi the standard normal distribution function
and phi its density, Int_{-kappa}^{inf} Dz (z + kappa)^2 = (1 + kappa^2) Phi(kappa)
+ kappa phi(kappa). At kappa = 0 the integral is 1/2: Gardner's capacity 2. It is also
the SAT/UNSAT (jamming) line of the square-hinge loss for kappa >= 0.
"""

from __future__ import annotations

import math


def gardner_capacity(kappa: float) -> float:
    """Critical sample ratio (P/N)_c of the spherical perceptron at margin kappa >= 0.

    Dimensionless. Below it (SAT) zero training loss is reachable; above it (UNSAT) the
    minimum of the square-hinge loss is positive.

    >>> gardner_capacity(0.0)
    2.0
    >>> round(gardner_capacity(1.0), 4)
    0.5196
    """
    if not math.isfinite(kappa) or kappa < 0:
        raise ValueError(f"kappa = {kappa}: the formula holds for a finite margin kappa >= 0")
    gaussian_cdf = 0.5 * math.erfc(-kappa / math.sqrt(2.0))
    gaussian_density = math.exp(-0.5 * kappa * kappa) / math.sqrt(2.0 * math.pi)
    second_moment = (1.0 + kappa * kappa) * gaussian_cdf + kappa * gaussian_density
    return 1.0 / second_moment
