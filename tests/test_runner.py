"""The shared training loop (stages.runner) on a toy stepper whose stops are known exactly.

Toy replica r has ``moves[r]`` moving steps left: every step takes one (its loss is the
number left), so it reaches zero loss after step moves[r] - 1, t* = lr moves[r], and a
check every k steps sees it at the first multiple of k from moves[r] on. A replica with
a ``blow_up`` step turns non-finite there. The loop's rules (records before a step,
checks, t*, statuses, divergence, eager and lazy, checkpoints) are checked against that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch

from sgdnoise.config import PointConfig, resolve_point
from sgdnoise.stages.checkpoint import Checkpointer, load_checkpoint, save_checkpoint
from sgdnoise.stages.recording import RecordingSchedule, ScheduledRecorder
from sgdnoise.stages.runner import Ledger, Outcome, Runner, StopRules

LR = 0.5


@dataclass(frozen=True)
class ToyState:
    left: torch.Tensor  # (R, 1) moving steps left, inf once blown up
    replica_ids: torch.Tensor

    def subset(self, keep: torch.Tensor) -> ToyState:
        return ToyState(self.left[keep], self.replica_ids[keep])


@dataclass
class ToyStepper:
    longest_block: int
    blow_up: dict[int, int]  # replica -> the step that turns it non-finite
    lazy_flags: bool = False  # report non-finite steps as a network step does
    blocks: list[tuple[int, int]] | None = None

    def advance(self, state: ToyState, step: int, stop: int) -> tuple[ToyState, Outcome]:
        self.blocks.append((step, stop))
        left = state.left.clone()
        last_moved = torch.full((left.shape[0],), -1)
        nonfinite_after = torch.full((left.shape[0],), -1)
        for row, replica in enumerate(state.replica_ids.tolist()):
            for current in range(step, stop):
                if self.blow_up.get(replica) == current:
                    left[row] = math.inf
                    nonfinite_after[row] = current if self.lazy_flags else current + 1
                    break
                if left[row] > 0:
                    left[row] -= 1
                    last_moved[row] = current
        return replace(state, left=left), Outcome(last_moved, nonfinite_after)

    def tensors(self, state: ToyState) -> dict[str, torch.Tensor]:
        return {"left": state.left}

    def training_loss(self, state: ToyState) -> torch.Tensor:
        return state.left[:, 0]

    def saved(self, state: ToyState) -> dict:
        return {"left": state.left, "replica_ids": state.replica_ids}

    def restored(self, initial: ToyState, saved: dict, step: int) -> ToyState:
        return ToyState(saved["left"], saved["replica_ids"])


class ToyRecorder(ScheduledRecorder):
    def __init__(self, schedule: RecordingSchedule) -> None:
        super().__init__(schedule)
        self.due_steps: list[int] = []  # every step recorded on the grid (before thinning)
        self.observed = 0  # records evaluated

    def record_if_due(self, step, current) -> None:
        if self.schedule.is_due(step):
            self.due_steps.append(step)
        super().record_if_due(step, current)

    def observe(self, current) -> dict:
        self.observed += 1
        return {"left": current["left"][:, 0].clone()}


def toy_config(stop: str = "zero_loss", max_steps: int = 100, count: int = 4) -> PointConfig:
    run = {
        "max_time": 1e6,
        "max_steps": max_steps,
        "stop": stop,
        "record": {"count": count, "times": "linear"},
        "checkpoint_seconds": 0,
    }
    return resolve_point({"data": {"P": 10}, "run": run})


def train(
    moves: list[int],
    check_every: int | None = 5,
    longest_block: int = 1,
    blow_up: dict[int, int] | None = None,
    lazy: bool = False,
    config: PointConfig | None = None,
    checkpointer: Checkpointer | None = None,
    resumed: dict | None = None,
):
    config = config or toy_config()
    run = config.run
    stepper = ToyStepper(longest_block, blow_up or {}, lazy_flags=lazy, blocks=[])
    recorder = ToyRecorder(RecordingSchedule(run, LR))
    rules = StopRules(LR, run.stop == "zero_loss", 0.0, check_every, lazy=lazy)
    state = ToyState(torch.tensor(moves, dtype=torch.float64)[:, None], torch.arange(len(moves)))
    runner = Runner(stepper, recorder, rules, checkpointer or Checkpointer(None, config))
    ledger = runner.run(state, resumed)
    return ledger, recorder, stepper


@pytest.mark.parametrize("longest_block", [1, 1000])
def test_checks_stop_replicas_with_the_exact_t_star(longest_block):
    ledger, recorder, _ = train([3, 12, 7], check_every=5, longest_block=longest_block)
    assert ledger.status == ["completed"] * 3
    np.testing.assert_array_equal(ledger.t_star, LR * np.array([3, 12, 7]))
    np.testing.assert_array_equal(ledger.steps_taken, [5, 15, 10])  # the first check after
    np.testing.assert_array_equal(ledger.tensors["left"][:, 0], [0, 0, 0])
    assert recorder.schedule.steps[0] == 0 and recorder.schedule.steps[-1] >= 15
    assert (recorder.records["left"][-1] == 0).all()


def test_a_block_ends_at_the_next_record_check_or_budget():
    ledger, recorder, stepper = train([40], check_every=7, longest_block=1000)
    ends = [stop for _, stop in stepper.blocks]
    assert all(stop % 7 == 0 or stop in recorder.due_steps for stop in ends)
    assert any(stop % 7 for stop in ends) and max(b - a for a, b in stepper.blocks) > 1
    assert [start for start, _ in stepper.blocks[1:]] == ends[:-1]  # contiguous
    assert ledger.steps_taken[0] == 42


def test_records_are_taken_before_the_step():
    """The record at step s holds the values before step s: moves - s while moving."""
    _, recorder, _ = train([30], check_every=None, config=toy_config(count=50))
    for step, left in zip(recorder.schedule.steps, recorder.records["left"], strict=True):
        assert left.item() == max(30 - step, 0)


def test_records_dropped_by_thinning_are_never_evaluated():
    """Resolves: every record evaluated at once, half of them then thrown away when an
    open-ended grid thins (the cost of recording up to t*), and deferred values that
    differ from the values at their step (the test above reads them)."""
    _, recorder, _ = train([300], check_every=None, config=toy_config(max_steps=400, count=8))
    assert len(recorder.due_steps) > 2 * len(recorder.schedule.steps)  # it thinned
    assert recorder.observed == len(recorder.schedule.steps)
    for step, left in zip(recorder.schedule.steps, recorder.records["left"], strict=True):
        assert left.item() == max(300 - step, 0)


def test_without_checks_stop_never_runs_the_budget():
    ledger, _, _ = train([3, 12], check_every=None, config=toy_config("never", 20))
    assert ledger.status == ["completed", "completed"]
    np.testing.assert_array_equal(ledger.steps_taken, [20, 20])
    assert np.isnan(ledger.t_star).all()


def test_a_replica_out_of_budget_is_budget_exhausted():
    ledger, _, _ = train([3, 500], check_every=5, config=toy_config(max_steps=50))
    assert ledger.status == ["completed", "budget_exhausted"]
    assert ledger.steps_taken[1] == 50 and np.isnan(ledger.t_star[1])


@pytest.mark.parametrize("longest_block", [1, 1000])
def test_divergence_is_acted_on_after_the_block(longest_block):
    ledger, recorder, _ = train(
        [30, 30], check_every=5, longest_block=longest_block, blow_up={1: 8}
    )
    assert ledger.status == ["completed", "diverged"]
    assert ledger.steps_taken[1] == 9  # the step that turned it non-finite was taken
    assert torch.isnan(ledger.tensors["left"][1]).all()
    assert np.isnan(ledger.t_star[1])
    later = [i for i, step in enumerate(recorder.schedule.steps) if step >= 9]
    assert all(torch.isnan(recorder.records["left"][i][1]) for i in later)


def test_lazy_rules_wait_for_the_check_and_examine_only_idle_replicas():
    """A flagged divergence waits for the next check; a replica that moved since the
    previous check is not examined (its stop waits one more check, t* stays exact)."""
    ledger, _, _ = train([3, 30], check_every=5, blow_up={1: 8}, lazy=True)
    assert ledger.status == ["completed", "diverged"]
    assert ledger.steps_taken[1] == 8  # the flag: the step whose batch saw it
    assert ledger.steps_taken[0] == 10  # moved at step 2 > 0 - 5: examined at 10, not 5
    assert ledger.t_star[0] == LR * 3


def test_a_lazy_run_checks_everyone_at_the_budget():
    ledger, _, _ = train([47], check_every=5, lazy=True, config=toy_config(max_steps=50))
    assert ledger.status == ["completed"]  # idle only since 47: seen by the last check
    assert ledger.steps_taken[0] == 50 and ledger.t_star[0] == LR * 47


@pytest.mark.parametrize(("longest_block", "last_record"), [(1, 6), (1000, 5)])
def test_a_check_that_stops_everyone_ends_a_window_there(longest_block, last_record):
    """Every step is on the record grid here: a step loop still visits the step after
    its check (and records it), a window ends at the check."""
    config = toy_config(count=40)
    ledger, recorder, _ = train([4], 5, longest_block, config=config)
    assert ledger.steps_taken[0] == 5
    assert recorder.schedule.steps[-1] == last_record


def test_the_ledger_is_plain_data_in_a_checkpoint(tmp_path):
    ledger = Ledger.starting({"left": torch.arange(6.0).reshape(3, 2)})
    ledger.stop(torch.tensor([2]), None, "diverged", 4)
    ledger.stop(torch.tensor([0]), {"left": torch.tensor([[9.0, 9.0]])}, "completed", 3, 1.5)
    path = tmp_path / "run.ckpt"
    save_checkpoint(path, toy_config(), {"ledger": ledger.state()})
    restored = Ledger(**load_checkpoint(path, toy_config())["ledger"])
    assert restored.status == ["completed", "completed", "diverged"]
    assert torch.equal(restored.tensors["left"][0], torch.tensor([9.0, 9.0]))
    assert torch.isnan(restored.tensors["left"][2]).all()
    np.testing.assert_array_equal(restored.steps_taken, [3, 0, 4])
    np.testing.assert_array_equal(restored.t_star, [1.5, np.nan, np.nan])
    assert torch.equal(restored.last_moved, ledger.last_moved)


def test_a_resumed_run_is_the_uninterrupted_run(tmp_path):
    config = toy_config(count=12)
    uninterrupted, records, _ = train([9, 33, 21], config=config)
    path = tmp_path / "run.ckpt"
    config = config.replace(run=config.run.replace(checkpoint_seconds=1e-9))
    checkpointer = Checkpointer(path, config)
    original, offers = Checkpointer.offer, {"count": 0}

    def offer_then_stop(self, make_content):
        original(self, make_content)
        offers["count"] += 1
        if offers["count"] == 20:
            raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Checkpointer, "offer", offer_then_stop)
        with pytest.raises(KeyboardInterrupt):
            train([9, 33, 21], config=config, checkpointer=checkpointer)
    resumed_content = checkpointer.resume()
    assert resumed_content["step"] == 19 and resumed_content["ledger"]["status"][0] == "completed"
    resumed, resumed_records, _ = train(
        [9, 33, 21], config=config, checkpointer=checkpointer, resumed=resumed_content
    )
    assert not path.exists()
    assert resumed.status == uninterrupted.status
    np.testing.assert_array_equal(resumed.steps_taken, uninterrupted.steps_taken)
    np.testing.assert_array_equal(resumed.t_star, uninterrupted.t_star)
    assert resumed_records.schedule.steps == records.schedule.steps
    for mine, theirs in zip(resumed_records.records["left"], records.records["left"], strict=True):
        assert torch.equal(mine, theirs)
