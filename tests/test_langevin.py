"""Langevin dynamics samples exp(-L/T): checked on a quadratic loss in closed form.

With margin kappa far above every stability, the square hinge is the quadratic
L(w) = sum_mu (kappa - a_mu . w)^2 / 2 + lambda |w|^2 / 2, a_mu = y_mu x_mu / sqrt(N),
with Hessian H = A^T A + lambda I. Euler-Maruyama, w' = w - lr grad L + sqrt(2 T lr) xi,
is then a linear Gaussian recursion whose stationary law is known EXACTLY at finite lr:
mean H^-1 kappa A^T 1 and, along the eigenvector of H of eigenvalue h,
variance 2 T lr / (1 - (1 - lr h)^2) = T / (h (1 - lr h / 2)).
"""

from __future__ import annotations

import numpy as np
import pytest

from sgdnoise.data import make_dataset
from sgdnoise.stages.train import train_point


def test_langevin_samples_the_exact_gaussian_of_a_quadratic_loss(small_point):
    N, P, ridge, kappa, temperature, lr = 6, 3, 1.0, 40.0, 0.5, 0.2
    point = small_point(
        data={"N": N, "P_over_N": None, "P": P},
        model={"constraint": "ridge", "ridge": ridge},
        loss={"kappa": kappa},
        optimizer={"kind": "langevin", "temperature": temperature, "lr": lr},
        run={"replicas": 1500, "max_time": 200.0, "record": {"times": "linear", "count": 101}},
    )
    data = make_dataset(point.data)
    patterns = data.y_train[:, None] * data.x_train / np.sqrt(N)
    hessian = patterns.T @ patterns + ridge * np.eye(N)
    mean = np.linalg.solve(hessian, kappa * patterns.sum(0))
    eigenvalues, eigenvectors = np.linalg.eigh(hessian)
    variance = 2 * temperature * lr / (1 - (1 - lr * eigenvalues) ** 2)
    # precondition: every stability stays far below kappa, so the loss is exactly quadratic
    spread = np.sqrt((patterns @ eigenvectors) ** 2 @ variance)
    assert np.all(patterns @ mean + 8 * spread < kappa)

    run = train_point(point)
    samples = run["weights"].where(run.time >= 40, drop=True).values.reshape(-1, N)
    np.testing.assert_allclose(samples.mean(0), mean, atol=0.05 * np.sqrt(variance.max()))
    measured = ((samples - mean) @ eigenvectors).var(0)
    np.testing.assert_allclose(measured, variance, rtol=0.04)
    # the finite-lr law, not the continuous one T / h, is what is sampled
    continuous = temperature / eigenvalues
    assert np.abs(measured / continuous - 1).max() > 0.1


@pytest.mark.parametrize("temperature", [0.2, 1.0])
def test_langevin_without_constraints_from_any_data_is_stationary_in_the_ridge(
    small_point, temperature
):
    """All samples satisfied (kappa = -inf in practice): only the ridge acts; variance exact."""
    lr, ridge = 0.1, 2.0
    point = small_point(
        data={"N": 5, "P_over_N": None, "P": 2},
        model={"constraint": "ridge", "ridge": ridge},
        loss={"kappa": -1e6},
        optimizer={"kind": "langevin", "temperature": temperature, "lr": lr},
        run={"replicas": 800, "max_time": 60.0, "record": {"times": "linear", "count": 61}},
    )
    run = train_point(point)
    samples = run["weights"].where(run.time >= 10, drop=True).values.reshape(-1, 5)
    expected = 2 * temperature * lr / (1 - (1 - lr * ridge) ** 2)
    assert samples.var() == pytest.approx(expected, rel=0.03)


def test_zero_step_extrapolation_is_exact_for_one_mode():
    """One mode of curvature k: T_eff(lr) = T / (1 - lr k / 2) exactly (discrete OU), so the
    extrapolation linear in 1 / T_eff returns T and the slope -k / (2 T); NaN without data."""
    from sgdnoise.analysis.fdt import zero_step_fit

    temperature, curvature = 0.3, 3.7
    learning_rates = np.array([0.02, 0.05, 0.1, 0.2])
    measured = temperature / (1 - learning_rates * curvature / 2)
    limit, slope = zero_step_fit(learning_rates, measured)
    assert limit == pytest.approx(temperature, rel=1e-12)
    assert slope == pytest.approx(-curvature / (2 * temperature), rel=1e-12)
    assert np.isnan(zero_step_fit(learning_rates, np.full(4, np.nan))[0])
