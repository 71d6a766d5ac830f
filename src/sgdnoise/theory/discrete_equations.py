"""The discrete-time DMFT equations for C, R and m given the kernels (docs/physics.md A8).

Matrices are indexed by steps k, l = 0..T, no lr inside the kernels; observables at step
k are those of w^k, before the update. With c_k the step's contraction (1 - lr lambda for
ridge; on the sphere the root near 1 that keeps C[k+1, k+1] = 1) and, for the Gaussian
mixture, the drift mu^k = (P/N) E[f^k] along the centre v:

    R[k+1, l] = c_k R[k, l] - lr sum_{m=l+1}^{k} M_R[k, m] R[m, l] + delta_{k l}
    C[k+1, k'] = c_k C[k, k'] - lr mu^k m^k' - lr sum_{l <= k} M_R[k, l] C[l, k']
                 + lr^2 sum_{l < k'} M_C[k, l] R[k', l]                 (k' <= k + 1)
    m^{k+1}   = c_k m^k - lr mu^k - lr sum_{l <= k} M_R[k, l] m^l

(random patterns: mu = m = 0). Every quantity of step k + 1 is affine in c_k, so C[k+1,
k+1] = c_k^2 C[k, k] + 2 c_k B_k + q_k exactly, with B_k = E[w^k . d^k] / N and
q_k = E[|d^k|^2] / N for the displacement d^k; the sphere solves it for c_k. The l = k term
lr^2 M_C[k, k] of q_k is the equal-time noise: without it C loses positive definiteness.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sgdnoise.theory.problem import DmftProblem


@dataclass(frozen=True)
class Trajectory:
    """C and R (T+1, T+1), m and the contraction c (T+1,), and whether the step was valid.

    ``valid`` is False when the sphere's quadratic for c_k had no real root (a step too
    large for the sphere) or a value became non-finite: the solve diverged at ``failed_step``.
    """

    correlation: np.ndarray
    response: np.ndarray
    magnetisation: np.ndarray
    contraction: np.ndarray
    valid: bool
    failed_step: int | None


def integrate_equations(
    problem: DmftProblem,
    noise: np.ndarray,
    memory: np.ndarray,
    drift: np.ndarray,
    include_equal_time_noise: bool = True,
) -> Trajectory:
    """Step the discrete equations from C[0, 0] = 1, m^0 = 0 (random init) to step T.

    ``noise`` is M_C, ``memory`` is M_R, ``drift`` is mu (ignored for random patterns).
    ``include_equal_time_noise=False`` drops lr^2 M_C[k, k] from C[k+1, k+1] (a wrong
    equation, kept only so that tests can show what the term does). The contraction c_T
    of the last step is computed too (it gives the multiplier nu at every recorded step).
    """
    size = problem.steps + 1
    lr = problem.lr
    sphere = problem.constraint == "sphere"
    correlation = np.zeros((size, size))
    response = np.zeros((size, size))
    magnetisation = np.zeros(size)
    contraction = np.full(size, np.nan)
    correlation[0, 0] = 1.0
    for k in range(size):
        rate = memory[k, : k + 1]
        kick = noise[k, : k + 1]
        past_c = correlation[: k + 1, : k + 1]
        past_r = response[: k + 1, : k + 1]
        mu = drift[k] if problem.mixture else 0.0
        shift_c = -lr * (rate @ past_c) + lr * lr * (past_r @ kick)
        if mu:
            shift_c -= lr * mu * magnetisation[: k + 1]
        shift_r = -lr * (rate @ past_r)
        shift_r[k] += 1.0
        shift_m = -lr * mu - lr * (rate @ magnetisation[: k + 1])
        free = -lr * mu * shift_m - lr * (rate @ shift_c) + lr * lr * (kick @ shift_r)
        if not include_equal_time_noise:
            free -= lr * lr * kick[k]
        if sphere:
            discriminant = shift_c[k] ** 2 - correlation[k, k] * (free - 1.0)
            if not (discriminant >= 0.0 and correlation[k, k] > 0.0):
                return Trajectory(correlation, response, magnetisation, contraction, False, k)
            c_k = (-shift_c[k] + np.sqrt(discriminant)) / correlation[k, k]
        else:
            c_k = problem.contraction
        contraction[k] = c_k
        if k == size - 1:
            break
        row = c_k * correlation[k, : k + 1] + shift_c
        correlation[k + 1, : k + 1] = row
        correlation[: k + 1, k + 1] = row
        if sphere:
            correlation[k + 1, k + 1] = 1.0
        else:
            correlation[k + 1, k + 1] = (
                c_k * c_k * correlation[k, k] + 2.0 * c_k * shift_c[k] + free
            )
        response[k + 1, : k + 1] = c_k * response[k, : k + 1] + shift_r
        magnetisation[k + 1] = c_k * magnetisation[k] + shift_m
        if not (np.isfinite(correlation[k + 1, k + 1]) and np.all(np.isfinite(row))):
            return Trajectory(correlation, response, magnetisation, contraction, False, k + 1)
    return Trajectory(correlation, response, magnetisation, contraction, True, None)
