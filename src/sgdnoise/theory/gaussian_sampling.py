"""Causal sampling of the Gaussian field u of the DMFT, covariance C (PHYSICS.md A8).

u = L z with L the lower Cholesky factor of C and z standard normal (fixed across the
fixed-point iterations): row k of L depends only on C[:k+1, :k+1], so u^k depends only on
the correlation up to step k (causality of the solve).

Early iterates of C need not be positive definite, and the converged C of GD is nearly
singular (condition numbers ~1e18). When LAPACK's Cholesky fails, a causal factorisation
with clipped pivots is used instead: a conditional variance of u^k given the past that is
below ``relative_floor`` x C[k, k] is set to zero (u^k is then the conditional mean,
a deterministic function of the past) and that step's column of L is zero.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg


def causal_cholesky(covariance: np.ndarray, relative_floor: float = 1e-12) -> np.ndarray:
    """Lower-triangular L with L L^T = C on its positive-definite part; rows are causal."""
    try:
        return np.linalg.cholesky(covariance)
    except np.linalg.LinAlgError:
        return _clipped_cholesky(covariance, relative_floor)


def _clipped_cholesky(covariance: np.ndarray, relative_floor: float) -> np.ndarray:
    size = covariance.shape[0]
    factor = np.zeros_like(covariance)
    compact = np.zeros_like(covariance)  # the factor restricted to the kept steps
    kept: list[int] = []
    for k in range(size):
        if kept:
            row = scipy.linalg.solve_triangular(
                compact[: len(kept), : len(kept)],
                covariance[kept, k],
                lower=True,
                check_finite=False,
            )
        else:
            row = np.zeros(0)
        pivot = covariance[k, k] - row @ row
        factor[k, kept] = row
        if pivot > relative_floor * max(abs(covariance[k, k]), np.finfo(float).tiny):
            rank = len(kept)
            compact[rank, :rank] = row
            compact[rank, rank] = np.sqrt(pivot)
            factor[k, k] = compact[rank, rank]
            kept.append(k)
    return factor
