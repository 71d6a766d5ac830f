"""Minibatch SGD of the unconstrained perceptron, jumping over the steps that do nothing.

With a margin loss (hinge or square hinge: v'(h) = 0 for h >= kappa), no constraint
and no ridge, a step whose batch holds no violated sample (h < kappa) leaves the
weights exactly unchanged: an idle step. Late in training nearly every step is idle
(paper B's perceptron at P = 16384 takes ~10^6 steps of which ~10^3 move the weights),
so the step-by-step engine spends its time on steps that change nothing. Advancing
by windows makes the SAME trajectory without paying for idle steps one by one:

- batches: the engine's, drawn from the same counter-based stream a block of steps at a
  time (``MinibatchSelection.draw_range``);
- scan: for a block of upcoming steps of one replica, the stabilities of the selected
  samples at the current weights are computed at once (from the gathered patterns, or
  by looking them up in all P stabilities when the block is long); every step before
  the first one whose batch holds a violated sample is idle, since the weights do not
  change in between;
- update: that step gets the engine's update, computed as the engine computes it,
  w <- w - lr (1/B) sum_b v'(h_b) y_b x_b / sqrt(N), and becomes the replica's last
  move; the scan resumes after it. The block length adapts to about one update per
  block.

Zero-loss checks (at multiples of run.check_every, on the weights before the step),
recordings (before the step) and the exact stopping time t* = lr (last move + 1) are
the shared loop's (stages.runner), as with the engine, so the run artifact is the
engine's up to floating-point rounding in the stabilities used for the idle test
(tested: same t*, weights to 1e-12). Steps between two events (a record step, a check,
the budget) form a window that each replica crosses on its own. Cost: O(B N)
arithmetic per idle step in large array operations, and a few small array operations
per weight update.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from sgdnoise.config.point import PointConfig
from sgdnoise.dynamics.perceptron import PerceptronProblem, PerceptronState
from sgdnoise.dynamics.selection import MinibatchSelection
from sgdnoise.stages.runner import Outcome

LONGEST_WINDOW = 1 << 16  # steps whose batches are drawn at once (bounds memory)
CACHED_ELEMENTS = 1 << 20  # pattern entries cached per block (span x B x N)
GATHER_COST = 1  # measured: a gathered pattern costs about one row of a dense product


def applies(config: PointConfig) -> bool:
    """Whether a resolved perceptron point can skip idle steps (minibatch SGD, no constraint)."""
    return (
        config.model.kind == "perceptron"
        and config.optimizer.kind == "minibatch_sgd"
        and config.model.constraint == "none"
    )


def skipping_idle_steps(
    config: PointConfig, problem: PerceptronProblem, device: torch.device
) -> Callable[[PerceptronState, int, int], tuple[PerceptronState, Outcome]]:
    """The ``advance`` of a point that applies: a window of steps, skipping idle ones.

    The shared loop (stages.runner) ends each window at the next record, the next
    zero-loss check or the budget (at most LONGEST_WINDOW steps): each replica crosses
    it on its own.
    """
    run, optimizer = config.run, config.optimizer
    selection = MinibatchSelection(optimizer.batch_size, problem.P, run.seed, device)
    patterns = problem.patterns.detach().cpu().numpy()  # the scan runs on the host

    def advance(state: PerceptronState, start: int, stop: int) -> tuple[PerceptronState, Outcome]:
        return _advance(problem, patterns, state, selection, optimizer.lr, start, stop)

    return advance


def _advance(
    problem: PerceptronProblem,
    patterns: np.ndarray,
    state: PerceptronState,
    selection: MinibatchSelection,
    lr: float,
    start: int,
    stop: int,
) -> tuple[PerceptronState, Outcome]:
    """Take steps start .. stop - 1 for every replica; report last moves and divergences.

    ``patterns``: the training patterns y x / sqrt(N) as a host array (problem.patterns).
    A replica whose weights turn non-finite stops there (its weights stay non-finite).
    """
    ids = state.replica_ids
    batches = selection.draw_range(start, stop, ids.tolist()).cpu().numpy()  # (R, L, B)
    rows_of = (lambda r: patterns[r]) if problem.per_replica else (lambda r: patterns)
    weights = state.weights.clone()
    last_moved, nonfinite_after = [], []
    for row, replica in enumerate(ids.tolist()):
        reference = None if state.reference is None else state.reference[row]
        moved, last, broken_at = _advance_replica(
            rows_of(replica), batches[row], weights[row], reference, problem, lr
        )
        weights[row] = moved
        last_moved.append(start + last if last >= 0 else -1)
        nonfinite_after.append(start + broken_at + 1 if broken_at >= 0 else -1)
    outcome = Outcome(
        last_moved=torch.tensor(last_moved, dtype=torch.long, device=ids.device),
        nonfinite_after=torch.tensor(nonfinite_after, dtype=torch.long, device=ids.device),
    )
    return PerceptronState(weights, state.reference, None, ids, stop), outcome


def _block_stabilities(
    patterns: np.ndarray,
    chosen: np.ndarray,
    cached: np.ndarray | None,
    shifted: np.ndarray,
    begin: int,
) -> np.ndarray:
    """Stabilities (k - begin, B) of the block's selected samples from step ``begin`` on.

    From the gathered patterns ``cached`` (k, B, N), or, for a long block (cached None),
    by looking them up in the stabilities of all P samples.
    """
    if cached is None:
        return (patterns @ shifted)[chosen[begin:]]
    return cached[begin:] @ shifted


def _advance_replica(
    patterns: np.ndarray,
    batches: np.ndarray,
    weights: torch.Tensor,
    reference: torch.Tensor | None,
    problem: PerceptronProblem,
    lr: float,
) -> tuple[torch.Tensor, int, int]:
    """One replica through one window: its weights, last move and divergence step (-1: none).

    ``patterns`` (P, N): the replica's y x / sqrt(N); ``batches`` (L, B): its batches.
    """
    length, batch_size = batches.shape
    samples, features = patterns.shape
    kappa = problem.loss.kappa
    longest_cached = max(16, CACHED_ELEMENTS // (batch_size * features))

    def displacement(w: torch.Tensor) -> torch.Tensor:
        return w if reference is None else w - reference

    shifted = displacement(weights).detach().cpu().numpy()
    position, span, last = 0, 16, -1
    while position < length:
        end = min(position + span, length)
        chosen = batches[position:end]  # (k, B)
        look_up = (end - position) * batch_size * GATHER_COST >= samples
        cached = None if look_up else patterns[chosen]  # (k, B, N)

        h = _block_stabilities(patterns, chosen, cached, shifted, 0)
        offset, moves = 0, 0
        while True:
            violated = (h < kappa).any(axis=1)
            if not violated.any():
                break
            at = offset + int(violated.argmax())
            batch = torch.as_tensor(patterns[chosen[at]], device=weights.device).unsqueeze(0)
            origin = displacement(weights).unsqueeze(0)
            coefficient = problem.loss.derivative(torch.einsum("rkn,rn->rk", batch, origin))
            gradient = (1.0 / batch_size) * torch.einsum("rkn,rk->rn", batch, coefficient)
            weights = weights + -lr * gradient[0]
            last, moves = position + at, moves + 1
            if not bool(torch.isfinite(weights).all()):
                return weights, last, position + at
            shifted = displacement(weights).detach().cpu().numpy()
            offset = at + 1
            if offset == len(chosen):
                break
            h = _block_stabilities(patterns, chosen, cached, shifted, offset)
        position = end
        if moves == 0:
            span = min(LONGEST_WINDOW, 2 * span)
        elif moves > 2:
            span = max(16, span // 2)
        if span * batch_size * GATHER_COST < samples:
            span = min(span, longest_cached)
    return weights, last, -1
