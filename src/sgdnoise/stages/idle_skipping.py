"""Minibatch SGD of the unconstrained perceptron, jumping over the steps that do nothing.

With a margin loss (hinge or square hinge: v'(h) = 0 for h >= kappa), no constraint
and no ridge, a step whose batch holds no violated sample (h < kappa) leaves the
weights exactly unchanged: an idle step. Late in training nearly every step is idle
(paper B's perceptron at P = 16384 takes ~10^6 steps of which ~10^3 move the weights),
so the step-by-step engine spends its time on steps that change nothing. This runner
makes the SAME trajectory without evaluating idle steps one by one:

- Batches: the engine's, drawn from the same counter-based stream a block of steps at
  a time (``MinibatchSelection.draw_range``).
- Candidate list (a Verlet neighbour list in molecular-dynamics terms): at a rebuild,
  with displacement u_ref = w - w0, every stability h_ref = u_ref . p_mu is computed
  (p_mu = y_mu x_mu / sqrt(N)), and a skin s is chosen (the CANDIDATE_FRACTION quantile
  of (h_ref - kappa) / |p_mu|). Since |h - h_ref| <= |u - u_ref| |p_mu|, a sample with
  h_ref - kappa > s |p_mu| is certainly satisfied while the drift |u - u_ref| stays
  below s: only the candidates (h_ref - kappa <= s |p_mu|) can be violated. The list is
  rebuilt when the drift reaches s / 2 (a safety factor far above rounding errors).
  While more than that fraction of samples is violated (early training), every
  selected sample is a candidate and a rebuild is retried every P / B steps.
- Scan: for a chunk of upcoming steps, the selected samples are looked up in the list;
  only the candidates' exact stabilities are computed; the first step whose batch holds
  a violated sample gets the engine's update, w <- w - lr (1/B) sum_b v'(h_b) p_b, and
  becomes the replica's last move. Every step before it is idle.

Zero-loss checks (at multiples of run.check_every, on the weights before the step),
recordings (before the step) and the exact stopping time t* = lr (last move + 1) are
the engine's, so the run artifact is the same up to floating-point rounding in the
stabilities used for the idle test (tested: identical weights and t*). Steps between
two events (a record step, a check, the budget) form a window; the replicas advance
through it at their own pace. Cost: a few table look-ups per idle step, O(N) per
candidate met, O(P N) per rebuild, a few tensor operations per weight update.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm import tqdm

from sgdnoise.dynamics.perceptron import PerceptronProblem, PerceptronState
from sgdnoise.dynamics.selection import MinibatchSelection
from sgdnoise.observables.perceptron import margin_observables
from sgdnoise.stages.recording import stopping_time

LONGEST_WINDOW = 1 << 16  # steps whose batches are drawn at once (bounds memory)
CACHED_ELEMENTS = 1 << 21  # pattern entries cached per block (R x span x B x N)
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
    record_steps: np.ndarray,
    total_steps: int,
    bar: tqdm,
    first_step: int = 0,
    next_record: int = 0,
    save: Callable[[int, PerceptronState, int], None] | None = None,
) -> tuple[PerceptronState, int]:
    """Run the point to its stop or budget; record and book-keep as the engine does.

    ``recorder`` and ``book`` are the runner's Recorder and ReplicaBook (stages.train);
    a resumed run starts at ``first_step`` with records from ``next_record`` on.
    ``save(step, state, next_record)`` is offered the state at every window boundary
    (the runner's checkpoint). Returns the replicas still training at the budget and
    the index of the first record not yet taken (the caller repeats the final weights
    for those).
    """
    run, optimizer = config["run"], config["optimizer"]
    lr = optimizer["lr"]
    selection = MinibatchSelection(
        optimizer["batch_size"], problem.P, run["seed"], state.weights.device
    )
    stop_on_zero = run["stop"] == "zero_loss"
    tolerance, check_every = run["tolerance"], run["check_every"]
    step = first_step
    while True:
        if save is not None:
            save(step, state, next_record)
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


def _batch_patterns(
    problem: PerceptronProblem, replica_ids: torch.Tensor, chosen: torch.Tensor
) -> torch.Tensor:
    """Patterns of the chosen samples: indices (r, ..., B) -> (r, ..., B, N).

    ``replica_ids`` (r,) are global replica indices (rows of per-replica patterns);
    gathered by one index_select on the flattened training sets (no copy of a set).
    """
    N = problem.N
    if not problem.per_replica:
        return problem.patterns.index_select(0, chosen.flatten()).view(*chosen.shape, N)
    rows = replica_ids.view(-1, *([1] * (chosen.dim() - 1))) * problem.P + chosen
    flat = problem.patterns.view(-1, N)
    return flat.index_select(0, rows.flatten()).view(*chosen.shape, N)


def _all_stabilities(
    problem: PerceptronProblem, shifted: torch.Tensor, replica_ids: torch.Tensor
) -> torch.Tensor:
    """Stabilities of every training sample, (r, P), for displacements w - w0 (r, N).

    Per-replica data: one batched product over all the point's replicas (rows of
    replicas not asked for are zero), so no training set is copied.
    """
    if not problem.per_replica:
        return shifted @ problem.patterns.T
    if replica_ids.numel() == problem.patterns.shape[0]:
        return torch.bmm(problem.patterns, shifted.unsqueeze(-1)).squeeze(-1)
    padded = shifted.new_zeros(problem.patterns.shape[0], shifted.shape[-1])
    padded[replica_ids] = shifted
    return torch.bmm(problem.patterns, padded.unsqueeze(-1)).squeeze(-1)[replica_ids]


def _advance(
    problem: PerceptronProblem,
    state: PerceptronState,
    selection: MinibatchSelection,
    lr: float,
    book,
    start: int,
    stop: int,
) -> PerceptronState:
    """Take steps start .. stop - 1 for every replica; freeze replicas that diverge.

    The window is cut into blocks of ``span`` upcoming steps per replica. In a block,
    the selected samples' patterns are gathered once (or, for long blocks, every
    stability is computed and looked up); then rounds alternate between finding each
    replica's first step with a violated sample (stabilities recomputed on the cached
    patterns at the current weights) and applying that step's update. ``span`` adapts
    so that a block holds about one update per replica.
    """
    device = state.weights.device
    length = stop - start
    ids = state.replica_ids
    batches = selection.draw_range(start, stop, ids.tolist())  # (R, length, B)
    replicas, batch_size = batches.shape[0], batches.shape[-1]
    weights = state.weights.clone()
    position = torch.zeros(replicas, dtype=torch.long, device=device)  # next step, relative
    last_moved = torch.as_tensor(book.last_moved[ids.cpu().numpy()], device=device)
    alive = torch.ones(replicas, dtype=torch.bool, device=device)
    longest_cached = max(16, CACHED_ELEMENTS // (replicas * batch_size * problem.N))
    span = 16

    def displacement(rows: torch.Tensor) -> torch.Tensor:
        return weights[rows] if state.reference is None else weights[rows] - state.reference[rows]

    while True:
        rows = ((position < length) & alive).nonzero().squeeze(1)
        if rows.numel() == 0:
            break
        span = min(span, length - int(position[rows].min()))
        offsets = position[rows].unsqueeze(1) + torch.arange(span, device=device)
        inside = offsets < length
        chosen = batches[rows.unsqueeze(1), offsets.clamp(max=length - 1)]  # (r, span, B)
        look_up = span * batch_size * GATHER_COST >= problem.P
        cached = None if look_up else _batch_patterns(problem, ids[rows], chosen)
        pointer = torch.zeros(rows.numel(), dtype=torch.long, device=device)  # in the block
        steps = torch.arange(span, device=device)
        moves = 0
        while True:
            busy = ((pointer < span) & alive[rows]).nonzero().squeeze(1)
            if busy.numel() == 0:
                break
            shifted = displacement(rows[busy])
            if look_up:
                every = _all_stabilities(problem, shifted, ids[rows[busy]])
                h = every.gather(1, chosen[busy].flatten(1)).view(busy.numel(), span, -1)
            else:
                h = torch.einsum("rsbn,rn->rsb", cached[busy], shifted)
            moving = (problem.loss.derivative(h) != 0).any(-1) & inside[busy]
            moving &= steps >= pointer[busy].unsqueeze(1)
            found = moving.any(1)
            pointer[busy[~found]] = span
            if not bool(found.any()):
                continue
            local, at = busy[found], moving[found].to(torch.int8).argmax(1)
            movers = rows[local]
            batch = _batch_patterns(problem, ids[movers], chosen[local, at])  # (m, B, N)
            coefficient = problem.loss.derivative(
                torch.einsum("rkn,rn->rk", batch, displacement(movers))
            )
            gradient = (1.0 / batch_size) * torch.einsum("rkn,rk->rn", batch, coefficient)
            weights[movers] = weights[movers] + -lr * gradient
            last_moved[movers] = start + position[movers] + at
            pointer[local] = at + 1
            moves += movers.numel()
            bad = ~torch.isfinite(weights[movers]).all(-1)
            for broken in movers[bad].tolist():
                alive[broken] = False
                book.freeze(
                    ids[broken : broken + 1],
                    weights[broken : broken + 1],
                    "diverged",
                    start + int(position[broken]) + 1,
                    lr,
                    None,
                )
        position[rows] += torch.minimum(pointer, (length - position[rows]))
        if moves <= rows.numel() // 2:
            span = min(LONGEST_WINDOW, 2 * span)
        elif moves > 2 * rows.numel():
            span = max(16, span // 2)
        if not look_up:
            span = (
                min(span, longest_cached) if span * batch_size * GATHER_COST < problem.P else span
            )
    book.last_moved[ids.cpu().numpy()] = last_moved.cpu().numpy()
    advanced = PerceptronState(weights, state.reference, None, ids, stop)
    return advanced if bool(alive.all()) else advanced.subset(alive)
