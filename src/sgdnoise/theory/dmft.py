"""solve_discrete_dmft: the discrete-time DMFT of the perceptron on the simulator's step grid.

Theory (docs/physics.md A8): in the limit N, P -> infinity at fixed P/N, the training dynamics
of the perceptron (square hinge at margin kappa; sphere in multiplier form or ridge;
random patterns or the Gaussian mixture; gd, sgd, persistent_sgd, langevin) reduces to one
effective sample driven by a Gaussian field of covariance C plus a memory term through
the response R, and one effective weight driven by the kernels M_C, M_R. The discrete
equations are the simulator's own discretisation, exact at finite lr. They are solved by
fixed-point iteration over Monte Carlo paths of the effective sample, with random numbers
fixed across iterations (fixed_point), M_R from exact per-path responses (memory_kernel).

Independent solver seeds give error bars: the solution keeps every seed's arrays, and the
dmft stage (sgdnoise.stages.dmft) averages them into the artifact.
"""

from __future__ import annotations

import time as clock
from dataclasses import dataclass

import numpy as np

from sgdnoise.theory.effective_process import KINK_BAND, loss_per_sample, violated_fraction
from sgdnoise.theory.fixed_point import (
    CONVERGED,
    DIVERGED,
    INVERSE_PRECISION,
    NOT_CONVERGED,
    SeedSolution,
    field_sampling,
    solve_seed,
)
from sgdnoise.theory.problem import DmftProblem
from sgdnoise.theory.replica_pair import ReplicaPair, solve_replica_pair

METHOD = "discrete-time DMFT (docs/physics.md A8), fixed-point iteration, exact per-path M_R"
TWO_TIME_VARIABLES = ("C", "R", "M_C", "M_R")  # indexed (k, l): both step axes drop the prefix


@dataclass(frozen=True)
class DmftSolution:
    """A solved discrete DMFT: every solver seed's arrays on the run's steps k = 0..T.

    Time is lr k (units lr x steps); the gd_minimum prefix (problem.prefix_steps) is
    solved but dropped from every step axis.

    seed_variables: name -> array whose first axis is the solver seed, then
      loss, violated_fraction (T + 1): E[v(h)] and P(h < kappa - error_tolerance),
      dimensionless; C, R, M_C, M_R (T + 1, T + 1): the correlation (dimensionless), the
      response R[k, l] = (1/lr) dE[w^k] / dH^l and the kernels (per unit time); chi
      (T + 1, waiting times): lr sum_{l >= k_w} R[k, l], dimensionless; replica_distance
      (T + 1): d(k) of a same-init pair, dimensionless (NaN for a diverged seed); nu
      (T + 1, sphere only): the multiplier (1 - c) / lr, per unit time; m (T + 1, Gaussian
      mixture only): the magnetisation, dimensionless.
    final_stability (seeds, paths): h of every path at the last step (NaN if diverged).
    changes (seeds, iterations): change per iteration (fixed_point.relative_change), NaN
      after a seed stopped; iterations (seeds,): the iterations each seed did.
    statuses: converged | not_converged | diverged, per seed.
    pair_converged: per seed, whether its replica pair converged (None: seed diverged).
    attributes: the solve's scalars: status, settings, timings, diagnostics (solve_discrete_dmft).
    """

    problem: DmftProblem
    seed_variables: dict[str, np.ndarray]
    final_stability: np.ndarray
    changes: np.ndarray
    iterations: np.ndarray
    statuses: tuple[str, ...]
    pair_converged: tuple[bool | None, ...]
    attributes: dict[str, str | int | float]

    @property
    def run_waiting_steps(self) -> np.ndarray:
        """The waiting steps k_w = round(t_w / lr) counted from the run's first step."""
        return np.array(self.problem.waiting_steps, dtype=np.int64) - self.problem.prefix_steps


def _seed_variables(
    problem: DmftProblem, solution: SeedSolution, pair: ReplicaPair | None
) -> dict[str, np.ndarray]:
    """One seed's variables (DmftSolution.seed_variables without the seed axis)."""
    trajectory = solution.trajectory
    size = problem.steps + 1
    if solution.paths is not None:
        loss = loss_per_sample(solution.paths, problem.kappa)
        violated = violated_fraction(solution.paths, problem.kappa, problem.error_tolerance)
    else:
        loss = violated = np.full(size, np.nan)
    chi = (
        np.stack(
            [
                problem.lr * trajectory.response[:, k_w:].sum(axis=1)
                for k_w in problem.waiting_steps
            ],
            axis=1,
        )
        if problem.waiting_steps
        else np.zeros((size, 0))
    )
    variables = {
        "loss": loss,
        "violated_fraction": violated,
        "C": trajectory.correlation,
        "R": trajectory.response,
        "chi": chi,
        "M_C": solution.noise,
        "M_R": solution.memory,
        "replica_distance": pair.distance if pair is not None else np.full(size, np.nan),
    }
    if problem.constraint == "sphere":
        variables["nu"] = (1.0 - trajectory.contraction) / problem.lr
    if problem.mixture:
        variables["m"] = trajectory.magnetisation
    return _without_prefix(problem, variables)


def _without_prefix(problem: DmftProblem, variables: dict) -> dict[str, np.ndarray]:
    """The run's steps only: drop the gd_minimum prefix from every step axis."""
    start = problem.prefix_steps
    if not start:
        return variables
    return {
        name: values[start:, start:] if name in TWO_TIME_VARIABLES else values[start:]
        for name, values in variables.items()
    }


def _pair_attributes(pairs: list[ReplicaPair | None], seconds: float) -> dict:
    """How the replica-pair iterations ended (replica_pair)."""
    solved = [pair for pair in pairs if pair is not None]
    if not solved:
        return {"replica_pair_status": DIVERGED}
    return {
        "replica_pair_status": CONVERGED if all(p.converged for p in solved) else NOT_CONVERGED,
        "replica_pair_iterations": int(max(len(p.changes) for p in solved)),
        "replica_pair_seconds": float(seconds),
    }


def _overall_status(statuses: list[str]) -> str:
    if DIVERGED in statuses:
        return DIVERGED
    if NOT_CONVERGED in statuses:
        return NOT_CONVERGED
    return CONVERGED


def _iteration_changes(solutions: list[SeedSolution]) -> np.ndarray:
    """The change per iteration of every seed, (seeds, longest run), NaN-padded."""
    longest = max(len(solution.changes) for solution in solutions)
    changes = np.full((len(solutions), max(longest, 1)), np.nan)
    for index, solution in enumerate(solutions):
        changes[index, : len(solution.changes)] = solution.changes
    return changes


def solve_discrete_dmft(
    problem: DmftProblem,
    *,
    paths: int = 10000,
    seed: int = 0,
    max_iterations: int = 100,
    tolerance: float = 1e-6,
    solver_seeds: int = 1,
) -> DmftSolution:
    """Solve the discrete DMFT of ``problem`` for ``solver_seeds`` independent seeds.

    ``paths`` Monte Carlo paths of the effective sample per solver seed, the seeds spawned
    from ``seed``. A seed's iteration stops when the change per iteration (largest change
    of C, R, m relative to their largest entry) is below ``tolerance`` (converged), after
    ``max_iterations`` (not_converged), or on a divergence (diverged). Each seed that did
    not diverge then solves its same-init replica pair (theory.replica_pair) for d(t).

    Cost: dominated by the per-path triangular inverses of M_R, ~(active steps)^3 per
    path and iteration; torch.get_num_threads() sets the number of coarse-grained worker
    threads for them. The first iterations use a quarter of the paths (fixed_point).

    Attributes: status (the worst seed's), seed_status, iterations (the most of any seed),
    paths, seeds, seed, tolerance, max_iterations, final_change (the largest last change),
    steps (T), gd_prefix_steps (run.init gd_minimum: the GD steps solved before the run),
    lr, wall_seconds, kink_band and kink_fraction (the share of (path, step) pairs within
    kink_band of kappa, whose side of the kink was kept from the previous iteration),
    inverse_precision, field_sampling (how the Gaussian field of the effective sample is
    drawn: "response" or "cholesky"; fixed_point), replica_pair_status,
    replica_pair_iterations and replica_pair_seconds, method, and failed_step (the first
    step where a diverged seed broke down).
    """
    if paths < 2 or solver_seeds < 1 or max_iterations < 1 or not tolerance > 0:
        raise ValueError("need paths >= 2, solver_seeds >= 1, max_iterations >= 1, tolerance > 0")
    started = clock.perf_counter()
    children = np.random.SeedSequence(seed).spawn(solver_seeds)
    solutions = [solve_seed(problem, paths, child, max_iterations, tolerance) for child in children]
    pair_started = clock.perf_counter()
    pairs = [
        solve_replica_pair(
            problem, solution.trajectory, paths, child.spawn(1)[0], max_iterations, tolerance
        )
        if solution.status != DIVERGED
        else None
        for solution, child in zip(solutions, children, strict=True)
    ]
    wall_seconds = clock.perf_counter() - started
    pair_seconds = clock.perf_counter() - pair_started
    per_seed = [
        _seed_variables(problem, solution, pair)
        for solution, pair in zip(solutions, pairs, strict=True)
    ]
    seed_variables = {
        name: np.stack([variables[name] for variables in per_seed]) for name in per_seed[0]
    }
    final_stability = np.stack(
        [
            solution.paths.stability[-1] if solution.paths is not None else np.full(paths, np.nan)
            for solution in solutions
        ]
    )
    statuses = [solution.status for solution in solutions]
    final_changes = [solution.changes[-1] if solution.changes else np.nan for solution in solutions]
    attributes = {
        "status": _overall_status(statuses),
        "seed_status": ",".join(statuses),
        "iterations": int(max(len(solution.changes) for solution in solutions)),
        "paths": int(paths),
        "seeds": int(solver_seeds),
        "seed": int(seed),
        "tolerance": float(tolerance),
        "max_iterations": int(max_iterations),
        "final_change": float(np.nanmax(final_changes))
        if np.any(np.isfinite(final_changes))
        else float("nan"),
        "steps": int(problem.run_steps),
        "gd_prefix_steps": int(problem.prefix_steps),
        "lr": problem.lr,
        "wall_seconds": float(wall_seconds),
        "kink_band": KINK_BAND,
        "kink_fraction": float(
            max((s.paths.kink_fraction for s in solutions if s.paths is not None), default=0.0)
        ),
        "inverse_precision": str(INVERSE_PRECISION).replace("torch.", ""),
        "field_sampling": field_sampling(problem),
        **_pair_attributes(pairs, pair_seconds),
        "method": METHOD,
    }
    failed = [s.failed_step for s in solutions if s.failed_step is not None]
    if failed:
        attributes["failed_step"] = int(min(failed))
    return DmftSolution(
        problem=problem,
        seed_variables=seed_variables,
        final_stability=final_stability,
        changes=_iteration_changes(solutions),
        iterations=np.array([len(solution.changes) for solution in solutions], dtype=np.int64),
        statuses=tuple(statuses),
        pair_converged=tuple(pair.converged if pair is not None else None for pair in pairs),
        attributes=attributes,
    )
