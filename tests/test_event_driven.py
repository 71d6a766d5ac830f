"""The event-driven engine samples the step engine's chain in law (not draw for draw).

stages.event_driven jumps from one weight update to the next: geometric idle counts and
moving batches uniform among the B-subsets that meet the violated set. Checked here:

- the law itself, against enumeration of the B-subsets and by sampling (chi-square),
  with a biased overlap law that the batch test must reject;
- edge cases: an empty violated set never moves, a set with P - |V| < B moves at once;
- reproducibility: same seed, same rows; a replica's rows do not depend on the others;
  a fresh engine resumed at a window boundary continues the same run; no (replica,
  origin) pair draws twice;
- in distribution over 400 replicas, against the step-by-step reference
  (stages.train.train_point): two-sample KS tests of log t*, the final test error and
  the weight change, also with many more windows (records, checks) and with the square
  hinge (200 replicas); independent seeds (data, w(0), noise) on each side; and the power of
  the same tests: a wrong law (p with B - 1, or batches not conditioned on meeting V)
  must fail them.

Until run.engine selects the engine, ``_train`` below does what train_point does with
the stepper's advance swapped; ``test_the_driver_is_train_point`` keeps it honest.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
import xarray as xr
from scipy import stats

from sgdnoise.config import ConfigError, resolve_point
from sgdnoise.config.point import PointConfig
from sgdnoise.dynamics.perceptron import PerceptronProblem, PerceptronState
from sgdnoise.dynamics.random import derive_seed
from sgdnoise.models.losses import MarginLoss
from sgdnoise.stages import event_driven, idle_skipping
from sgdnoise.stages.checkpoint import Checkpointer, load_checkpoint
from sgdnoise.stages.event_driven import (
    EXACT_LAW,
    JumpingToMoves,
    MoveLaw,
    idle_steps,
    log_binomial,
    margin_force_at,
    move_probability,
    moving_batch,
    origin_uniform,
    overlap_given_move,
)
from sgdnoise.stages.recording import RecordingSchedule, run_setup
from sgdnoise.stages.runner import Runner, StopRules, ledger_variables, run_artifact
from sgdnoise.stages.train import (
    PerceptronStepper,
    Recorder,
    build_problems,
    initial_weights,
    train_point,
)

REPLICAS = 400
SAME_LAW = 1e-3  # KS p-value below which two samples are said to differ (chosen a priori)
WRONG_LAW = 1e-6  # a wrong law must give at least one p-value below this

# chi = 1, N = 16, P = 64, B = 2, T = lr / B = 2^-6, alpha-trick hinge (kappa = 1/alpha):
# zero loss after ~10^2 steps and ~13 updates per replica
POINT = {
    "model": {"kind": "perceptron", "constraint": "none", "alpha": 32768.0},
    "loss": {"kind": "hinge"},
    "data": {
        "kind": "depleted_sign",
        "N": 16,
        "P": 64,
        "chi": 1.0,
        "P_test": 2000,
        "per_replica": True,
    },
    "optimizer": {"kind": "minibatch_sgd", "batch_size": 2, "temperature": 2.0**-6},
    "run": {
        "replicas": REPLICAS,
        "stop": "zero_loss",
        "max_time": 1.0e6,
        "record": {"count": 4, "weights": False},
    },
}


def _point(seed: int = 0, replicas: int = REPLICAS, **run: object) -> PointConfig:
    """POINT with its data and run seeds (independent samples for different seeds)."""
    point = resolve_point(POINT)
    return point.replace(
        data=point.data.replace(seed=seed),
        run=point.run.replace(seed=seed, replicas=replicas, **run),
    )


Advance = Callable[[PerceptronState, int, int], tuple[PerceptronState, object]]


def events(
    law: MoveLaw = EXACT_LAW,
    engine: type[JumpingToMoves] = JumpingToMoves,
    made: list[JumpingToMoves] | None = None,
):
    """The advance_of of the event-driven engine (``law``: a wrong one for the power);
    the engine made is appended to ``made``."""

    def advance_of(config: PointConfig, problem: PerceptronProblem, device) -> tuple:
        optimizer = config.optimizer
        advance = engine(problem, optimizer.batch_size, optimizer.lr, config.run.seed, device, law)
        if made is not None:
            made.append(advance)
        return advance, event_driven.LONGEST_WINDOW

    return advance_of


def steps(config: PointConfig, problem: PerceptronProblem, device) -> tuple:
    """The advance_of of the step engine as train_point runs it (idle-step skipping)."""
    advance = idle_skipping.skipping_idle_steps(config, problem, device)
    return advance, idle_skipping.LONGEST_WINDOW


def _train(config: PointConfig, advance_of: Callable) -> xr.Dataset:
    """train_point for a random start and no checkpoint, with the advance of ``advance_of``."""
    run, optimizer = config.run, config.optimizer
    device, dtype, datasets = run_setup(config, None)
    problem, test_problem, teacher = build_problems(config, datasets, device, dtype)
    start = initial_weights(config, problem.N, device, dtype)
    reference = start.clone() if config.model.alpha is not None else None
    ids = torch.arange(run.replicas, device=device)
    state = PerceptronState(start.clone(), reference, None, ids, 0)
    schedule = RecordingSchedule(run, optimizer.lr)
    recorder = Recorder(config, problem, test_problem, teacher, start, reference, schedule)
    advance, longest = advance_of(config, problem, device)
    zero_loss = run.stop == "zero_loss"
    rules = StopRules(
        lr=optimizer.lr,
        zero_loss=zero_loss,
        tolerance=run.tolerance,
        check_every=run.check_every if zero_loss else None,
    )
    stepper = PerceptronStepper(problem, advance, longest)
    ledger = Runner(stepper, recorder, rules, Checkpointer(None, config)).run(state)
    variables = {
        "final_weights": (("replica", "feature"), ledger.tensors["weights"].cpu().numpy()),
        **ledger_variables(ledger, optimizer.lr),
    }
    return run_artifact(config, recorder, variables, {})


def _ks_pvalues(first: xr.Dataset, second: xr.Dataset) -> dict[str, float]:
    """Two-sample KS p-values of log t*, final test error and final weight change."""
    for run in (first, second):
        assert set(run["replica_status"].values) == {"completed"}

    def final(run: xr.Dataset, name: str) -> np.ndarray:
        return run[name].values[:, -1]  # the last record: where each replica stopped

    return {
        "log_t_star": stats.ks_2samp(
            np.log(first["t_star"].values), np.log(second["t_star"].values)
        ).pvalue,
        "test_error": stats.ks_2samp(
            final(first, "test_error"), final(second, "test_error")
        ).pvalue,
        "weight_change": stats.ks_2samp(
            final(first, "weight_change"), final(second, "weight_change")
        ).pvalue,
    }


@pytest.fixture(scope="module")
def reference() -> xr.Dataset:
    """The step engine at POINT, seeds 0, as train_point runs it (run.engine steps)."""
    return train_point(_point(seed=0, engine="steps"))


@pytest.fixture(scope="module")
def exact() -> xr.Dataset:
    """The event-driven engine at POINT, seeds 1 (independent of the reference), as
    train_point runs it: run.engine auto is events here, and with tolerance 0 the engine
    stops replicas at exactly zero loss itself (no checks)."""
    point = _point(seed=1)
    assert point.run.engine == "events"
    return train_point(point)


# --- the law ------------------------------------------------------------------------


def _subsets_meeting(samples: int, batch_size: int, violated: set[int]) -> list[tuple]:
    return [
        subset
        for subset in itertools.combinations(range(samples), batch_size)
        if violated.intersection(subset)
    ]


@pytest.mark.parametrize(("samples", "batch_size"), [(7, 1), (7, 2), (7, 3), (6, 6), (9, 4)])
def test_the_law_is_the_count_of_batches_meeting_the_violated_set(samples, batch_size):
    """p and the overlap law against enumeration of every B-subset of P samples."""
    total = math.comb(samples, batch_size)
    for size in range(samples + 1):
        violated = set(range(size))
        meeting = _subsets_meeting(samples, batch_size, violated)
        assert move_probability(size, samples, batch_size) == pytest.approx(
            len(meeting) / total, rel=1e-13, abs=0.0
        )
        if not meeting:
            continue
        overlaps, probabilities = overlap_given_move(size, samples, batch_size)
        counted = {int(k): 0 for k in overlaps}
        for subset in meeting:
            counted[len(violated.intersection(subset))] += 1
        expected = np.array([counted[int(k)] for k in overlaps]) / len(meeting)
        np.testing.assert_allclose(probabilities, expected, rtol=1e-12)
        assert sum(counted.values()) == len(meeting)  # no overlap outside the support


def test_move_probability_is_accurate_when_small():
    """p = B |V| / P to first order: no cancellation at |V| = 1, P = 10^6."""
    assert move_probability(1, 10**6, 2) == pytest.approx(2e-6, rel=1e-6)
    assert move_probability(0, 10, 3) == 0.0
    assert move_probability(8, 10, 3) == 1.0  # P - |V| = 2 < B: every batch meets V


def test_idle_steps_are_geometric():
    """G(u) for uniform u: P(G = g) = (1 - p)^g p (chi-square), and the edge cases."""
    generator = np.random.default_rng(3)
    probability, draws, bins = 0.15, 40_000, 25
    idle = np.array([idle_steps(1.0 - u, probability) for u in generator.random(draws)])
    counts = np.bincount(np.minimum(idle, bins).astype(int), minlength=bins + 1)
    law = stats.geom.pmf(np.arange(1, bins + 1), probability)
    expected = draws * np.append(law, 1.0 - law.sum())
    assert stats.chisquare(counts, expected).pvalue > SAME_LAW
    assert idle_steps(1e-300, 1.0) == 0.0
    assert idle_steps(0.5, 0.0) == math.inf


def _batch_counts(law: MoveLaw, samples: int, batch_size: int, violated: set, draws: int):
    """Observed counts of each B-subset meeting V, and those subsets."""
    inside = np.array(sorted(violated))
    meeting = _subsets_meeting(samples, batch_size, violated)
    index = {subset: i for i, subset in enumerate(meeting)}
    counts = np.zeros(len(meeting), dtype=int)
    uniforms = np.random.default_rng(5).random((draws, batch_size + 1))
    for row in uniforms:
        batch = moving_batch(row.tolist(), inside, samples, batch_size, law)
        assert len(set(batch.tolist())) == batch_size
        counts[index[tuple(sorted(batch.tolist()))]] += 1  # KeyError: a batch missing V
    return counts


@pytest.mark.parametrize(
    ("samples", "batch_size", "violated"),
    [(8, 3, {0, 2, 5}), (9, 2, {8}), (7, 4, {1, 2, 3, 4, 6})],
)
def test_moving_batches_are_uniform_among_subsets_meeting_the_violated_set(
    samples, batch_size, violated
):
    meeting = math.comb(samples, batch_size) - math.comb(samples - len(violated), batch_size)
    counts = _batch_counts(EXACT_LAW, samples, batch_size, violated, 400 * meeting)
    assert counts.size == meeting
    assert stats.chisquare(counts).pvalue > SAME_LAW


def test_the_force_is_the_loss_derivative():
    """margin_force_at (compiled) is models.losses.MarginLoss.derivative (torch), at the
    margin too."""
    kappa = 0.25
    h = np.concatenate([np.random.default_rng(0).normal(0.0, 1.0, 1000), [kappa, -kappa]])
    for kind in ("hinge", "square_hinge"):
        loss = MarginLoss(kind, kappa)
        expected = loss.derivative(torch.from_numpy(h)).numpy()
        force = [margin_force_at(x, kappa, kind == "square_hinge") for x in h]
        np.testing.assert_array_equal(force, expected)


def test_a_biased_overlap_law_fails_the_batch_test():
    """Power: always one violated sample when possible (the end-to-end KS tests at POINT
    do not see this bias: it acts only on batches holding two violated samples)."""

    def one_violated(violated: int, samples: int, batch_size: int):
        return np.array([max(1, batch_size - (samples - violated))]), np.array([1.0])

    biased = MoveLaw(move_probability, one_violated)
    counts = _batch_counts(biased, 8, 3, {0, 2, 5}, 31_000)
    assert stats.chisquare(counts).pvalue < WRONG_LAW


# --- edge cases and reproducibility -----------------------------------------------


def _problem(samples: int, features: int, kappa: float, per_replica: int = 0) -> PerceptronProblem:
    """Patterns with positive entries: h = w . x > 0 for w with positive entries."""
    shape = (per_replica, samples, features) if per_replica else (samples, features)
    generator = torch.Generator().manual_seed(0)
    patterns = torch.rand(shape, generator=generator, dtype=torch.float64) / math.sqrt(features)
    return PerceptronProblem(
        patterns, bool(per_replica), MarginLoss("hinge", kappa), "none", 0.0, ""
    )


@pytest.mark.parametrize("per_replica", [0, 3])
def test_an_empty_violated_set_never_moves(per_replica):
    problem = _problem(50, 8, kappa=0.1, per_replica=per_replica)
    weights = torch.full((3, 8), 10.0, dtype=torch.float64)  # h >= 10 * min x > kappa
    state = PerceptronState(weights, None, None, torch.arange(3), 0)
    advance = JumpingToMoves(problem, 2, 0.5, seed=0, device="cpu")
    after, outcome = advance(state, 0, 10**12)
    assert torch.equal(after.weights, weights) and after.step == 10**12
    assert outcome.last_moved.tolist() == [-1] * 3
    assert outcome.nonfinite_after.tolist() == [-1] * 3
    assert advance.moves == {}


def test_a_violated_set_every_batch_meets_moves_at_once():
    """P - |V| < B: p = 1, the window's first step moves, by the engine's update."""
    problem = _problem(5, 4, kappa=0.1)
    weights = torch.zeros(1, 4, dtype=torch.float64)  # h = 0 < kappa: |V| = P
    state = PerceptronState(weights, None, None, torch.tensor([0]), 7)
    lr, batch_size = 0.5, 2
    after, outcome = JumpingToMoves(problem, batch_size, lr, seed=0, device="cpu")(state, 7, 8)
    assert outcome.last_moved.tolist() == [7] and after.step == 8
    # w' = -lr (1/B) sum_b v'(h_b) x_b with v' = -1: lr / B times the sum of two patterns
    updates = [
        lr / batch_size * (problem.patterns[a] + problem.patterns[b])
        for a, b in itertools.combinations(range(5), 2)
    ]
    assert any(torch.allclose(after.weights[0], u, rtol=0, atol=1e-15) for u in updates)


def _windows(advance: Advance, state: PerceptronState, cuts: list[int]) -> list[tuple]:
    """Advance through the windows between ``cuts``: the weights and outcome of each."""
    trace = []
    for start, stop in itertools.pairwise(cuts):
        state, outcome = advance(state, start, stop)
        trace.append((state.weights, outcome.last_moved))
    return trace


def _setup(
    replicas: int, ids: list[int], config: PointConfig | None = None
) -> tuple[PerceptronProblem, PerceptronState, float]:
    """The problem, the state at step 0 of replicas ``ids`` and lr of ``config`` (default:
    POINT with ``replicas`` replicas)."""
    config = config or _point(replicas=replicas)
    device, dtype, datasets = run_setup(config, None)
    problem, _, _ = build_problems(config, datasets, device, dtype)
    start = initial_weights(config, problem.N, device, dtype)[ids]
    state = PerceptronState(start.clone(), start.clone(), None, torch.tensor(ids), 0)
    return problem, state, config.optimizer.lr


def test_same_seed_same_rows_whatever_the_other_replicas_and_restarts():
    cuts = [0, 5, 6, 40, 41, 90, 300]
    problem, state, lr = _setup(6, list(range(6)))
    full = _windows(JumpingToMoves(problem, 2, lr, 9, "cpu"), state, cuts)
    again = _windows(JumpingToMoves(problem, 2, lr, 9, "cpu"), state, cuts)
    other_seed = _windows(JumpingToMoves(problem, 2, lr, 10, "cpu"), state, cuts)
    pair = torch.tensor([False, True, False, False, True, False])
    alone = _windows(JumpingToMoves(problem, 2, lr, 9, "cpu"), state.subset(pair), cuts)
    for (weights, moved), (same, same_moved), (two, two_moved) in zip(
        full, again, alone, strict=True
    ):
        assert torch.equal(weights, same) and torch.equal(moved, same_moved)
        assert torch.equal(weights[[1, 4]], two) and torch.equal(moved[[1, 4]], two_moved)
    assert not torch.equal(full[-1][0], other_seed[-1][0])
    assert all(int(moved.max()) >= 0 for _, moved in full[:3])  # the windows do move

    # a fresh engine (no kept stabilities) resumed at a window boundary: the same run
    resumed_at = 3
    first = JumpingToMoves(problem, 2, lr, 9, "cpu")
    middle = state
    for start, stop in itertools.pairwise(cuts[: resumed_at + 1]):
        middle, _ = first(middle, start, stop)
    rest = _windows(JumpingToMoves(problem, 2, lr, 9, "cpu"), middle, cuts[resumed_at:])
    for (weights, moved), (same, same_moved) in zip(full[resumed_at:], rest, strict=True):
        assert torch.equal(weights, same) and torch.equal(moved, same_moved)


def test_a_run_killed_inside_a_long_window_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch):
    """Windows end every LONGEST_WINDOW steps besides the records, so a checkpoint is
    offered inside the long gaps between records (late in a chi = 0 run, hours of CPU);
    a run killed there resumes to the same artifact. Here windows of 4 steps, records at
    steps 0, 4, .., 71, 174, 318: the run is killed at the first window after step 100
    (step 103), between two records, half of its replicas still training."""
    monkeypatch.setattr(event_driven, "LONGEST_WINDOW", 4)
    point = _point(replicas=8, checkpoint_seconds=1e-9)  # a checkpoint at every offer
    uninterrupted = train_point(point)
    assert list(uninterrupted["step"].values[-3:]) == [71, 174, 318]
    original = JumpingToMoves.__call__

    def killed_after_100(self, state, start, stop):
        if start > 100:
            raise KeyboardInterrupt
        return original(self, state, start, stop)

    checkpoint = tmp_path / "run.ckpt"
    monkeypatch.setattr(JumpingToMoves, "__call__", killed_after_100)
    with pytest.raises(KeyboardInterrupt):
        train_point(point, checkpoint=checkpoint)
    monkeypatch.setattr(JumpingToMoves, "__call__", original)
    assert load_checkpoint(checkpoint, point)["step"] == 103
    resumed = train_point(point, checkpoint=checkpoint)
    for name in ("final_weights", "t_star", "signal", "noise", "test_error"):
        np.testing.assert_array_equal(resumed[name].values, uninterrupted[name].values)
    assert not checkpoint.exists()


def _late_training(replicas: int) -> tuple[PerceptronProblem, PerceptronState, float]:
    """chi = 0, N = 16, P = 1024, T = 2^-11: ~5e3 updates per replica to zero loss, most
    of them with a few violated samples among many close to the margin."""
    config = resolve_point(
        {
            **POINT,
            "data": {**POINT["data"], "chi": 0.0, "P": 1024, "per_replica": False},
            "optimizer": {**POINT["optimizer"], "temperature": 2.0**-11},
            "run": {**POINT["run"], "replicas": replicas},
        }
    )
    return _setup(replicas, list(range(replicas)), config)


def _to_rest(problem: PerceptronProblem, state: PerceptronState, lr: float) -> tuple:
    advance = JumpingToMoves(problem, 2, lr, 5, "cpu", exact_stop=True)
    after, outcome = advance(state, 0, 10**12)
    assert outcome.at_zero_loss.all()
    return after.weights, outcome.last_moved, advance


def test_the_watch_list_keeps_the_trajectory_of_the_whole_set(monkeypatch):
    """Keeping only the samples within reach of the margin current (the watch list) is
    the same chain draw for draw as keeping all P current: same last update, same
    weights. Power: patterns' norms taken 4x too small (a radius 4x too large, so samples
    enter V unseen) change the trajectory of every replica."""
    problem, state, lr = _late_training(replicas=4)
    weights, last, advance = _to_rest(problem, state, lr)
    moves = min(advance.moves.values())
    assert moves > 2000 and min(advance.refreshes.values()) > 4 * moves / event_driven.EXACT_EVERY

    with monkeypatch.context() as patch:  # every sample watched, refreshed as before
        patch.setattr(event_driven, "FIRST_FRACTION", 1.0)
        patch.setattr(event_driven, "EXACT_EVERY", 10**9)
        whole_weights, whole_last, whole = _to_rest(problem, state, lr)
    assert max(whole.refreshes.values()) <= 2  # the window start, the final confirmation
    assert torch.equal(last, whole_last)
    torch.testing.assert_close(weights, whole_weights, rtol=0, atol=1e-12)

    with monkeypatch.context() as patch:
        original = event_driven._GramCache.load

        def too_short(cache, owner, patterns):
            original(cache, owner, patterns)
            cache.norms /= 4.0

        patch.setattr(event_driven._GramCache, "load", too_short)
        wrong_weights, wrong_last, _ = _to_rest(problem, state, lr)
    assert ((wrong_weights - whole_weights).abs().amax(dim=1) > 1e-6).all()


def test_the_draws_are_uniform_and_independent_across_origins():
    """origin_uniform: a hash of (replica key, step, index). Uniform (KS), consecutive
    origins and indices uncorrelated, other keys other draws (a hash that dropped the
    origin, or the index, would fail every line)."""
    draws = 20_000
    key = np.uint64(derive_seed(0, event_driven.STREAM, 3))
    grid = np.array(
        [[origin_uniform(key, origin, index) for index in range(3)] for origin in range(draws)]
    )
    assert stats.kstest(grid[:, 0], "uniform").pvalue > SAME_LAW
    bound = 5.0 / math.sqrt(draws)  # 5 standard deviations of a correlation of independents
    assert abs(np.corrcoef(grid[:-1, 0], grid[1:, 0])[0, 1]) < bound
    assert abs(np.corrcoef(grid[:, 0], grid[:, 1])[0, 1]) < bound
    other = np.uint64(derive_seed(0, event_driven.STREAM, 4))
    assert not np.isin(grid[:100, 0], [origin_uniform(other, o, 0) for o in range(100)]).any()


def test_a_replica_runs_alone_as_among_400(exact):
    few = train_point(_point(seed=1, replicas=8))
    for name in ("t_star", "steps_taken", "final_weights"):
        np.testing.assert_array_equal(few[name].values, exact[name].values[:8])


def test_the_driver_is_train_point():
    """_train with the step engine's advance makes train_point's artifact."""
    config = _point(seed=0, replicas=12, engine="steps")
    ours, theirs = _train(config, steps), train_point(config)
    for name in ("t_star", "steps_taken", "final_weights", "test_error", "weight_change"):
        np.testing.assert_array_equal(ours[name].values, theirs[name].values)


# --- in distribution, against the step engine ---------------------------------------


def test_the_config_picks_the_engine_where_it_is_exact():
    """auto: events for the unconstrained perceptron under minibatch SGD at tolerance 0;
    steps elsewhere; events asked where it is not exact is refused, naming the key."""
    assert _point().run.engine == "events"
    sphere = {**POINT, "model": {**POINT["model"], "constraint": "sphere"}}
    assert resolve_point(sphere).run.engine == "steps"
    square = {**POINT, "loss": {"kind": "square_hinge"}}  # tolerance 1e-10: checks needed
    assert resolve_point(square).run.engine == "steps"
    assert resolve_point({**square, "run": {**POINT["run"], "engine": "events"}}).run.events
    with pytest.raises(ConfigError, match=r"run.engine: events .* lacks model.constraint none"):
        resolve_point({**sphere, "run": {**POINT["run"], "engine": "events"}})


def test_in_law_the_step_engine(reference, exact):
    pvalues = _ks_pvalues(reference, exact)
    assert min(pvalues.values()) > SAME_LAW, pvalues


def test_in_law_the_step_engine_with_the_square_hinge():
    """Square hinge (the force kappa - h: updates overshoot to zero loss at large lr),
    alpha = 64, T = 5, 200 replicas."""
    point = resolve_point(
        {
            **POINT,
            "model": {"kind": "perceptron", "constraint": "none", "alpha": 64.0},
            "loss": {"kind": "square_hinge"},
            "optimizer": {"kind": "minibatch_sgd", "batch_size": 2, "temperature": 5.0},
        }
    )
    run = point.run.replace(replicas=200, max_steps=200_000)
    steps_run = train_point(point.replace(run=run))
    events_run = train_point(
        point.replace(data=point.data.replace(seed=1), run=run.replace(seed=1, engine="events"))
    )
    pvalues = _ks_pvalues(steps_run, events_run)
    assert min(pvalues.values()) > SAME_LAW, pvalues


def test_in_law_the_step_engine_with_many_more_windows(reference):
    """Window splitting is exact in law: checks every 7 steps and 64 to 128 records
    change every draw (origins at window starts), not the law."""
    record = _point().run.record.replace(count=64)
    split = _train(_point(seed=2, check_every=7, record=record), events())
    pvalues = _ks_pvalues(reference, split)
    assert min(pvalues.values()) > SAME_LAW, pvalues


def _with_one_less(violated: int, samples: int, batch_size: int) -> float:
    return move_probability(violated, samples, batch_size - 1)


def _not_conditioned(violated: int, samples: int, batch_size: int):
    """Hypergeometric with k = 0 allowed: a uniform batch, not one meeting V."""
    overlaps = np.arange(max(0, batch_size - (samples - violated)), min(batch_size, violated) + 1)
    log_weight = log_binomial(violated, overlaps) + log_binomial(
        samples - violated, batch_size - overlaps
    )
    weight = np.exp(log_weight - log_weight.max())
    return overlaps, weight / weight.sum()


@pytest.mark.parametrize(
    "law",
    [MoveLaw(_with_one_less, overlap_given_move), MoveLaw(move_probability, _not_conditioned)],
    ids=["p-with-B-1", "batch-not-conditioned-on-V"],
)
def test_a_wrong_law_fails_the_same_test(reference, law):
    wrong = _train(_point(seed=1), events(law))
    pvalues = _ks_pvalues(reference, wrong)
    assert min(pvalues.values()) < WRONG_LAW, pvalues
