"""Minibatch SGD of the unconstrained perceptron, event-driven: from one weight update to the next.

Physics. With a margin loss whose force vanishes at and beyond the margin (hinge or
square hinge: v'(h) = 0 for h >= kappa), no constraint and no ridge, the update of a
step, w <- w - lr (1/B) sum_b v'(h_b) x_b (x the pattern rows y x / sqrt(N), h the
stabilities of w - w0, w0 the alpha-trick reference or 0), is zero unless the step's
batch meets the violated set V = {mu : h_mu < kappa}. Between two updates the weights,
hence V, are fixed, and the batches of successive steps are independent and uniform
among the B-subsets of the P samples (dynamics.selection.MinibatchSelection). So, from
any step on:

- the number of idle steps before the next update is geometric, P(G = g) = (1 - p)^g p,
  with p = 1 - C(P - |V|, B) / C(P, B) = 1 - prod_{j<B} (P - |V| - j) / (P - j), the
  probability that a uniform B-subset meets V (p = 1 when P - |V| < B; |V| = 0: never);
- the moving batch is uniform among the B-subsets that meet V: its overlap
  k = |batch & V| follows the hypergeometric law conditioned on k >= 1,
  P(k) proportional to C(|V|, k) C(P - |V|, B - k), then k distinct samples of V and
  B - k distinct samples of its complement, uniformly;
- the update is the step engine's, from the stabilities of all P samples at the
  current weights; after it all P stabilities are recomputed, which gives the new V.

This is the step engine's Markov chain in law, step for step: the same transition
kernel, so the same law of the whole trajectory (t* = lr (last update + 1), the
weights at every recorded step, divergences), but not the same draws. The geometric
law is memoryless, so a window [start, stop) of the shared loop (stages.runner) is
crossed exactly: a next update sampled at or beyond ``stop`` is discarded, and the
next window samples afresh from its own start.

Randomness. Every sampling origin (a replica's window start, or the step after one of
its updates) draws B + 2 uniforms from a torch generator seeded with
derive_seed(seed, "events", replica, origin): the geometric idle count, the overlap k,
then the k positions in V and the B - k in its complement (Floyd's algorithm). The
origins of a replica are distinct steps (increasing within a window; a window's lie in
[start, stop), and an update at stop - 1 leaves the origin ``stop`` to the next
window), so a replica's draws depend neither on the other replicas nor on where a run
was resumed: a run resumed at a window boundary is the uninterrupted run. The draws do
depend on the window boundaries (records, checks), which is why the engine is exact in
law and not draw for draw: stages.idle_skipping is the draw-for-draw fast path.

Where it applies: minibatch_sgd, constraint none (no ridge), hinge or square hinge
(``applies``). Not elsewhere: with a ridge or the sphere every step moves the weights;
with Bernoulli or Markov selection (sgd, persistent_sgd) the batch law differs (the
kernel here is the minibatch one); Langevin and full-batch GD move at every step.

Cost, per replica: per window, O(P N) for the exact stabilities at its start (so a run
resumed at a window boundary is the uninterrupted run) plus O(P) to find V and one
seeded draw; per weight update, O(P) plus B cached columns of the patterns' Gram matrix:
the update dw is a combination of the batch's patterns, so h changes by
sum_b c_b (patterns @ x_b), and the columns patterns @ x_j of the samples that keep
returning to V (late in training a few dozen) are kept (GRAM_BYTES in all, least
recently used dropped); a new column costs O(P N). Every EXACT_EVERY updates, and
before any decision that the loss is zero, the stabilities are recomputed exactly, so
rounding cannot accumulate or stop a replica early. The step engine pays O(B N) per
step; this engine never pays per idle step, and its Python overhead is per update, not
per block of steps. Everything runs on the host in numpy, in the patterns' dtype
(float64 stays float64); the weights and the Outcome go back to ``device``.
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import gammaln

from sgdnoise.config.point import PointConfig
from sgdnoise.dynamics.perceptron import PerceptronProblem, PerceptronState
from sgdnoise.dynamics.random import derive_seed
from sgdnoise.models.losses import MarginLoss
from sgdnoise.stages.runner import Outcome

STREAM = "events"  # the name of the engine's counter-based stream (dynamics.random)
LONGEST_WINDOW = 1 << 40  # a window costs nothing per step: the runner's bound only
GRAM_BYTES = 1 << 29  # cached columns of the patterns' Gram matrix, all replicas (512 MiB)
EXACT_EVERY = 1024  # updates between exact recomputations of every stability
MARGIN_LOSSES = ("hinge", "square_hinge")  # v'(h) = 0 for h >= kappa


def applies(config: PointConfig) -> bool:
    """Whether a resolved point is a chain this engine samples exactly: a perceptron
    under minibatch_sgd with no constraint (so no ridge) and a hinge or square-hinge loss."""
    return (
        config.model.kind == "perceptron"
        and config.optimizer.kind == "minibatch_sgd"
        and config.model.constraint == "none"
        and config.loss.kind in MARGIN_LOSSES
    )


def move_probability(violated: int, samples: int, batch_size: int) -> float:
    """p = 1 - C(P - |V|, B) / C(P, B): the probability that a step's batch meets V.

    ``violated`` = |V|, ``samples`` = P, ``batch_size`` = B. Computed as
    -expm1(sum_{j<B} log1p(-|V| / (P - j))), accurate when p is small; exactly 0 for
    |V| = 0 and 1 when P - |V| < B (every batch meets V).
    """
    if violated <= 0:
        return 0.0
    if samples - violated < batch_size:
        return 1.0
    log_idle = sum(math.log1p(-violated / (samples - j)) for j in range(batch_size))
    return -math.expm1(log_idle)


def log_binomial(n: int, k: np.ndarray) -> np.ndarray:
    """log C(n, k), elementwise in k (0 <= k <= n)."""
    return gammaln(n + 1.0) - gammaln(k + 1.0) - gammaln(n - k + 1.0)


def overlap_given_move(
    violated: int, samples: int, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """The law of k = |batch & V| for a uniform B-subset that meets V: (values, probabilities).

    Hypergeometric conditioned on k >= 1: P(k) proportional to C(|V|, k) C(P - |V|, B - k)
    for max(1, B - (P - |V|)) <= k <= min(B, |V|), from log-binomials. Needs |V| >= 1.
    """
    overlaps = np.arange(max(1, batch_size - (samples - violated)), min(batch_size, violated) + 1)
    log_weight = log_binomial(violated, overlaps) + log_binomial(
        samples - violated, batch_size - overlaps
    )
    weight = np.exp(log_weight - log_weight.max())
    return overlaps, weight / weight.sum()


@dataclass(frozen=True)
class MoveLaw:
    """The law the engine samples: p(|V|, P, B) of a moving step, and the overlap law
    (|V|, P, B) -> (k values, probabilities) of the moving batch. EXACT_LAW is the step
    engine's; another one is a deliberate error (the tests' power check)."""

    move_probability: Callable[[int, int, int], float]
    overlap: Callable[[int, int, int], tuple[np.ndarray, np.ndarray]]


EXACT_LAW = MoveLaw(move_probability, overlap_given_move)


@dataclass(frozen=True)
class LawAt:
    """The law at one size |V| of the violated set (P and B fixed): the probability p
    that a step moves, the overlaps k a moving batch can have and their cumulative
    probabilities (empty when p = 0)."""

    probability: float
    overlaps: list[int]
    cumulative: list[float]

    @classmethod
    def of(cls, law: MoveLaw, violated: int, samples: int, batch_size: int) -> LawAt:
        probability = law.move_probability(violated, samples, batch_size)
        if probability <= 0.0:
            return cls(0.0, [], [])
        overlaps, probabilities = law.overlap(violated, samples, batch_size)
        return cls(probability, overlaps.tolist(), np.cumsum(probabilities).tolist())


def idle_steps(uniform: float, probability: float) -> float:
    """Idle steps before the next update, G ~ Geometric(p) on {0, 1, ...}, by inversion.

    ``uniform`` in (0, 1]: G = floor(log u / log(1 - p)), so P(G >= g) = (1 - p)^g.
    p = 0 gives inf (never), p = 1 gives 0.
    """
    if probability <= 0.0:
        return math.inf
    if probability >= 1.0:
        return 0.0
    return float(math.floor(math.log(uniform) / math.log1p(-probability)))


def floyd_positions(uniforms: Sequence[float], population: int) -> list[int]:
    """len(uniforms) distinct positions in [0, population), uniformly among the subsets
    (Floyd's algorithm, as dynamics.selection.floyd_subsets)."""
    chosen: list[int] = []
    count = len(uniforms)
    for j, uniform in enumerate(uniforms):
        top = population - count + j
        candidate = min(int(uniform * (top + 1)), top)
        chosen.append(top if candidate in chosen else candidate)
    return chosen


def moving_batch(
    uniforms: Sequence[float],
    inside: np.ndarray,
    samples: int,
    batch_size: int,
    law: MoveLaw = EXACT_LAW,
) -> np.ndarray:
    """The batch of an update: B distinct sample indices, uniform among those meeting V.

    ``inside``: the indices of V in increasing order (at least one), among ``samples``
    = P; ``uniforms``: B + 1 numbers in [0, 1), the first picks the overlap k by
    inversion of ``law.overlap``, the next k the samples of V, the last B - k those of
    its complement (Floyd's algorithm on each).
    """
    at = LawAt.of(law, inside.size, samples, batch_size)
    return _batch(uniforms, inside, samples, batch_size, at)


def _batch(
    uniforms: Sequence[float], inside: np.ndarray, samples: int, batch_size: int, at: LawAt
) -> np.ndarray:
    """moving_batch with the law at |V| given (the engine keeps it per |V|)."""
    pick = bisect.bisect_right(at.cumulative, uniforms[0])
    overlap = at.overlaps[min(pick, len(at.overlaps) - 1)]
    chosen = inside[floyd_positions(uniforms[1 : 1 + overlap], inside.size)]
    if overlap == batch_size:
        return chosen
    positions = np.asarray(
        floyd_positions(uniforms[1 + overlap : 1 + batch_size], samples - inside.size)
    )
    # the j-th sample outside V is j + #{t : inside[t] - t <= j} (O(|V|), not O(P))
    before = np.searchsorted(inside - np.arange(inside.size), positions, side="right")
    return np.concatenate([chosen, positions + before])


def margin_force(loss: MarginLoss, h: np.ndarray) -> np.ndarray:
    """v'(h) of models.losses.MarginLoss.derivative on a host array (the engine's update
    without a torch call per weight update): -theta(kappa - h) for the hinge,
    -(kappa - h) theta(kappa - h) for the square hinge."""
    gap = np.maximum(loss.kappa - h, 0.0)
    return -gap if loss.kind == "square_hinge" else -(gap > 0).astype(h.dtype)


class JumpingToMoves:
    """The event-driven ``advance(state, start, stop)`` of a point that ``applies``.

    Takes steps start .. stop - 1 of every replica of ``state`` by jumping from one
    weight update to the next (module docstring) and returns the state at ``stop`` and
    an Outcome: last_moved (R,) the step of the last update in the window or -1,
    nonfinite_after (R,) the steps taken when the weights turned non-finite or -1 (the
    replica stops there, its weights non-finite) and, with ``exact_stop``, at_zero_loss
    (R,) whether the violated set is empty at the end of the window: the loss is then
    exactly zero and stays so (the runner stops the replica with t* = lr (last update + 1),
    no check needed). ``moves`` counts the updates of each replica id made by this
    instance (a diagnostic; not part of the run state).

    ``problem``: the training problem (patterns y x / sqrt(N), shared (P, N) or per
    replica (R_total, P, N) indexed by replica id); ``batch_size`` B; ``lr`` the learning
    rate (time t = lr x steps); ``seed`` run.seed (the stream ``events`` derives from it);
    ``device`` the run's device, where the returned tensors go; ``law``: EXACT_LAW (a
    wrong law only to show a test's power); ``exact_stop`` for run.tolerance 0. Use it
    with stages.train.PerceptronStepper and LONGEST_WINDOW.
    """

    def __init__(
        self,
        problem: PerceptronProblem,
        batch_size: int,
        lr: float,
        seed: int,
        device: torch.device | str,
        law: MoveLaw = EXACT_LAW,
        exact_stop: bool = False,
    ) -> None:
        if not 1 <= batch_size <= problem.P:
            raise ValueError(f"batch_size must be in [1, P = {problem.P}], got {batch_size}")
        self.problem, self.batch_size, self.lr, self.seed = problem, batch_size, lr, seed
        self.device, self.law, self.exact_stop = torch.device(device), law, exact_stop
        self.patterns = problem.patterns.detach().cpu().numpy()  # y x / sqrt(N), host
        self.generator = torch.Generator(device="cpu")  # host draws, whatever the device
        self.moves: dict[int, int] = {}
        # replica id (-1: shared data) -> {sample j: patterns @ pattern_j}, oldest use first
        self._gram: dict[int, OrderedDict[int, np.ndarray]] = {}
        self._laws: dict[tuple[int, int], LawAt] = {}  # (|V|, P) -> its law

    def __call__(
        self, state: PerceptronState, start: int, stop: int
    ) -> tuple[PerceptronState, Outcome]:
        ids = [int(replica) for replica in state.replica_ids.tolist()]
        weights = state.weights.detach().cpu().numpy().copy()
        reference = None if state.reference is None else state.reference.detach().cpu().numpy()
        last_moved = np.full(len(ids), -1, dtype=np.int64)
        nonfinite_after = np.full(len(ids), -1, dtype=np.int64)
        at_rest = np.zeros(len(ids), dtype=bool)
        for row, replica in enumerate(ids):
            origin = None if reference is None else reference[row]
            last_moved[row], nonfinite_after[row], at_rest[row] = self._advance_replica(
                replica, weights[row], origin, start, stop
            )
        outcome = Outcome(
            last_moved=torch.as_tensor(last_moved, device=self.device),
            nonfinite_after=torch.as_tensor(nonfinite_after, device=self.device),
            at_zero_loss=torch.as_tensor(at_rest, device=self.device) if self.exact_stop else None,
        )
        moved = torch.as_tensor(weights, device=self.device)
        return PerceptronState(moved, state.reference, None, state.replica_ids, stop), outcome

    def uniforms(self, replica: int, origin: int) -> list[float]:
        """The B + 2 uniforms in [0, 1) of replica ``replica`` sampling from step ``origin``."""
        self.generator.manual_seed(derive_seed(self.seed, STREAM, int(replica), int(origin)))
        draw = torch.rand(self.batch_size + 2, generator=self.generator, dtype=torch.float64)
        return draw.tolist()

    def _law_at(self, violated: int, samples: int) -> LawAt:
        """The law at |V| = ``violated`` among ``samples``, computed once."""
        at = self._laws.get((violated, samples))
        if at is None:
            at = self._laws[violated, samples] = LawAt.of(
                self.law, violated, samples, self.batch_size
            )
        return at

    def _advance_replica(
        self,
        replica: int,
        weights: np.ndarray,
        reference: np.ndarray | None,
        start: int,
        stop: int,
    ) -> tuple[int, int, bool]:
        """One replica through [start, stop), ``weights`` (N,) updated in place.

        Returns (last update step or -1, steps taken when non-finite or -1, whether the
        violated set is empty at ``stop``).
        """
        patterns = self.patterns[replica] if self.problem.per_replica else self.patterns
        samples, batch_size, loss = patterns.shape[0], self.batch_size, self.problem.loss

        def shifted() -> np.ndarray:
            return weights.copy() if reference is None else weights - reference

        h = patterns @ shifted()  # exact at every window start: resuming there is exact
        owners = self.patterns.shape[0] if self.problem.per_replica else 1
        gram = self._gram.setdefault(replica if owners > 1 else -1, OrderedDict())
        columns_kept = max(1, GRAM_BYTES // (owners * samples * h.itemsize))
        position, last, since_exact = start, -1, 0
        while position < stop:
            inside = np.flatnonzero(h < loss.kappa)  # V, in increasing order
            if inside.size == 0 and since_exact:  # confirm an empty V on exact stabilities
                h, since_exact = patterns @ shifted(), 0
                continue
            at = self._law_at(inside.size, samples)
            if at.probability <= 0.0:
                return last, -1, True
            uniforms = self.uniforms(replica, position)
            idle = idle_steps(1.0 - uniforms[0], at.probability)
            if position + idle >= stop:
                break  # memoryless: the next window samples afresh from its start
            step = position + int(idle)
            batch = _batch(uniforms[1:], inside, samples, batch_size, at)
            coefficient = (-self.lr / batch_size) * margin_force(loss, h[batch])
            weights += coefficient @ patterns[batch]
            last, position = step, step + 1
            self.moves[replica] = self.moves.get(replica, 0) + 1
            if not np.isfinite(weights).all():
                return last, step + 1, False
            since_exact += 1
            if since_exact == EXACT_EVERY:
                h, since_exact = patterns @ shifted(), 0
            else:  # h += patterns @ dw, dw a combination of the batch's patterns
                for sample, weight in zip(batch.tolist(), coefficient.tolist(), strict=True):
                    if weight:
                        h += weight * _column(gram, patterns, sample, columns_kept)
        if since_exact and not (h < loss.kappa).any():
            h = patterns @ shifted()  # a zero loss is decided on exact stabilities
        return last, -1, not bool((h < loss.kappa).any())


def _column(
    gram: OrderedDict[int, np.ndarray], patterns: np.ndarray, sample: int, kept: int
) -> np.ndarray:
    """patterns @ patterns[sample] (the change of every stability per unit of that pattern
    in w), from the replica's cache of the ``kept`` most recently used columns."""
    column = gram.get(sample)
    if column is None:
        column = gram[sample] = patterns @ patterns[sample]
        if len(gram) > kept:
            gram.popitem(last=False)
    else:
        gram.move_to_end(sample)
    return column
