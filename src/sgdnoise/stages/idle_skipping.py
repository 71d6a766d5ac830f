"""Minibatch SGD of the unconstrained perceptron, jumping over the steps that do nothing.

With a margin loss (hinge or square hinge: v'(h) = 0 for h >= kappa), no constraint
and no ridge, a step whose batch holds no sample with a non-zero loss derivative leaves
the weights exactly unchanged: an idle step. Late in training nearly every step is
idle (paper B's perceptron at P = 16384 takes ~10^7 steps of which ~10^4 move the
weights), so the step-by-step engine spends its time on steps that change nothing.

This runner makes the same trajectory without visiting idle steps one by one:

- the batches are the engine's, drawn from the same counter-based stream a block of
  steps at a time (``MinibatchSelection.draw_range``);
- for a chunk of upcoming steps it computes, in one batched product, the stabilities of
  every selected sample at the current weights; every step before the first one whose
  batch holds a violated sample is idle (the weights do not change in between, so those
  stabilities are the ones the engine would see);
- it applies that step's update with the engine's formula (w <- w - lr (1/B)
  sum_b v'(h_b) y_b x_b / sqrt(N)) and records the step as the replica's last move.

Zero-loss checks (at multiples of run.check_every, on the weights before the step),
recordings (before the step) and the exact stopping time t* = lr (last move + 1) are
those of the engine, so the run artifact is the same up to floating-point rounding in
the stabilities used for the idle test. Steps between two events (a record step, a
check, the budget) form a window; the replicas advance through it at their own pace.
The cost is O(B N) per idle step in batched products, plus a few tensor operations per
weight update.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from sgdnoise.dynamics.perceptron import PerceptronProblem, PerceptronState
from sgdnoise.dynamics.selection import MinibatchSelection
from sgdnoise.observables.perceptron import margin_observables
from sgdnoise.stages.recording import stopping_time

LONGEST_WINDOW = 1 << 16  # steps whose batches are drawn at once (bounds memory)
CHUNK_ELEMENTS = 1 << 21  # pattern entries gathered per round (R x chunk x B x N)


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
    record_steps: np.ndarray,
    total_steps: int,
    bar: tqdm,
) -> tuple[PerceptronState, int]:
    """Run the point to its stop or budget; record and book-keep as the engine does.

    ``recorder`` and ``book`` are the runner's Recorder and ReplicaBook (stages.train).
    Returns the replicas still training at the budget and the index of the first
    record not yet taken (the caller repeats the final weights for those).
    """
    run, optimizer = config["run"], config["optimizer"]
    lr, batch_size = optimizer["lr"], optimizer["batch_size"]
    selection = MinibatchSelection(batch_size, problem.P, run["seed"], state.weights.device)
    stop_on_zero = run["stop"] == "zero_loss"
    tolerance, check_every = run["tolerance"], run["check_every"]
    next_record, step = 0, 0
    while True:
        while next_record < len(record_steps) and record_steps[next_record] == step:
            snapshot = book.weights.clone()
            snapshot[state.replica_ids] = state.weights
            recorder.record(snapshot)
            next_record += 1
        if state.weights.shape[0] == 0 or step == total_steps:
            return state, next_record
        if stop_on_zero and step % check_every == 0:
            loss = margin_observables(
                problem, state.weights, state.reference, state.replica_ids, 0.0
            )["train_loss"]
            done = loss <= tolerance
            if bool(done.any()):
                ids = state.replica_ids[done]
                t_star = stopping_time(lr, book.last_moved[ids.cpu().numpy()], step, tolerance)
                book.freeze(ids, state.weights[done], "completed", step, lr, t_star)
                state = state.subset(~done)
                continue
        stop = min(total_steps, step + LONGEST_WINDOW)
        if next_record < len(record_steps):
            stop = min(stop, int(record_steps[next_record]))
        if stop_on_zero:
            stop = min(stop, _next_multiple(step, check_every))
        state = _advance(problem, state, selection, lr, book, step, stop)
        bar.update(stop - step)
        step = stop


def _advance(
    problem: PerceptronProblem,
    state: PerceptronState,
    selection: MinibatchSelection,
    lr: float,
    book,
    start: int,
    stop: int,
) -> PerceptronState:
    """Take steps start .. stop - 1 for every replica; freeze replicas that diverge."""
    device = state.weights.device
    length = stop - start
    ids = state.replica_ids
    batches = selection.draw_range(start, stop, ids.tolist())  # (R, length, B)
    replicas, batch_size = batches.shape[0], batches.shape[-1]
    patterns = problem.patterns_of(ids)
    weights = state.weights.clone()
    position = torch.zeros(replicas, dtype=torch.long, device=device)  # next step, relative
    last_moved = torch.as_tensor(book.last_moved[ids.cpu().numpy()], device=device)
    alive = torch.ones(replicas, dtype=torch.bool, device=device)
    longest_chunk = max(4, CHUNK_ELEMENTS // (replicas * batch_size * problem.N))
    chunk = 4
    while True:
        rows = ((position < length) & alive).nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        span = min(chunk, length - int(position[rows].min()))
        offsets = position[rows].unsqueeze(1) + torch.arange(span, device=device)
        inside = offsets < length
        chosen = batches[rows.unsqueeze(1), offsets.clamp(max=length - 1)]  # (r, span, B)
        if patterns.dim() == 2:
            selected = patterns[chosen]
        else:
            selected = patterns[rows.view(-1, 1, 1), chosen]  # (r, span, B, N)
        shifted = weights[rows] if state.reference is None else weights[rows] - state.reference[rows]
        h = torch.einsum("rsbn,rn->rsb", selected, shifted)
        moving = (problem.loss.derivative(h) != 0).any(-1) & inside  # (r, span)
        found = moving.any(1)
        first = moving.to(torch.int8).argmax(1)
        position[rows[~found]] += span
        if bool(found.any()):
            movers, at = rows[found], first[found]
            batch = selected[found, at]  # (m, B, N): the engine's step_patterns
            origin = weights[movers] if state.reference is None else (
                weights[movers] - state.reference[movers]
            )
            coefficient = problem.loss.derivative(torch.einsum("rkn,rn->rk", batch, origin))
            gradient = (1.0 / batch_size) * torch.einsum("rkn,rk->rn", batch, coefficient)
            weights[movers] = weights[movers] + -lr * gradient
            last_moved[movers] = start + position[movers] + at
            position[movers] += at + 1
            bad = ~torch.isfinite(weights[movers]).all(-1)
            if bool(bad.any()):
                broken = movers[bad]
                alive[broken] = False
                for row in broken.tolist():
                    book.freeze(ids[row : row + 1], weights[row : row + 1], "diverged",
                                start + int(position[row]), lr, None)
            chunk = max(4, min(longest_chunk, 2 * int(at.max() + 1)))
        else:
            chunk = min(longest_chunk, 2 * chunk)
    book.last_moved[ids.cpu().numpy()] = last_moved.cpu().numpy()
    advanced = PerceptronState(weights, state.reference, None, ids, stop)
    return advanced if bool(alive.all()) else advanced.subset(alive)
