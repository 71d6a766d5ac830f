"""solve_dmft: the discrete-time DMFT of the perceptron on the simulator's step grid.

Theory (docs/physics.md A8): in the limit N, P -> infinity at fixed P/N, the training dynamics
of the perceptron (square hinge at margin kappa; sphere in multiplier form or ridge;
random patterns or the Gaussian mixture; gd, sgd, persistent_sgd, langevin) reduces to one
effective sample driven by a Gaussian field of covariance C plus a memory term through
the response R, and one effective weight driven by the kernels M_C, M_R. The discrete
equations are the simulator's own discretisation, exact at finite lr. They are solved by
fixed-point iteration over Monte Carlo paths of the effective sample, with random numbers
fixed across iterations (fixed_point), M_R from exact per-path responses (memory_kernel).

Error bars come from independent solver seeds: with ``solver_seeds`` > 1 each variable X
is the mean over seeds and X_stderr its standard error.
"""

from __future__ import annotations

import time as clock
import warnings

import numpy as np
import xarray as xr

from sgdnoise.config import canonical_json
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
from sgdnoise.theory.problem import DmftProblem, problem_from_point
from sgdnoise.theory.replica_pair import ReplicaPair, solve_replica_pair

VARIABLE_METADATA = {
    "loss": ("1", "training loss per sample E[v(h)], v(h) = (kappa - h)^2 theta(kappa - h) / 2"),
    "violated_fraction": ("1", "fraction of samples with h < kappa - error_tolerance"),
    "C": ("1", "correlation C(t, t') = w(t) . w(t') / N"),
    "R": ("1 / time", "response R[k, l] = (1/lr) dE[w^k] / dH^l (field entering as + lr H^l)"),
    "chi": ("1", "integrated response chi(t, t_w) = lr sum_{l = k_w}^{k - 1} R[k, l]"),
    "nu": ("1 / time", "spherical multiplier nu = (1 - c) / lr of the step from t"),
    "m": ("1", "magnetisation m(t) = w(t) . v / N along the mixture centre v"),
    "M_C": (
        "1 / time",
        "noise kernel M_C[k, l] = Delta (P/N) E[f^k f^l], f = scale s v'(h) (+ 2 T / lr on the "
        "diagonal for langevin)",
    ),
    "M_R": ("1 / time", "memory kernel M_R[k, l] = Delta (P/N) E[d f^k / dP^l] (exact per path)"),
    "seed_loss": ("1", "loss of each solver seed (for fits that resample seeds)"),
    "seed_C_diagonal": ("1", "C(t, t) of each solver seed"),
    "seed_C_waiting": ("1", "C(t, t_w) of each solver seed"),
    "seed_chi": ("1", "chi(t, t_w) of each solver seed"),
    "replica_distance": (
        "1",
        "replica distance d(t) = |w_a - w_b|^2 / N of two replicas with the same data and w(0) "
        "and independent selection (and Langevin) noise",
    ),
    "seed_replica_distance": ("1", "replica distance d(t) of each solver seed"),
    "seed_final_stability": (
        "1",
        "stability h of each path of the effective sample at the last step (its gap "
        "statistics are the final margins; analysis.margins)",
    ),
}


def _seed_variables(
    problem: DmftProblem, solution: SeedSolution, pair: ReplicaPair | None
) -> dict[str, np.ndarray]:
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
        name: values[start:, start:] if DIMS[name] == ("step", "step2") else values[start:]
        for name, values in variables.items()
    }


DIMS = {
    "loss": ("step",),
    "violated_fraction": ("step",),
    "C": ("step", "step2"),
    "R": ("step", "step2"),
    "chi": ("step", "t_w"),
    "nu": ("step",),
    "m": ("step",),
    "M_C": ("step", "step2"),
    "M_R": ("step", "step2"),
    "seed_loss": ("solver_seed", "step"),
    "seed_C_diagonal": ("solver_seed", "step"),
    "seed_C_waiting": ("solver_seed", "step", "t_w"),
    "seed_chi": ("solver_seed", "step", "t_w"),
    "replica_distance": ("step",),
    "seed_replica_distance": ("solver_seed", "step"),
    "seed_final_stability": ("solver_seed", "path"),
}


def _resampled_variables_of_seed(
    problem: DmftProblem, variables: dict, solution: SeedSolution, paths: int
) -> dict[str, np.ndarray]:
    """Per-seed copies of what the fits resample as they do replicas: the FDT curve's
    inputs, the replica distance and the final stabilities of the ``paths`` paths (margins)."""
    final = solution.paths.stability[-1] if solution.paths is not None else np.full(paths, np.nan)
    return {
        "seed_loss": variables["loss"],
        "seed_C_diagonal": np.diag(variables["C"]),
        "seed_C_waiting": variables["C"][
            :, [k - problem.prefix_steps for k in problem.waiting_steps]
        ],
        "seed_chi": variables["chi"],
        "seed_replica_distance": variables["replica_distance"],
        "seed_final_stability": final,
    }


def _pair_attributes(pairs: list[ReplicaPair | None], seconds: float) -> dict:
    """How the replica-pair iterations ended (replica_pair), for the artifact's attributes."""
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


def solve_dmft(
    point: dict,
    *,
    paths: int = 10000,
    seed: int = 0,
    max_iterations: int = 100,
    tolerance: float = 1e-6,
    solver_seeds: int = 1,
) -> xr.Dataset:
    """Solve the discrete DMFT of a resolved grid point; return it as an xarray Dataset.

    ``point`` comes from sgdnoise.config.resolve_point. ``paths`` Monte Carlo paths of the
    effective sample per solver seed; ``solver_seeds`` independent draws (seeded from
    ``seed``) give the mean and the standard errors X_stderr. The iteration stops when
    the change per iteration (largest change of C, R, m relative to their largest entry)
    is below ``tolerance``, or after ``max_iterations`` (status not_converged, with a
    RuntimeWarning), or on a divergence (status diverged, with a RuntimeWarning).

    Cost: dominated by the per-path triangular inverses of M_R, ~(active steps)^3 per
    path and iteration; torch.get_num_threads() sets the number of coarse-grained worker
    threads for them. The first iterations use a quarter of the paths (fixed_point).

    Dims: ``step`` k = 0..T (coordinate ``time`` = lr k), ``step2`` (second time of C, R,
    M_C, M_R; ``time2``), ``t_w`` (waiting times of chi; ``waiting_step`` k_w), and
    ``solver_seed`` / ``iteration`` for the diagnostics ``change`` and ``iterations`` and
    for the per-seed ``seed_loss``, ``seed_C_diagonal`` (C(t, t)), ``seed_C_waiting``
    (C(t, t_w)) and ``seed_chi`` that the FDT fit resamples (analysis.dmft_fits).
    Time is in units of lr x steps; C, chi, m and the loss per sample are dimensionless;
    R, nu and the discrete kernels M_C, M_R (which enter the equations multiplied by lr)
    are per unit time. Attributes: status, iterations, paths, seeds, tolerance,
    final_change, wall_seconds, the point's config (JSON), kink_band and kink_fraction (the
    share of (path, step) pairs within kink_band of kappa, whose side of the kink was kept
    from the previous iteration), inverse_precision, field_sampling (how the Gaussian field
    of the effective sample is drawn: "response" for gd, "cholesky" otherwise; fixed_point),
    gd_prefix_steps (run.init gd_minimum: the GD steps solved before the run, not reported),
    replica_pair_status, replica_pair_iterations and replica_pair_seconds (the same-init
    pair of each seed that gives ``replica_distance``: theory.replica_pair).

    Margins: ``seed_final_stability`` (solver_seed, path) holds the stability of every
    path at the last step, the DMFT's distribution of the final stabilities h_mu.
    """
    problem = problem_from_point(point)
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
    statuses = [solution.status for solution in solutions]
    status = _overall_status(statuses)
    if status != CONVERGED:
        warnings.warn(
            f"DMFT solve {status} (per seed: {statuses}; tolerance {tolerance}, "
            f"max_iterations {max_iterations})",
            RuntimeWarning,
            stacklevel=2,
        )
    unconverged_pairs = [pair for pair in pairs if pair is not None and not pair.converged]
    if unconverged_pairs:
        warnings.warn(
            f"DMFT replica pair not_converged in {len(unconverged_pairs)} of {solver_seeds} "
            f"seeds (tolerance {tolerance}, max_iterations {max_iterations}): "
            "replica_distance is not reliable",
            RuntimeWarning,
            stacklevel=2,
        )

    steps = np.arange(problem.run_steps + 1)
    coords = {
        "step": ("step", steps, {"long_name": "step index k", "units": "1"}),
        "time": ("step", problem.lr * steps, {"long_name": "time t = lr k", "units": "time"}),
        "step2": ("step2", steps, {"long_name": "second step index l", "units": "1"}),
        "time2": ("step2", problem.lr * steps, {"long_name": "second time lr l", "units": "time"}),
        "t_w": (
            "t_w",
            np.array(problem.waiting_times, dtype=float),
            {"long_name": "waiting time t_w", "units": "time"},
        ),
        "waiting_step": (
            "t_w",
            np.array(problem.waiting_steps, dtype=np.int64) - problem.prefix_steps,
            {"long_name": "waiting step k_w = round(t_w / lr)", "units": "1"},
        ),
        "solver_seed": (
            "solver_seed",
            np.arange(solver_seeds),
            {"long_name": "index of the independent solver seed", "units": "1"},
        ),
    }
    data_vars = {}
    for name in per_seed[0]:
        stack = np.stack([variables[name] for variables in per_seed])
        units, long_name = VARIABLE_METADATA[name]
        data_vars[name] = (DIMS[name], stack.mean(axis=0), {"units": units, "long_name": long_name})
        if solver_seeds > 1:
            stderr = stack.std(axis=0, ddof=1) / np.sqrt(solver_seeds)
            data_vars[f"{name}_stderr"] = (
                DIMS[name],
                stderr,
                {"units": units, "long_name": f"standard error over solver seeds of {name}"},
            )
    per_seed_fdt = [
        _resampled_variables_of_seed(problem, variables, solution, paths)
        for variables, solution in zip(per_seed, solutions, strict=True)
    ]
    for name in per_seed_fdt[0]:
        units, long_name = VARIABLE_METADATA[name]
        stack = np.stack([variables[name] for variables in per_seed_fdt])
        data_vars[name] = (DIMS[name], stack, {"units": units, "long_name": long_name})
    longest = max(len(solution.changes) for solution in solutions)
    changes = np.full((solver_seeds, max(longest, 1)), np.nan)
    for index, solution in enumerate(solutions):
        changes[index, : len(solution.changes)] = solution.changes
    data_vars["change"] = (
        ("solver_seed", "iteration"),
        changes,
        {"units": "1", "long_name": "change per iteration (largest of C, R, m, relative)"},
    )
    data_vars["iterations"] = (
        ("solver_seed",),
        np.array([len(solution.changes) for solution in solutions], dtype=np.int64),
        {"units": "1", "long_name": "fixed-point iterations done"},
    )

    final_changes = [solution.changes[-1] if solution.changes else np.nan for solution in solutions]
    attrs = {
        "status": status,
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
        "method": (
            "discrete-time DMFT (docs/physics.md A8), fixed-point iteration, exact per-path M_R"
        ),
        "config": canonical_json(point),
    }
    failed = [s.failed_step for s in solutions if s.failed_step is not None]
    if failed:
        attrs["failed_step"] = int(min(failed))
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)
