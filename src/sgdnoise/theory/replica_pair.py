"""Two replicas on one DMFT solution: the replica distance d(t) (docs/physics.md A6, A8).

Replicas a and b share the data and w^0 and draw independent selection paths (and
independent Langevin noise). A field on w^b does not move w^a, so the cross-replica
response vanishes and each replica follows the single-replica DMFT (the same C, R, m and
contraction c); the only new function is the cross-correlation C^ab(k, l) = w_a^k . w_b^l / N.
The effective weights are linear in their noises,

    w_a^k = Phi_k w^0 + lr sum_{l < k} R[k, l] (zeta_a^l - mu^l v),   Phi = C[:, 0] / C[0, 0],

with (zeta_a, zeta_b) Gaussian of covariances M_C (each) and M^ab = Delta (P/N) E[f_a f_b^T]
(the Langevin noise 2 T / lr is on the diagonal of M_C only). With the difference kernel
M_d = Delta (P/N) E[(f_a - f_b)(f_a - f_b)^T] (+ 4 T / lr on the diagonal, langevin),

    D = lr^2 R M_d R^T,    C^ab = C - D / 2,    d(k) = |w_a^k - w_b^k|^2 / N = D[k, k],

non-negative by construction. The pair of effective samples (one path p = one sample seen
by both replicas) has fields u_a = s + delta / 2, u_b = s - delta / 2, with the half-sum s
and the difference delta independent (the replicas are exchangeable): s = chol(C - D / 4) z
and delta of covariance D, sampled the way the single-replica solve samples u
(fixed_point.field_sampling):

    cholesky:  delta = chol(D) y      (sgd, persistent_sgd, langevin)
    response:  delta = lr R eta,  eta = sqrt(Delta P/N / n) (F_a - F_b) g
                                        (+ sqrt(4 T / lr) white, langevin)   (gd, gd prefix)

F_a - F_b the previous iteration's force differences and z, y, g, white fixed normals.
Each replica's field then has covariance C exactly (the single-replica solution, not an
estimate from the pair) and the two fields the cross-covariance C^ab. C, R and m stay at
the single-replica solution; only D is iterated, and the iteration is causal (u^k uses the
forces of steps < k) and converges front-wise in time. The response sampling is a smooth
function of the iterate but each path's change feeds every path through the mixing matrix
g, which slows the iteration: hence cholesky wherever C allows it. GD (every sample
selected at every step, no Langevin noise) has F_a = F_b, hence D = 0, delta = 0 and
d = 0 exactly with either sampling.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sgdnoise.theory.discrete_equations import Trajectory
from sgdnoise.theory.effective_process import simulate_paths
from sgdnoise.theory.fixed_point import field_sampling
from sgdnoise.theory.gaussian_sampling import causal_cholesky, response_noise
from sgdnoise.theory.problem import DmftProblem
from sgdnoise.theory.selection_paths import draw_selection_paths

# Each path's difference noise mixes at most MIXING_ELEMENTS / paths force differences
# (float32 matrix of MIXING_ELEMENTS entries, 256 MB; gaussian_sampling.force_groups):
# ~T x paths x min(paths, 6710 at 1e4 paths) flops per iteration. Large, because groups
# mixing only their own forces are small separate ensembles, whose iteration may not converge.
MIXING_ELEMENTS = 1 << 26


@dataclass
class ReplicaPair:
    """The replica distance d (T + 1,) of one solver seed and how its iteration stopped.

    changes: largest change of d per iteration relative to max(d); converged: whether the
    last change fell below the tolerance.
    """

    distance: np.ndarray
    converged: bool
    changes: list[float] = field(default_factory=list)


def difference_kernel_image(
    problem: DmftProblem, response: np.ndarray, force_difference: np.ndarray
) -> np.ndarray:
    """D = lr^2 R M_d R^T (T + 1, T + 1) from the force differences F_a - F_b
    (T + 1, paths) and R (module docstring); its diagonal is the distance d."""
    strict = np.tril(response, -1)
    kicks = strict @ force_difference
    factor = problem.noise_variance * problem.sample_ratio / force_difference.shape[1]
    image = problem.lr**2 * factor * (kicks @ kicks.T)
    if problem.temperature:
        image += 4.0 * problem.lr * problem.temperature * (strict @ strict.T)
    return image


def pair_fields(
    problem: DmftProblem,
    trajectory: Trajectory,
    normals: dict[str, np.ndarray],
    force_difference: np.ndarray | None = None,
    image: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The fields u_a, u_b (T + 1, paths) of the pair: each of covariance C, cross-covariance
    C - D / 2, with D = ``image`` made from ``force_difference`` (difference_kernel_image;
    None: the first iteration, D = 0 and u_a = u_b)."""
    correlation = trajectory.correlation
    if force_difference is None or image is None:
        return (causal_cholesky(correlation) @ normals["sum"],) * 2
    half_sum = causal_cholesky(correlation - image / 4.0) @ normals["sum"]
    if "difference" in normals:  # cholesky sampling
        difference = _difference_factor(image) @ normals["difference"]
    else:
        difference = response_noise(
            trajectory.response,
            problem.lr,
            problem.noise_variance * problem.sample_ratio,
            force_difference,
            normals["mixing"],
            normals["sum"].shape[1],
            normals.get("white"),
            4.0 * problem.temperature / problem.lr,
        )
    return half_sum + difference / 2.0, half_sum - difference / 2.0


def _difference_factor(image: np.ndarray) -> np.ndarray:
    """Causal Cholesky factor of D; its leading steps with d = 0 (the shared w^0 and any gd
    prefix: the replicas have not separated yet) are exactly zero and are left out of the
    factorisation, so the rest factors by LAPACK when it is positive definite."""
    factor = np.zeros_like(image)
    separated = np.flatnonzero(np.diag(image) > 0)
    if separated.size:
        first = int(separated[0])
        factor[first:, first:] = causal_cholesky(image[first:, first:])
    return factor


def solve_replica_pair(
    problem: DmftProblem,
    trajectory: Trajectory,
    paths: int,
    seed: np.random.SeedSequence,
    max_iterations: int,
    tolerance: float,
    sampling: str | None = None,
) -> ReplicaPair:
    """d(t) of a same-init pair on a converged single-replica trajectory (C, R, m, c).

    ``paths`` pairs of effective samples; the random numbers (the selection paths of both
    replicas, the normals of s and delta) come from ``seed`` and are fixed across
    iterations. ``sampling`` ("auto", "response" or "cholesky"; default
    fixed_point.SAMPLING) chooses how delta is sampled (module docstring). Stops when the
    largest change of d, relative to its largest value, is below ``tolerance`` (GD: d = 0
    from the first iteration), or after ``max_iterations`` (converged False).
    """
    rng = np.random.default_rng(seed)
    selections = [draw_selection_paths(problem, paths, rng) for _ in range(2)]
    size = problem.steps + 1
    normals = {"sum": rng.standard_normal((size, paths))}
    if field_sampling(problem, sampling) == "cholesky":
        normals["difference"] = rng.standard_normal((size, paths))
    else:
        mixed = min(paths, max(1, MIXING_ELEMENTS // paths))
        normals["mixing"] = rng.standard_normal((mixed, paths), dtype=np.float32)
        if problem.temperature:
            normals["white"] = rng.standard_normal((size, paths))
    force_difference = image = None
    distance = np.zeros(size)
    changes: list[float] = []
    converged = False
    for _ in range(max_iterations):
        forces = [
            simulate_paths(
                problem, field, trajectory.response, trajectory.magnetisation, selection
            ).force
            for field, selection in zip(
                pair_fields(problem, trajectory, normals, force_difference, image),
                selections,
                strict=True,
            )
        ]
        force_difference = forces[0] - forces[1]
        image = difference_kernel_image(problem, trajectory.response, force_difference)
        new = np.diag(image).copy()
        scale = max(float(np.max(new)), np.finfo(float).tiny)
        changes.append(float(np.max(np.abs(new - distance))) / scale)
        distance = new
        if changes[-1] < tolerance:
            converged = True
            break
    return ReplicaPair(distance, converged, changes)
