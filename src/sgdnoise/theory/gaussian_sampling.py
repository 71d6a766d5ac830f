"""Causal sampling of the Gaussian field u of the DMFT, covariance C (docs/physics.md A8).

Two ways. response_field (default for gd, fixed_point.SAMPLING): u = sqrt(C00) Phi z0 +
lr R eta + m z1, eta mixing the previous iteration's forces through a fixed Gaussian
matrix; exact because the discrete equations give C = C00 Phi Phi^T + lr^2 R M_C R^T + m m^T,
and a smooth (linear) function of the iterate. causal_cholesky (the others):

u = L z with L the lower Cholesky factor of C and z standard normal (fixed across the
fixed-point iterations): row k of L depends only on C[:k+1, :k+1], so u^k depends only on
the correlation up to step k (causality of the solve).

Early iterates of C need not be positive definite, the converged C of GD is nearly
singular, and so is a Monte Carlo estimate of a covariance whose
conditional variances are tiny (the half-sum covariance C - D / 4 of a replica pair at late
times on the sphere: theory.replica_pair). When LAPACK's Cholesky fails, a causal
factorisation with clipped pivots is used instead: a conditional variance of u^k given the
past that is below ``relative_floor`` x C[k, k] is set to zero (u^k is then the
conditional mean, a deterministic function of the past) and that step's column of L is
zero. Where the pivot is negative the conditional mean alone has a variance above
C[k, k]; its row is then scaled down to variance C[k, k], so every u^k keeps the variance
C[k, k] it is meant to have (unscaled, such rows give outlying fields).
"""

from __future__ import annotations

from dataclasses import dataclass

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
        explained = row @ row
        pivot = covariance[k, k] - explained
        if pivot < 0.0 < explained:  # indefinite: keep the variance C[k, k] (docstring)
            row = row * np.sqrt(max(covariance[k, k], 0.0) / explained)
        factor[k, kept] = row
        if pivot > relative_floor * max(abs(covariance[k, k]), np.finfo(float).tiny):
            rank = len(kept)
            compact[rank, :rank] = row
            compact[rank, rank] = np.sqrt(pivot)
            factor[k, k] = compact[rank, rank]
            kept.append(k)
    return factor


@dataclass(frozen=True)
class FieldNormals:
    """The random numbers of the response sampling, fixed across the iterations.

    origin (paths,): z0 of the component along w^0; mixing (rows, paths), float32: the
    Gaussian matrix g that mixes the previous forces (rows = the largest number of forces
    a path mixes); magnetisation (paths,): the normal of the rank-one part m m^T
    (Gaussian mixture); white (T + 1, paths) or None: the Langevin noise of M_C.
    """

    origin: np.ndarray
    mixing: np.ndarray
    magnetisation: np.ndarray
    white: np.ndarray | None


def draw_field_normals(
    rng: np.random.Generator, steps: int, paths: int, mixed: int, langevin: bool
) -> FieldNormals:
    """Draw the FieldNormals of ``paths`` paths, each mixing up to ``mixed`` forces."""
    origin = rng.standard_normal(paths)
    magnetisation = rng.standard_normal(paths)
    mixing = rng.standard_normal((mixed, paths), dtype=np.float32)
    white = rng.standard_normal((steps + 1, paths)) if langevin else None
    return FieldNormals(origin, mixing, magnetisation, white)


def force_groups(forces: int, paths: int, mixed: int) -> list[tuple[slice, slice]]:
    """(forces, paths) column ranges: path group j mixes the forces of group j only.

    ceil(forces / mixed) groups of nearly equal sizes; a single group (every path mixes
    every force) when mixed >= forces.
    """
    groups = max(1, -(-forces // mixed))
    force_edges = np.linspace(0, forces, groups + 1).round().astype(int)
    path_edges = np.linspace(0, paths, groups + 1).round().astype(int)
    return [
        (slice(force_edges[j], force_edges[j + 1]), slice(path_edges[j], path_edges[j + 1]))
        for j in range(groups)
    ]


def response_field(
    correlation: np.ndarray,
    response: np.ndarray,
    lr: float,
    noise_factor: float,
    force: np.ndarray | None,
    normals: FieldNormals,
    paths: int,
    magnetisation: np.ndarray | None = None,
    white_variance: float = 0.0,
) -> np.ndarray:
    """The Gaussian field u (T + 1, paths) of covariance C, sampled through the response.

    The effective weight is linear in its noise zeta (covariance M_C):
    w^k = Phi_k w^0 + lr sum_{l < k} R[k, l] (zeta^l - mu^l v) with Phi = C[:, 0] / C[0, 0],
    so the discrete equations give exactly (docs/physics.md A8)

        C = C[0, 0] Phi Phi^T + lr^2 R M_C R^T + m m^T       (m m^T: Gaussian mixture).

    u = sqrt(C[0, 0]) Phi z0 + lr R eta + m z1, with eta = sqrt(noise_factor / n) F g
    (+ sqrt(white_variance) white for langevin), F (T + 1, n) the forces of the previous
    iteration, whose M_C = noise_factor E[f f^T] (noise_factor = Delta P/N), and g fixed:
    E_g[u u^T] = C. Unlike u = chol(C) z, u is a smooth (linear) function of the previous
    iterate, and causal (u^k uses R[k, :k] and the forces of steps < k only).
    ``force`` None (the first iteration, M_C = 0): u = sqrt(C00) Phi z0 (+ m z1).
    With more forces than normals.mixing has rows, paths are split into groups that mix
    their own group's forces (force_groups): the covariance is then C on average over
    the paths (the groups' M_C average to M_C), not per path.
    """
    scale = np.sqrt(max(correlation[0, 0], 0.0))
    origin = correlation[:, 0] / scale if scale > 0 else np.zeros(correlation.shape[0])
    field = np.outer(origin, normals.origin[:paths])
    if force is not None:
        field += response_noise(
            response, lr, noise_factor, force, normals.mixing, paths, normals.white, white_variance
        )
    if magnetisation is not None:
        field += np.outer(magnetisation, normals.magnetisation[:paths])
    return field


def response_noise(
    response: np.ndarray,
    lr: float,
    noise_factor: float,
    force: np.ndarray,
    mixing: np.ndarray,
    paths: int,
    white: np.ndarray | None = None,
    white_variance: float = 0.0,
) -> np.ndarray:
    """lr R eta (T + 1, paths): the noise part of response_field, of covariance
    lr^2 R M R^T with M = noise_factor E[f f^T] over the columns of ``force`` (+
    white_variance on the diagonal, from the standard normals ``white``).

    eta = sqrt(noise_factor / n) F g with g = ``mixing`` (fixed Gaussian, float32; path
    group j mixes the forces of group j only when there are more forces than rows of g:
    force_groups).
    """
    eta = np.empty((force.shape[0], paths), dtype=np.float32)
    force32 = force.astype(np.float32)
    for forces, columns in force_groups(force.shape[1], paths, mixing.shape[0]):
        count = forces.stop - forces.start
        np.matmul(force32[:, forces], mixing[:count, columns], out=eta[:, columns])
        eta[:, columns] *= np.float32(np.sqrt(noise_factor / count))
    eta = eta.astype(np.float64)
    if white_variance:
        eta += np.sqrt(white_variance) * white[:, :paths]
    return lr * (np.tril(response, -1) @ eta)
