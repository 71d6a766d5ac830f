"""Selection paths s^k in {0, 1} of the effective sample (docs/physics.md A3), one per DMFT path.

The effective sample of the DMFT carries an independent copy of the simulator's selection
process; the selection used by step k is s^k:

- gd: s^k = 1;
- sgd: s^k i.i.d. Bernoulli(b);
- persistent_sgd: a two-state Markov chain, P(0 -> 1) = lr / tau, P(1 -> 0) =
  (1 - b) lr / (b tau), started stationary, s^0 ~ Bernoulli(b). At tau = lr / b both
  transition thresholds equal b and the chain is sgd draw for draw (same uniforms).
"""

from __future__ import annotations

import numpy as np

from sgdnoise.theory.problem import DmftProblem


def draw_selection_paths(problem: DmftProblem, paths: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean selections of shape (T + 1, paths): entry [k, p] is s^k of path p.

    The gd_minimum prefix (problem.prefix_steps) selects every sample; the run's selection
    process starts after it (persistent SGD: stationary at the run's first step).
    """
    shape = (problem.steps + 1, paths)
    selected = np.ones(shape, dtype=bool)
    if problem.batch_fraction == 1.0:  # gd, langevin (and sgd at b = 1)
        return selected
    run = selected[problem.prefix_steps :]
    uniforms = rng.random(run.shape)
    b = problem.batch_fraction
    if problem.selection == "sgd":
        run[:] = uniforms < b
        return selected
    switch_on = problem.lr / problem.persistence
    stay_on = 1.0 - (1.0 - b) * problem.lr / (b * problem.persistence)
    run[0] = uniforms[0] < b
    for k in range(1, run.shape[0]):
        run[k] = uniforms[k] < np.where(run[k - 1], stay_on, switch_on)
    return selected
