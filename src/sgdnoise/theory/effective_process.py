"""The effective sample of the discrete DMFT, simulated on many paths (docs/physics.md A8).

Given the correlation C, the response R and the magnetisation m (Gaussian mixture), each
path p follows, for k = 0..T,

    h^k = m^k + sqrt(Delta) u^k - lr Delta sum_{l < k} R[k, l] f^l,
    f^k = scale s^k v'(h^k),     v'(h) = -(kappa - h) theta(kappa - h),

with u the Gaussian field of covariance C, sampled causally by gaussian_sampling (through
the response: response_field; or u = L z: causal_cholesky), its random numbers and the
selection s fixed across iterations,
no self-term at l = k (the force of step k acts after h^k is measured). Random patterns
have m = 0 and Delta = 1. The recursion is run in blocks of steps: the memory of the
earlier blocks enters through one matrix product per block.

Shapes: arrays are time-major, (T + 1, paths): row k holds step k of every path.

The kink of v' at h = kappa: the active indicator theta(kappa - h) (the derivative of the
force, which enters M_R) jumps there, while the force itself is continuous. With random
numbers fixed, a path hovering at h = kappa (GD at late times) flips side between
iterations and the iteration cycles at the 1/paths level. At the kink any value in [0, 1]
is a subgradient, so a path within ``KINK_BAND`` of kappa keeps the side it had in the
previous iteration (hysteresis); the fraction of such (path, step) pairs is returned as a
diagnostic bound on the effect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sgdnoise.theory.problem import DmftProblem

BLOCK_STEPS = 32
KINK_BAND = 1e-4


@dataclass(frozen=True)
class EffectivePaths:
    """Stabilities h (T + 1, paths), forces f = scale s v'(h), active = s theta(kappa - h).

    kink_fraction: fraction of (path, step) pairs within KINK_BAND of kappa whose side
    was taken from the previous iteration.
    """

    stability: np.ndarray
    force: np.ndarray
    active: np.ndarray
    kink_fraction: float = 0.0


def simulate_paths(
    problem: DmftProblem,
    field: np.ndarray,
    response: np.ndarray,
    magnetisation: np.ndarray,
    selection: np.ndarray,
    previous_active: np.ndarray | None = None,
) -> EffectivePaths:
    """Run the effective sample on every path for the Gaussian field u (T + 1, paths) of
    covariance C, the response R and m (see module docstring).

    ``previous_active``: the active steps of the previous iteration (kink hysteresis), for
    all steps or for the first ones.
    """
    steps = problem.steps + 1
    delta, kappa, scale = problem.noise_variance, problem.kappa, problem.force_scale
    memory = problem.lr * delta * response
    stability = np.array(field, dtype=float)
    if delta != 1.0:
        stability *= np.sqrt(delta)
    if problem.mixture:
        stability += magnetisation[:, None]
    force = np.zeros_like(stability)
    for start in range(0, steps, BLOCK_STEPS):
        stop = min(start + BLOCK_STEPS, steps)
        if start:
            stability[start:stop] -= memory[start:stop, :start] @ force[:start]
        for k in range(start, stop):
            if k > start:
                stability[k] -= memory[k, start:k] @ force[start:k]
            np.minimum(stability[k] - kappa, 0.0, out=force[k])
            force[k] *= selection[k]
            if scale != 1.0:
                force[k] *= scale
    active = selection & (stability < kappa)
    kink_fraction = 0.0
    if previous_active is not None:  # may cover only the first steps (shorter horizon)
        rows = previous_active.shape[0]
        at_kink = np.abs(stability[:rows] - kappa) < KINK_BAND
        kink_fraction = float(np.sum(at_kink)) / stability.size
        active[:rows] = np.where(at_kink, previous_active, active[:rows])
    return EffectivePaths(stability, force, active, kink_fraction)


def loss_per_sample(paths: EffectivePaths, kappa: float) -> np.ndarray:
    """E[v(h^k)] with v(h) = (kappa - h)^2 theta(kappa - h) / 2, per step (dimensionless)."""
    gap = np.minimum(paths.stability - kappa, 0.0)
    return 0.5 * np.mean(gap * gap, axis=1)


def violated_fraction(paths: EffectivePaths, kappa: float, tolerance: float) -> np.ndarray:
    """P(h^k < kappa - tolerance) per step (the simulator's error count)."""
    return np.mean(paths.stability < kappa - tolerance, axis=1)


def noise_kernel(problem: DmftProblem, paths: EffectivePaths) -> np.ndarray:
    """M_C[k, k'] = Delta (P/N) E[f^k f^k'] (its diagonal carries E[s^2] = b), (T+1, T+1),
    plus the Langevin noise 2 T / lr on the diagonal (langevin at temperature T)."""
    force = paths.force
    factor = problem.noise_variance * problem.sample_ratio / force.shape[1]
    kernel = factor * (force @ force.T)
    if problem.temperature:
        kernel[np.diag_indices_from(kernel)] += 2.0 * problem.temperature / problem.lr
    return kernel


def mean_force(problem: DmftProblem, paths: EffectivePaths) -> np.ndarray:
    """mu^k = (P/N) E[f^k]: the drift of the magnetisation (Gaussian mixture), per step."""
    return problem.sample_ratio * paths.force.mean(axis=1)
