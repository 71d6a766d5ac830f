"""Minibatch SGD of the unconstrained perceptron, jumping over the steps that do nothing.

With a margin loss (hinge or square hinge: v'(h) = 0 for h >= kappa), no constraint
and no ridge, a step whose batch holds no violated sample (h < kappa) leaves the
weights exactly unchanged: an idle step. Late in training nearly every step is idle
(paper B's perceptron at P = 16384 takes ~10^6 steps of which ~10^3 move the weights),
so the step-by-step engine spends its time on steps that change nothing. This runner
makes the SAME trajectory without paying for idle steps one by one:

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
the engine's, so the run artifact is the engine's up to floating-point rounding in the
stabilities used for the idle test (tested: same t*, weights to 1e-12). Steps between
two events (a record step, a check, the budget) form a window that each replica crosses
on its own. Cost: O(B N) arithmetic per idle step in large array operations, and a few
small array operations per weight update.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm import tqdm

from sgdnoise.dynamics.perceptron import PerceptronProblem, PerceptronState
from sgdnoise.dynamics.selection import MinibatchSelection

LONGEST_WINDOW = 1 << 16  # steps whose batches are drawn at once (bounds memory)
CACHED_ELEMENTS = 1 << 20  # pattern entries cached per block (span x B x N)
GATHER_COST = 1  # measured: a gathered pattern costs about one row of a dense product


def applies(config: dict) -> bool:
    """Whether a resolved perceptron point can skip idle steps (minibatch SGD, no constraint)."""
    return (
        config["model"]["kind"] == "perceptron"
        and config["optimizer"]["kind"] == "minibatch_sgd"
        and config["model"]["constraint"] == "none"
    )


def _next_multiple(step: int, every: int) -> int:
    return (step // every + 1) * every


def train_skipping_idle_steps(
    config: dict,
    problem: PerceptronProblem,
    state: PerceptronState,
    recorder,
    book,
    total_steps: int,
    bar: tqdm,
    first_step: int = 0,
    save: Callable[[int, PerceptronState], None] | None = None,
) -> PerceptronState:
    """Run the point to its stop or budget; record and book-keep as the engine does.

    ``recorder`` and ``book`` are the runner's Recorder (with its RecordingSchedule) and
    ReplicaBook (stages.train); a resumed run starts at ``first_step``.
    ``save(step, state)`` is offered the state at every window boundary (the runner's
    checkpoint). Returns the replicas still training at the budget.
    """
    run, optimizer = config["run"], config["optimizer"]
    lr = optimizer["lr"]
    selection = MinibatchSelection(
        optimizer["batch_size"], problem.P, run["seed"], state.weights.device
    )
    patterns = problem.patterns.detach().cpu().numpy()  # the scan runs on the host
    stop_on_zero = run["stop"] == "zero_loss"
    tolerance, check_every = run["tolerance"], run["check_every"]
    step = first_step
    while True:
        if save is not None:
            save(step, state)
        recorder.record_if_due(step, lambda: book.with_active(state))  # noqa: B023
        if state.weights.shape[0] == 0 or step == total_steps:
            return state
        if stop_on_zero and step % check_every == 0:
            training = state.weights.shape[0]
            state = book.stop_at_zero_loss(problem, state, step, lr, tolerance)
            if state.weights.shape[0] < training:  # some stopped: this step again
                continue
        stop = min(total_steps, step + LONGEST_WINDOW)
        next_record = recorder.schedule.next_step()
        if next_record is not None:
            stop = min(stop, next_record)
        if stop_on_zero:
            stop = min(stop, _next_multiple(step, check_every))
        state = _advance(problem, patterns, state, selection, lr, book, step, stop)
        bar.update(stop - step)
        step = stop


def _advance(
    problem: PerceptronProblem,
    patterns: np.ndarray,
    state: PerceptronState,
    selection: MinibatchSelection,
    lr: float,
    book,
    start: int,
    stop: int,
) -> PerceptronState:
    """Take steps start .. stop - 1 for every replica; freeze replicas that diverge.

    ``patterns``: the training patterns y x / sqrt(N) as a host array (problem.patterns).
    """
    ids = state.replica_ids
    batches = selection.draw_range(start, stop, ids.tolist()).cpu().numpy()  # (R, L, B)
    rows_of = (lambda r: patterns[r]) if problem.per_replica else (lambda r: patterns)
    weights = state.weights.clone()
    alive = torch.ones(ids.numel(), dtype=torch.bool)
    for row, replica in enumerate(ids.tolist()):
        reference = None if state.reference is None else state.reference[row]
        moved, last, broken_at = _advance_replica(
            rows_of(replica), batches[row], weights[row], reference, problem, lr
        )
        weights[row] = moved
        if last >= 0:
            book.last_moved[replica] = start + last
        if broken_at >= 0:
            alive[row] = False
            book.freeze(
                ids[row : row + 1], moved.unsqueeze(0), "diverged", start + broken_at + 1, lr, None
            )
    advanced = PerceptronState(weights, state.reference, None, ids, stop)
    return advanced if bool(alive.all()) else advanced.subset(alive.to(ids.device))


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
