"""Stage dmft: the discrete-time DMFT of a grid point as a dmft artifact (docs/physics.md A8).

theory.solve_discrete_dmft returns every solver seed's arrays; this stage averages them
into the artifact the fits and plots read: each variable X is the mean over solver seeds
and, with more than one seed, X_stderr its standard error; the per-seed copies the fits
resample as they do replicas; the iteration diagnostics; coordinates, attributes,
provenance, and units and long names from io.metadata (DMFT_VARIABLES).
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from sgdnoise.analysis.statistics import mean_and_error
from sgdnoise.config.point import PointConfig
from sgdnoise.io.artifact import provenance
from sgdnoise.io.metadata import DMFT_VARIABLES, describe
from sgdnoise.theory.dmft import DmftSolution, solve_discrete_dmft
from sgdnoise.theory.fixed_point import CONVERGED
from sgdnoise.theory.problem import problem_from_point

DIMS = {
    "loss": ("record",),
    "violated_fraction": ("record",),
    "C": ("record", "record2"),
    "R": ("record", "record2"),
    "chi": ("record", "t_w"),
    "nu": ("record",),
    "m": ("record",),
    "M_C": ("record", "record2"),
    "M_R": ("record", "record2"),
    "replica_distance": ("record",),
    "seed_loss": ("solver_seed", "record"),
    "seed_C_diagonal": ("solver_seed", "record"),
    "seed_C_waiting": ("solver_seed", "record", "t_w"),
    "seed_chi": ("solver_seed", "record", "t_w"),
    "seed_replica_distance": ("solver_seed", "record"),
    "seed_final_stability": ("solver_seed", "path"),
    "change": ("solver_seed", "iteration"),
    "iterations": ("solver_seed",),
}


def solve_dmft(
    point: PointConfig,
    *,
    paths: int = 10000,
    seed: int = 0,
    max_iterations: int = 100,
    tolerance: float = 1e-6,
    solver_seeds: int = 1,
) -> xr.Dataset:
    """Solve the discrete DMFT of a resolved grid point; return its dmft artifact.

    ``point`` comes from sgdnoise.config.resolve_point (theory.UnsupportedPointError if
    the DMFT does not cover it). ``paths`` Monte Carlo paths of the effective sample per
    solver seed; ``solver_seeds`` independent draws (seeded from ``seed``) give the mean
    and the standard errors X_stderr. The iteration stops when the change per iteration
    is below ``tolerance``, or after ``max_iterations`` (status not_converged, with a
    RuntimeWarning), or on a divergence (status diverged, with a RuntimeWarning); a
    replica pair that does not converge warns too (theory.solve_discrete_dmft).

    Dims, named as the runs': ``record`` = k = 0..T (every step is a record; coordinates
    ``step`` = k and ``time`` = lr k), ``record2`` (second time of C, R, M_C, M_R;
    ``step2``, ``time2``), ``t_w`` (waiting times of chi; ``waiting_step`` k_w), and
    ``solver_seed`` / ``iteration`` for the diagnostics ``change`` and ``iterations`` and
    for the per-seed ``seed_loss``, ``seed_C_diagonal`` (C(t, t)), ``seed_C_waiting``
    (C(t, t_w)), ``seed_chi`` and ``seed_replica_distance`` that the fits resample
    (analysis.dmft_fits). Margins: ``seed_final_stability`` (solver_seed, path) holds the
    stability of every path at the last step, the DMFT's distribution of the final
    stabilities h_mu. Time is in units of lr x steps; C, chi, m, the replica distance and
    the loss per sample are dimensionless; R, nu and the discrete kernels M_C, M_R (which
    enter the equations multiplied by lr) are per unit time. Attributes: the solver's
    (theory.solve_discrete_dmft) and the provenance of a dmft artifact.
    """
    solution = solve_discrete_dmft(
        problem_from_point(point),
        paths=paths,
        seed=seed,
        max_iterations=max_iterations,
        tolerance=tolerance,
        solver_seeds=solver_seeds,
    )
    _warn_unless_converged(solution, tolerance, max_iterations)
    dataset = xr.Dataset(
        {
            **_seed_means(solution),
            **_resampled_per_seed(solution),
            "change": (DIMS["change"], solution.changes),
            "iterations": (DIMS["iterations"], solution.iterations),
        },
        coords=_coordinates(solution),
        attrs=dict(solution.attributes),
    )
    dataset.attrs.update(provenance("dmft", point))
    return describe(dataset, DMFT_VARIABLES)


def _warn_unless_converged(solution: DmftSolution, tolerance: float, max_iterations: int) -> None:
    """A RuntimeWarning, to the caller of solve_dmft, for a solve or pair that did not converge."""
    status = solution.attributes["status"]
    if status != CONVERGED:
        warnings.warn(
            f"DMFT solve {status} (per seed: {list(solution.statuses)}; tolerance {tolerance}, "
            f"max_iterations {max_iterations})",
            RuntimeWarning,
            stacklevel=3,
        )
    unconverged_pairs = solution.pair_converged.count(False)
    if unconverged_pairs:
        warnings.warn(
            f"DMFT replica pair not_converged in {unconverged_pairs} of "
            f"{len(solution.statuses)} seeds (tolerance {tolerance}, max_iterations "
            f"{max_iterations}): replica_distance is not reliable",
            RuntimeWarning,
            stacklevel=3,
        )


def _seed_means(solution: DmftSolution) -> dict[str, tuple]:
    """Each variable's mean over solver seeds and, with several seeds, its standard error
    (analysis.statistics, as over replicas: a diverged seed, NaN, is left out and the
    artifact's status says so)."""
    seeds = len(solution.statuses)
    variables = {}
    for name, per_seed in solution.seed_variables.items():
        mean, stderr = mean_and_error(per_seed)
        variables[name] = (DIMS[name], mean)
        if seeds > 1:
            variables[f"{name}_stderr"] = (DIMS[name], stderr)
    return variables


def _resampled_per_seed(solution: DmftSolution) -> dict[str, tuple]:
    """Per-seed copies of what the fits resample as they do replicas: the FDT curve's
    inputs, the replica distance and the final stabilities of every path (margins)."""
    per_seed = solution.seed_variables
    correlation = per_seed["C"]
    copies = {
        "seed_loss": per_seed["loss"],
        "seed_C_diagonal": np.diagonal(correlation, axis1=1, axis2=2).copy(),
        "seed_C_waiting": correlation[:, :, solution.run_waiting_steps],
        "seed_chi": per_seed["chi"],
        "seed_replica_distance": per_seed["replica_distance"],
        "seed_final_stability": solution.final_stability,
    }
    return {name: (DIMS[name], values) for name, values in copies.items()}


def _coordinates(solution: DmftSolution) -> dict[str, tuple]:
    """record / step / time, record2 / step2 / time2 (the run's steps: record k is step k),
    t_w / waiting_step, solver_seed."""
    problem = solution.problem
    steps = np.arange(problem.run_steps + 1)
    return {
        "record": ("record", steps),
        "step": ("record", steps),
        "time": ("record", problem.lr * steps),
        "record2": ("record2", steps),
        "step2": ("record2", steps),
        "time2": ("record2", problem.lr * steps),
        "t_w": ("t_w", np.array(problem.waiting_times, dtype=float)),
        "waiting_step": ("t_w", solution.run_waiting_steps),
        "solver_seed": ("solver_seed", np.arange(len(solution.statuses))),
    }
