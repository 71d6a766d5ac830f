"""One DMFT solve: the fixed-point iteration C, R, m -> paths -> kernels -> C, R, m.

The random numbers (the normals of the Gaussian field u and the selection paths) are drawn
once and fixed across iterations, so the iteration is a deterministic map whose fixed point is the
DMFT of this sample of paths (the first iterations run on a quarter of them: COARSE_*).
Plain, undamped iteration: the equations are causal, so it converges front-wise in time.

Stopping rule: the change of an iteration is the largest absolute change of C, R and m,
each divided by its largest entry (at least 1); the solve is ``converged`` when it falls
below ``tolerance``, ``not_converged`` when ``max_iterations`` pass without that, and
``diverged`` when the sphere's step has no real root or a value is not finite or above
DIVERGENCE_BOUND.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from sgdnoise.theory.discrete_equations import Trajectory, integrate_equations
from sgdnoise.theory.effective_process import (
    EffectivePaths,
    mean_force,
    noise_kernel,
    simulate_paths,
)
from sgdnoise.theory.gaussian_sampling import (
    FieldNormals,
    causal_cholesky,
    draw_field_normals,
    response_field,
)
from sgdnoise.theory.memory_kernel import memory_kernel
from sgdnoise.theory.problem import DmftProblem
from sgdnoise.theory.selection_paths import draw_selection_paths

CONVERGED, NOT_CONVERGED, DIVERGED = "converged", "not_converged", "diverged"
DIVERGENCE_BOUND = 1e12
# The first iterations, far from the fixed point, use the first paths / COARSE_FRACTION
# paths only (the same random numbers); every path from the first change below
# COARSE_UNTIL, or the first change that grows, or COARSE_ITERATIONS iterations on (few
# paths make long GD horizons unstable). Only iterations on every path stop the solve.
COARSE_FRACTION = 4
COARSE_UNTIL = 1e-2
COARSE_ITERATIONS = 8
# Per-path triangular inverses in float32, accumulated in float64: rounding << Monte Carlo error.
INVERSE_PRECISION = torch.float32
# How the field u of covariance C is sampled (gaussian_sampling): "response",
# u = sqrt(C00) Phi z0 + lr R eta with eta mixing the previous iteration's forces through a
# fixed Gaussian matrix, or "cholesky", u = chol(C) z. "auto": response for gd and after a
# gd_minimum prefix, cholesky for sgd, persistent_sgd and langevin.
# Why: chol(C) z is hypersensitive to a numerically singular C; elsewhere cholesky is cheaper.
SAMPLING = "auto"
# Each path mixes at most MIXED_FORCES forces (float32 matrix MIXED_FORCES x paths; cost
# ~T x paths x MIXED_FORCES per iteration); None: every force (exact per path), as long as
# the mixing matrix stays within MIXING_ELEMENTS entries (400 MB: dense up to 1e4 paths).
# Fewer: paths are split into groups that mix their own group's forces (the field's
# covariance is then C on average over the paths, not per path; gaussian_sampling).
MIXED_FORCES: int | None = None
MIXING_ELEMENTS = 10**8


@dataclass
class SeedSolution:
    """The state of one solver seed after its iteration stopped.

    trajectory: the last C, R, m, c; paths: the effective sample re-simulated on them;
    noise, memory, drift: M_C, M_R, mu of the last iteration; changes: change per
    iteration; failed_step: the step where a diverged solve broke down.
    """

    trajectory: Trajectory
    paths: EffectivePaths | None
    noise: np.ndarray
    memory: np.ndarray
    drift: np.ndarray
    status: str
    changes: list[float] = field(default_factory=list)
    failed_step: int | None = None


def free_trajectory(problem: DmftProblem) -> Trajectory:
    """The starting guess: the dynamics without data, w^k = c^k w^0 (c = 1 on the sphere)."""
    size = problem.steps + 1
    c = 1.0 if problem.constraint == "sphere" else problem.contraction
    steps = np.arange(size)
    correlation = c ** (steps[:, None] + steps[None, :]).astype(float)
    lag = steps[:, None] - steps[None, :] - 1
    response = np.where(lag >= 0, c ** np.maximum(lag, 0).astype(float), 0.0)
    return Trajectory(correlation, response, np.zeros(size), np.full(size, c), True, None)


def relative_change(new: Trajectory, old: Trajectory) -> float:
    """Largest change of C, R, m, each in units of its largest entry (at least 1)."""
    change = 0.0
    for a, b in [
        (new.correlation, old.correlation),
        (new.response, old.response),
        (new.magnetisation, old.magnetisation),
    ]:
        scale = max(1.0, float(np.max(np.abs(a))))
        change = max(change, float(np.max(np.abs(a - b))) / scale)
    return change


def _first_out_of_bounds(trajectory: Trajectory) -> int | None:
    """The first step whose row of C, R or m is not finite or beyond DIVERGENCE_BOUND."""
    bad = ~(np.abs(trajectory.correlation) < DIVERGENCE_BOUND).all(axis=1)
    bad |= ~(np.abs(trajectory.response) < DIVERGENCE_BOUND).all(axis=1)
    bad |= ~(np.abs(trajectory.magnetisation) < DIVERGENCE_BOUND)
    return int(np.argmax(bad)) if bad.any() else None


def _field(
    problem: DmftProblem,
    trajectory: Trajectory,
    normals: np.ndarray | None,
    field_normals: FieldNormals | None,
    force: np.ndarray | None,
    paths: int,
) -> np.ndarray:
    """The Gaussian field u (T + 1, paths) of covariance C for the first ``paths`` paths.

    Cholesky sampling uses ``normals`` (T + 1, paths), response sampling ``field_normals``
    and ``force``, the previous iteration's (it made this trajectory's M_C; None on the
    first iteration, whose free trajectory has M_C = 0).
    """
    if field_normals is None:
        return causal_cholesky(trajectory.correlation) @ normals[:, :paths]
    return response_field(
        trajectory.correlation,
        trajectory.response,
        problem.lr,
        problem.noise_variance * problem.sample_ratio,
        force,
        field_normals,
        paths,
        trajectory.magnetisation if problem.mixture else None,
        2.0 * problem.temperature / problem.lr if force is not None else 0.0,
    )


def field_sampling(problem: DmftProblem, sampling: str | None = None) -> str:
    """The sampling of the field u a solve uses: "response" or "cholesky" (see SAMPLING)."""
    sampling = SAMPLING if sampling is None else sampling
    if sampling not in ("auto", "response", "cholesky"):
        raise ValueError(f"sampling {sampling!r}; allowed: auto, response, cholesky")
    if sampling == "auto":  # gd, and the gd_minimum prefix, make C numerically singular
        singular = problem.selection == "gd" or problem.prefix_steps > 0
        return "response" if singular else "cholesky"
    return sampling


def solve_seed(
    problem: DmftProblem,
    paths: int,
    seed: np.random.SeedSequence,
    max_iterations: int,
    tolerance: float,
    include_equal_time_noise: bool = True,
    sampling: str | None = None,
    mixed_forces: int | None = None,
) -> SeedSolution:
    """Solve the DMFT for one draw of the random numbers, from the dynamics without data.

    ``include_equal_time_noise=False`` drops the equal-time noise term (a wrong equation,
    for tests only). ``sampling`` ("auto", "response" or "cholesky", default SAMPLING) and
    ``mixed_forces`` (default MIXED_FORCES) choose how the field u is sampled.
    """
    sampling = field_sampling(problem, sampling)
    mixed = mixed_forces if mixed_forces is not None else MIXED_FORCES
    mixed = min(paths, max(1, MIXING_ELEMENTS // paths), paths if mixed is None else int(mixed))
    rng = np.random.default_rng(seed)
    normals = field_normals = None  # the normals of u, of the one sampling in use
    if sampling == "cholesky":
        normals = rng.standard_normal((problem.steps + 1, paths))
    selection = draw_selection_paths(problem, paths, rng)
    if sampling == "response":
        field_normals = draw_field_normals(
            rng, problem.steps, paths, mixed, problem.temperature > 0
        )
    force = None  # the forces of the previous iteration (response sampling)
    size = problem.steps + 1
    current = free_trajectory(problem)
    previous_active = None
    changes: list[float] = []
    status = NOT_CONVERGED
    noise = memory = np.zeros((size, size))
    drift = np.zeros(size)
    failed_step = None
    used = max(2, paths // COARSE_FRACTION) if paths >= 4 * COARSE_FRACTION else paths
    for _ in range(max_iterations):
        coarse_done = changes and (
            changes[-1] < COARSE_UNTIL
            or len(changes) >= COARSE_ITERATIONS
            or (len(changes) > 1 and changes[-1] > changes[-2])
        )
        if used < paths and coarse_done:
            used, previous_active = paths, None  # from now on every path
        sample = simulate_paths(
            problem,
            _field(problem, current, normals, field_normals, force, used),
            current.response,
            current.magnetisation,
            selection[:, :used],
            previous_active,
        )
        previous_active = sample.active
        if not np.all(np.isfinite(sample.force)):
            status = DIVERGED
            failed_step = int(np.argmax(~np.isfinite(sample.force).all(axis=1)))
            break
        noise = noise_kernel(problem, sample)
        memory = memory_kernel(
            current.response,
            sample.active,
            problem.lr,
            problem.coupling,
            problem.sample_ratio,
            precision=INVERSE_PRECISION,
            workers=torch.get_num_threads(),
        )
        drift = mean_force(problem, sample)
        force = sample.force
        new = integrate_equations(problem, noise, memory, drift, include_equal_time_noise)
        out_of_bounds = _first_out_of_bounds(new)
        if not new.valid or out_of_bounds is not None:
            current, status = new, DIVERGED
            failed_step = new.failed_step if not new.valid else out_of_bounds
            break
        changes.append(relative_change(new, current))
        if changes[-1] < tolerance and used == paths:
            current, status = new, CONVERGED
            break
        current = new
    final_paths = None
    if status != DIVERGED:
        final_paths = simulate_paths(
            problem,
            _field(problem, current, normals, field_normals, force, paths),
            current.response,
            current.magnetisation,
            selection,
            previous_active if used == paths else None,
        )
    return SeedSolution(current, final_paths, noise, memory, drift, status, changes, failed_step)
