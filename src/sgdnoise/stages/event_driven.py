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
its updates) uses B + 2 uniforms, each a hash of (the replica's key
derive_seed(seed, "events", replica), the origin step, the index of the uniform):
``origin_uniform``, SplitMix64 applied twice. The geometric idle count takes the first,
the overlap k the second, then the k positions in V and the B - k in its complement
(Floyd's algorithm). The origins of a replica are distinct steps (increasing within a
window; a window's lie in [start, stop), and an update at stop - 1 leaves the origin
``stop`` to the next window), so a replica's draws depend neither on the other replicas
nor on where a run was resumed: a run resumed at a window boundary is the uninterrupted
run. The draws do depend on the window boundaries (records, checks, LONGEST_WINDOW),
which is why the engine is exact in law and not draw for draw: stages.idle_skipping is
the draw-for-draw fast path.

Where it applies: minibatch_sgd, constraint none (no ridge), hinge or square hinge
(``applies``). Not elsewhere: with a ridge or the sphere every step moves the weights;
with Bernoulli or Markov selection (sgd, persistent_sgd) the batch law differs (the
kernel here is the minibatch one); Langevin and full-batch GD move at every step.

Cost, per replica: per window, O(P N) for the exact stabilities at its start (so a run
resumed at a window boundary is the uninterrupted run) plus one seeded draw; per weight
update, the stabilities' change and the violated set of the watched samples only (the
watch list below), plus O(P N) for each Gram column not yet cached. The update dw is a
combination of the batch's patterns, so h changes by sum_b c_b (patterns @ x_b); the
columns patterns @ x_j of the samples that keep returning to V (late in training a few
dozen) are kept (GRAM_BYTES in all; clock replacement drops a column unused for a turn
of the hand).

The watch list. Only samples near the margin can enter V soon: since
|h_mu(w) - h_mu(w')| <= |x_mu| |w - w'|, a sample whose reach (h_mu - kappa) / |x_mu| at
the last exact recomputation exceeds the distance the weights have moved since stays out
of V. So at each exact recomputation of every stability (a refresh, O(P N)) the samples
of smallest reach are watched (their stabilities kept current, V sought among them) and
the weights may move up to the smallest reach of the others before the next refresh.
The watched fraction is retuned at each refresh, halved or doubled to keep the cost of
the updates and of the refreshes within a factor 2 of each other. This is exact, not an
approximation: V is found whole at every update (the same chain draw for draw as keeping
all P stabilities current, tested; decisions within rounding of the margin aside, as
everywhere). Late in training, with few violated samples and the weights moving by small
steps, an update costs a pass over the watch list instead of all P (measured at chi = 0,
d = 128, P = 16384: ~2.5 |V| samples, 6-12 % of P).
Every EXACT_EVERY updates, and before any decision that the loss is zero, the stabilities
are recomputed exactly, so rounding cannot accumulate or stop a replica early. The loop
from one update to the next is compiled (numba, ``_advance_replica``) and pays nothing
per idle step; Python is entered once per replica and window, and once per size |V|
first met (its law is tabled in Python, ``LawTables``, so a deliberately wrong law can
still be injected). Everything runs on the host, in the patterns' dtype (float64 stays
float64); the weights and the Outcome go back to ``device``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numba import njit
from scipy.special import gammaln

from sgdnoise.config.point import PointConfig
from sgdnoise.dynamics.perceptron import PerceptronProblem, PerceptronState
from sgdnoise.dynamics.random import derive_seed
from sgdnoise.stages.runner import Outcome

STREAM = "events"  # the name of the engine's counter-based stream (dynamics.random)
# Windows end at the records and at most every LONGEST_WINDOW steps: the runner offers a
# checkpoint only between windows, and late in a chi = 0 run one gap between records holds
# hours of CPU. A count of steps, not of seconds, so that runs repeat bit for bit. 2^26
# steps is ~8 s of one replica at the costliest cell of paper B's grid (chi = 0, d = 128,
# P = 16384, T = 2^-19) and costs nothing measurable (one exact recomputation per window:
# 13.0 s unbounded against 13.4 s at d = 16, P = 16384, T = 2^-15; 41.6 s against 37.5 s at
# d = 128, one seed each, benchmarks/RESULTS.md).
LONGEST_WINDOW = 1 << 26
GRAM_BYTES = 1 << 29  # cached columns of the Gram matrix of the data in use (512 MiB)
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


@njit(cache=True)
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


# --- counter-based uniforms: a pure function of (key, origin, index) -------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True)
def _splitmix64(value: np.uint64) -> np.uint64:
    """Steele, Lea and Flood's SplitMix64 finaliser: a bijection of 64-bit words whose
    outputs for consecutive inputs pass BigCrush."""
    value = (value ^ (value >> np.uint64(30))) * _MIX_1
    value = (value ^ (value >> np.uint64(27))) * _MIX_2
    return value ^ (value >> np.uint64(31))


@njit(cache=True)
def origin_uniform(key: np.uint64, origin: np.int64, index: np.int64) -> float:
    """The ``index``-th uniform in [0, 1) (53 bits) drawn at step ``origin`` of the replica
    whose stream key is ``key`` (derive_seed(run.seed, "events", replica)): a hash of the
    three, so a draw depends on nothing else (not on other replicas, windows or restarts)."""
    state = _splitmix64(key + np.uint64(origin) * _GOLDEN)
    word = _splitmix64(state + np.uint64(index + 1) * _GOLDEN)
    return float(word >> np.uint64(11)) * (1.0 / 9007199254740992.0)


# --- the moving batch -------------------------------------------------------------------


@njit(cache=True)
def _floyd(uniforms: np.ndarray, first: int, count: int, population: int, out: np.ndarray) -> None:
    """``count`` distinct positions in [0, population) into out[:count], uniformly among the
    subsets (Floyd's algorithm, as dynamics.selection.floyd_subsets), from
    uniforms[first : first + count]."""
    for j in range(count):
        top = population - count + j
        candidate = min(int(uniforms[first + j] * (top + 1)), top)
        for i in range(j):
            if out[i] == candidate:
                candidate = top
                break
        out[j] = candidate


@njit(cache=True)
def _moving_batch(
    uniforms: np.ndarray,
    inside: np.ndarray,
    violated: int,
    samples: int,
    batch_size: int,
    lowest_overlap: int,
    cumulative: np.ndarray,
    batch: np.ndarray,
) -> None:
    """The B sample indices of an update into ``batch``, uniform among those meeting V.

    ``inside[:violated]``: the indices of V in increasing order; ``uniforms[0]`` picks the
    overlap k = lowest_overlap + #{cumulative <= u} (the law's cumulative probabilities,
    NaN-padded), the next k the samples of V, the last B - k those of its complement.
    """
    support = 0
    while support < cumulative.size and not math.isnan(cumulative[support]):
        support += 1
    pick = 0
    while pick < support and cumulative[pick] <= uniforms[0]:
        pick += 1
    overlap = lowest_overlap + min(pick, support - 1)
    positions = np.empty(batch_size, dtype=np.int64)
    _floyd(uniforms, 1, overlap, violated, positions)
    for j in range(overlap):
        batch[j] = inside[positions[j]]
    outside = batch_size - overlap
    _floyd(uniforms, 1 + overlap, outside, samples - violated, positions)
    for j in range(outside):
        # the m-th sample outside V is m + #{t : inside[t] - t <= m} (binary search)
        m, low, high = positions[j], 0, violated
        while low < high:
            middle = (low + high) // 2
            if inside[middle] - middle <= m:
                low = middle + 1
            else:
                high = middle
        batch[overlap + j] = m + low


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
    its complement (Floyd's algorithm on each). The engine's own draw, called alone.
    """
    tables = LawTables(law, samples, batch_size)
    tables.fill(inside.size)
    batch = np.empty(batch_size, dtype=np.int64)
    _moving_batch(
        np.asarray(uniforms, dtype=np.float64),
        np.asarray(inside, dtype=np.int64),
        inside.size,
        samples,
        batch_size,
        int(tables.lowest_overlap[inside.size]),
        tables.cumulative[inside.size],
        batch,
    )
    return batch


class LawTables:
    """The law at every size |V| = 0 .. P of the violated set (P, B fixed), filled as the
    sizes are met: p, the lowest overlap a moving batch can have and the cumulative
    probabilities of the overlaps from there (NaN-padded to B + 1 entries)."""

    def __init__(self, law: MoveLaw, samples: int, batch_size: int) -> None:
        self.law, self.samples, self.batch_size = law, samples, batch_size
        self.known = np.zeros(samples + 1, dtype=np.bool_)
        self.probability = np.zeros(samples + 1)
        self.lowest_overlap = np.ones(samples + 1, dtype=np.int64)
        self.cumulative = np.full((samples + 1, batch_size + 1), np.nan)

    def fill(self, violated: int) -> None:
        """Compute the law at |V| = ``violated`` (once)."""
        if self.known[violated]:
            return
        self.known[violated] = True
        probability = self.law.move_probability(violated, self.samples, self.batch_size)
        self.probability[violated] = probability
        if probability > 0.0:
            overlaps, probabilities = self.law.overlap(violated, self.samples, self.batch_size)
            self.lowest_overlap[violated] = overlaps[0]
            self.cumulative[violated, : overlaps.size] = np.cumsum(probabilities)


# --- one replica through a window -------------------------------------------------------

# where _advance_replica stopped: the end of the window, a size of V whose law is not yet
# tabled (the caller fills it and calls again), non-finite weights, an empty V for good
AT_STOP, NEEDS_LAW, NONFINITE, AT_REST = 0, 1, 2, 3
# the fields of its int64 state array, kept across calls
POSITION, LAST, SINCE_EXACT, MOVES, VIOLATED, WATCHED, REFRESHES = range(7)
# the fields of its float64 watch array: the watched fraction of the samples, the distance
# the weights may move from the last refresh before the next
FRACTION, RADIUS = range(2)
FIRST_FRACTION = 1.0 / 16.0  # watched at a window's start, then retuned (_retune_watch)


@njit(cache=True)
def margin_force_at(h: float, kappa: float, square: bool) -> float:
    """v'(h) of models.losses.MarginLoss.derivative: -theta(kappa - h) for the hinge,
    -(kappa - h) theta(kappa - h) for the square hinge."""
    gap = max(kappa - h, 0.0)
    if square:
        return -gap
    return -1.0 if gap > 0.0 else 0.0


@njit(cache=True)
def _exact_stabilities(patterns: np.ndarray, weights: np.ndarray, reference: np.ndarray, h):
    """h = patterns @ (w - w0) (reference of size 0: w0 = 0), recomputed from scratch."""
    if reference.size:
        h[:] = patterns @ (weights - reference)
    else:
        h[:] = patterns @ weights


@njit(cache=True)
def _refresh_watch(
    patterns, weights, reference, h, norms, kappa, watched, reach, drift, watch, state
):
    """Exact stabilities of every sample, then the watch list: the samples whose
    stabilities the next updates keep current, in increasing order, into
    watched[:state[WATCHED]]; the others are out of V until the weights have moved by
    watch[RADIUS] (Euclidean) from here.

    A sample's reach is its slack over its norm, (h_mu - kappa) / |x_mu|: since
    |h_mu(w) - h_mu(w')| <= |x_mu| |w - w'|, a sample of reach r cannot enter V before
    |w - w'| >= r. The watch list is the fraction watch[FRACTION] of the samples with the
    smallest reach (and every sample of non-positive reach); the radius is the smallest
    reach left out, shrunk by 1e-9 against rounding. With the whole set watched the
    radius is infinite.
    """
    _exact_stabilities(patterns, weights, reference, h)
    samples = h.size
    for mu in range(samples):
        slack = h[mu] - kappa
        if norms[mu] > 0.0:
            reach[mu] = slack / norms[mu]
        else:  # a zero pattern: h = 0 for good
            reach[mu] = math.inf if slack >= 0.0 else -math.inf
    target = int(watch[FRACTION] * samples)
    threshold = math.inf if target >= samples else max(np.partition(reach, target)[target], 0.0)
    count, radius = 0, math.inf
    for mu in range(samples):
        if reach[mu] < threshold or reach[mu] <= 0.0:
            watched[count] = mu
            count += 1
        else:
            radius = min(radius, reach[mu])
    state[WATCHED], state[SINCE_EXACT], state[REFRESHES] = count, 0, state[REFRESHES] + 1
    watch[RADIUS] = radius * (1.0 - 1e-9)
    drift[:] = 0.0


@njit(cache=True)
def _retune_watch(watch, updates, watched, samples, features):
    """Halve or double the watched fraction so that the cost of the updates since the last
    refresh (~6 ns per watched sample and update: a scan and gathers from Gram columns
    that do not fit the caches) and of a refresh (~P (N + 20) ns: a product with the
    patterns and a selection) stay within a factor 2 of each other; between one sample
    and the whole set. A model, not a clock, so that runs repeat bit for bit."""
    per_updates = 6.0 * updates * watched
    per_refresh = samples * (features + 20.0)
    if per_updates > 2.0 * per_refresh:
        watch[FRACTION] = max(watch[FRACTION] / 2.0, 1.0 / samples)
    elif 2.0 * per_updates < per_refresh:
        watch[FRACTION] = min(watch[FRACTION] * 2.0, 1.0)


@njit(cache=True)
def _column(patterns, sample, gram, slot_of, sample_of, referenced, hand):
    """patterns @ patterns[sample] (the change of every stability per unit of that pattern
    in w), from the replica's cache of Gram columns (clock replacement: a column used
    since the hand last passed survives one more turn)."""
    slot = slot_of[sample]
    if slot >= 0:
        referenced[slot] = True
        return gram[slot]
    slots = gram.shape[0]
    while referenced[hand[0]]:
        referenced[hand[0]] = False
        hand[0] = (hand[0] + 1) % slots
    slot = hand[0]
    hand[0] = (hand[0] + 1) % slots
    if sample_of[slot] >= 0:
        slot_of[sample_of[slot]] = -1
    sample_of[slot], slot_of[sample] = sample, slot
    gram[slot, :] = patterns @ patterns[sample]
    return gram[slot]


@njit(cache=True)
def _advance_replica(
    patterns,
    weights,
    reference,
    h,
    norms,
    key,
    stop,
    lr,
    batch_size,
    kappa,
    square,
    probability,
    known,
    lowest_overlap,
    cumulative,
    gram,
    slot_of,
    sample_of,
    referenced,
    hand,
    watched,
    reach,
    drift,
    watch,
    state,
    exact_every,
):
    """One replica from step state[POSITION] towards ``stop``; ``weights`` (N,) and the
    stabilities ``h`` (P,) of the watched samples updated in place, the counters in
    ``state``, the watch list in ``watched``, ``watch`` and ``drift`` (w minus the
    weights at the last refresh; _refresh_watch must have run once in the window).
    Returns AT_STOP, NEEDS_LAW (state[VIOLATED] holds the size whose law to fill; call
    again), NONFINITE (state[LAST] is the update that made the weights non-finite) or
    AT_REST (V empty on exact stabilities: the loss is zero for good)."""
    samples, features = patterns.shape
    inside = np.empty(samples, dtype=np.int64)
    uniforms = np.empty(batch_size + 2)
    batch = np.empty(batch_size, dtype=np.int64)
    coefficient = np.empty(batch_size)
    position = state[POSITION]
    while position < stop:
        count, violated = state[WATCHED], 0
        for i in range(count):  # V lies in the watch list (its complement is out of reach)
            if h[watched[i]] < kappa:
                inside[violated] = watched[i]
                violated += 1
        if violated == 0 and state[SINCE_EXACT]:  # confirm an empty V on exact stabilities
            _refresh_watch(
                patterns, weights, reference, h, norms, kappa, watched, reach, drift, watch, state
            )
            continue
        if not known[violated]:
            state[POSITION], state[VIOLATED] = position, violated
            return NEEDS_LAW
        if probability[violated] <= 0.0:
            state[POSITION] = position
            return AT_REST
        for index in range(batch_size + 2):
            uniforms[index] = origin_uniform(key, position, index)
        idle = idle_steps(1.0 - uniforms[0], probability[violated])
        if position + idle >= stop:
            break  # memoryless: the next window samples afresh from its start
        step = position + np.int64(idle)
        _moving_batch(
            uniforms[1:],
            inside,
            violated,
            samples,
            batch_size,
            lowest_overlap[violated],
            cumulative[violated],
            batch,
        )
        for b in range(batch_size):
            coefficient[b] = (-lr / batch_size) * margin_force_at(h[batch[b]], kappa, square)
        finite, moved = True, 0.0
        for feature in range(features):
            change = 0.0
            for b in range(batch_size):
                change += coefficient[b] * patterns[batch[b], feature]
            weights[feature] += change
            drift[feature] += change
            moved += drift[feature] * drift[feature]
            finite = finite and math.isfinite(weights[feature])
        state[LAST], state[MOVES] = step, state[MOVES] + 1
        position = step + 1
        if not finite:
            state[POSITION] = position
            return NONFINITE
        state[SINCE_EXACT] += 1
        if state[SINCE_EXACT] == exact_every or math.sqrt(moved) >= watch[RADIUS]:
            _retune_watch(watch, state[SINCE_EXACT], count, samples, features)
            _refresh_watch(
                patterns, weights, reference, h, norms, kappa, watched, reach, drift, watch, state
            )
            continue
        for b in range(batch_size):  # h += patterns @ dw, dw a combination of the batch's
            if coefficient[b] != 0.0:
                column = _column(patterns, batch[b], gram, slot_of, sample_of, referenced, hand)
                if count == samples:  # all watched: the contiguous pass vectorises
                    for mu in range(samples):
                        h[mu] += coefficient[b] * column[mu]
                else:
                    for i in range(count):
                        h[watched[i]] += coefficient[b] * column[watched[i]]
    state[POSITION] = stop
    return AT_STOP


class _GramCache:
    """Cached Gram columns (``kept`` of them) and the norms of one set of patterns: the
    shared data's, or with data per replica the replica's being advanced (the columns
    are dropped when another replica's data is loaded: one replica runs at a time, so
    it has the whole budget)."""

    def __init__(self, samples: int, kept: int, dtype: np.dtype) -> None:
        self.owner: int | None = None
        self.norms = np.empty(samples, dtype=dtype)
        self.gram = np.empty((kept, samples), dtype=dtype)
        self.slot_of = np.full(samples, -1, dtype=np.int64)
        self.sample_of = np.full(kept, -1, dtype=np.int64)
        self.referenced = np.zeros(kept, dtype=np.bool_)
        self.hand = np.zeros(1, dtype=np.int64)

    def load(self, owner: int, patterns: np.ndarray) -> None:
        """Hold the columns of ``patterns`` (the data of ``owner``), emptied if it held
        another's."""
        if owner == self.owner:
            return
        self.owner = owner
        self.norms[:] = np.linalg.norm(patterns, axis=1)  # |x_mu|, the watch list's reach
        self.slot_of.fill(-1)
        self.sample_of.fill(-1)
        self.referenced.fill(False)
        self.hand.fill(0)


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
    instance, ``refreshes`` its exact recomputations of every stability (diagnostics; not
    part of the run state).

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
        self.device, self.exact_stop = torch.device(device), exact_stop
        # y x / sqrt(N) on the host, C-ordered rows
        self.patterns = np.ascontiguousarray(problem.patterns.detach().cpu().numpy())
        self.tables = LawTables(law, problem.P, batch_size)
        self.moves: dict[int, int] = {}
        self.refreshes: dict[int, int] = {}
        self._gram: _GramCache | None = None

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

    def stream_key(self, replica: int) -> np.uint64:
        """The key of replica ``replica``'s draws (origin_uniform)."""
        return np.uint64(derive_seed(self.seed, STREAM, int(replica)))

    def _cache(self, replica: int, patterns: np.ndarray) -> _GramCache:
        """The cache of Gram columns, holding those of ``patterns`` (replica's data)."""
        if self._gram is None:
            samples = self.problem.P
            kept = max(1, min(samples, GRAM_BYTES // (samples * self.patterns.itemsize)))
            self._gram = _GramCache(samples, kept, self.patterns.dtype)
        self._gram.load(replica if self.problem.per_replica else -1, patterns)
        return self._gram

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
        reference = np.empty(0, dtype=weights.dtype) if reference is None else reference
        loss, cache, tables = self.problem.loss, self._cache(replica, patterns), self.tables
        samples, features = patterns.shape
        h = np.empty(samples, dtype=patterns.dtype)
        counters = np.zeros(7, dtype=np.int64)
        counters[POSITION], counters[LAST] = start, -1
        watched, reach = np.empty(samples, dtype=np.int64), np.empty(samples)
        drift, watch = np.zeros(features), np.array([FIRST_FRACTION, 0.0])
        _refresh_watch(  # exact at every window start
            patterns,
            weights,
            reference,
            h,
            cache.norms,
            loss.kappa,
            watched,
            reach,
            drift,
            watch,
            counters,
        )
        while True:
            ended = _advance_replica(
                patterns,
                weights,
                reference,
                h,
                cache.norms,
                self.stream_key(replica),
                stop,
                self.lr,
                self.batch_size,
                loss.kappa,
                loss.kind == "square_hinge",
                tables.probability,
                tables.known,
                tables.lowest_overlap,
                tables.cumulative,
                cache.gram,
                cache.slot_of,
                cache.sample_of,
                cache.referenced,
                cache.hand,
                watched,
                reach,
                drift,
                watch,
                counters,
                EXACT_EVERY,
            )
            if ended != NEEDS_LAW:
                break
            tables.fill(int(counters[VIOLATED]))
        if counters[MOVES]:
            self.moves[replica] = self.moves.get(replica, 0) + int(counters[MOVES])
        self.refreshes[replica] = self.refreshes.get(replica, 0) + int(counters[REFRESHES])
        last = int(counters[LAST])
        if ended == NONFINITE:
            return last, last + 1, False
        if ended == AT_REST:
            return last, -1, True
        if counters[SINCE_EXACT] and not (h < loss.kappa).any():
            _exact_stabilities(patterns, weights, reference, h)  # zero loss on exact h
        return last, -1, not bool((h < loss.kappa).any())
