"""The training loop every runner shares, with the way its replicas advance plugged in.

A run trains R replicas from step 0 to their stop or the budget. Whatever the model and
however the steps are taken, the loop is the same (the picture is jax-md's: the
simulator is a pair of functions, the loop is outside them):

- before each block of steps: offer a checkpoint, record if the step is on the
  RecordingSchedule (observables on the values BEFORE the step), end at the budget or
  when no replica is left, check the replicas at multiples of run.check_every;
- advance the replicas still training through the block (the plug-in, a Stepper);
- settle what the block reports: last moves, replicas seen at zero loss, divergences.

A block ends at the next record, the next check or the budget, and is at most the
stepper's ``longest_block`` steps. Steppers: the perceptron engine and idle-step
skipping (stages.train, stages.idle_skipping), the networks (stages.train_network) and
the response replay (stages.correlation_response). A stepper of one-step blocks makes
the classic step loop: a check before a step, and a step whose check stopped every
replica still ends the block (the loop moves on to the next step and records it if due).
A stepper of windows (idle-step skipping) ends where its check stopped the last replica.

The Ledger holds what a run knows per replica: its latest frozen values (tensors keyed
by name: the perceptron's ``weights``, a network's parameters), t*, steps taken, status,
last moving step and pending divergence. Statuses (stages.recording): ``completed``
(zero loss, or the budget with stop: never), ``budget_exhausted`` (stop: zero_loss not
reached), ``diverged`` (non-finite values or loss; the frozen values are NaN).

Checkpoints (stages.checkpoint) hold plain data only: the step, the stepper's saved
state, the ledger as a dict, the records and the schedule, and what the caller keeps.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import torch
import xarray as xr
from torch import Tensor

from sgdnoise.config.point import PointConfig
from sgdnoise.data import Dataset
from sgdnoise.observables.networks import finite_parameters
from sgdnoise.stages.checkpoint import Checkpointer
from sgdnoise.stages.recording import (
    ScheduledRecorder,
    data_fingerprint,
    overall_status,
    progress_bar,
    stopping_time,
)

Tensors = Mapping[str, Tensor]
"""Per-replica tensors keyed by name, replica axis first."""


class ActiveReplicas(Protocol):
    """The state of the replicas still training (PerceptronState, NetworkState)."""

    replica_ids: Tensor

    def subset(self, keep: Tensor) -> ActiveReplicas: ...


State = TypeVar("State", bound=ActiveReplicas)


@dataclass(frozen=True)
class Outcome:
    """What a block of steps reports about the rows of the state it advanced.

    last_moved: (R,) the last step of the block whose update moved the row (a batch
    sample with a non-zero loss derivative), -1 if none; None when not tracked.
    nonfinite_after: (R,) the steps taken when the row turned non-finite, -1 if it did
    not; None when only the values tell (the runner looks at them too).
    loss_before: (R,) the training loss on every sample before the block's step, for a
    one-step block whose step evaluates it (a zero-loss check for free); then
    tensors_before holds the rows' values before that step.
    at_zero_loss: (R,) bool, for a stepper that knows when a row's loss is exactly zero at
    the end of the block (the event-driven engine: its violated set is empty); such a row
    stops with t* = lr (last move + 1) and steps taken = last move + 1, the exact values
    of a check (stages.recording.stopping_time at tolerance 0), without a check's cost.
    """

    last_moved: Tensor | None = None
    nonfinite_after: Tensor | None = None
    loss_before: Tensor | None = None
    tensors_before: Tensors | None = None
    at_zero_loss: Tensor | None = None


class Stepper(Protocol[State]):
    """How the replicas of one kind of run advance: the runner's plug-in.

    ``advance(state, step, stop)`` takes the steps step .. stop - 1 of every replica of
    ``state`` and returns the state at ``stop`` with the same rows, and its Outcome.
    ``tensors(state)``: the rows' values, keyed as the ledger. ``training_loss(state)``:
    each row's loss on its whole training set, (R,). ``saved(state)`` (plain data) and
    ``restored(initial, saved, step)`` carry the state through a checkpoint; ``initial``
    is the state of every replica at step 0.
    """

    longest_block: int

    def advance(self, state: State, step: int, stop: int) -> tuple[State, Outcome]: ...

    def tensors(self, state: State) -> Tensors: ...

    def training_loss(self, state: State) -> Tensor: ...

    def saved(self, state: State) -> dict: ...

    def restored(self, initial: State, saved: dict, step: int) -> State: ...


@dataclass(frozen=True)
class StopRules:
    """When replicas stop: run.stop, run.tolerance, run.check_every, and how checks look.

    ``check_every``: checks before the steps that are its multiples; None: no checks (a
    perceptron step that evaluates the full loss reports it, and stop: never needs none).
    ``lazy`` (networks: a check costs a full-set evaluation and a step must not
    synchronise the device): non-finite values reported by a step wait for the next
    check, a check examines for zero loss only the replicas that did not move since the
    previous check, and a last check at the budget examines every replica. Otherwise
    divergences are acted on after every block and a check examines every replica.
    """

    lr: float
    zero_loss: bool
    tolerance: float
    check_every: int | None
    lazy: bool = False


@dataclass
class Ledger:
    """Per-replica bookkeeping of a run (one row per replica, all R of them).

    tensors: the values of every replica, frozen where it stopped (NaN if diverged);
    t_star: zero-loss time (NaN if not reached); steps_taken; status; last_moved: the
    last step that moved it (-1: none); diverged_after: steps taken when a step saw it
    turn non-finite, not yet acted on (-1: none).
    """

    tensors: dict[str, Tensor]
    t_star: np.ndarray
    steps_taken: np.ndarray
    status: list[str]
    last_moved: Tensor
    diverged_after: Tensor

    @classmethod
    def starting(cls, tensors: Tensors) -> Ledger:
        """The ledger of replicas at step 0 with values ``tensors`` (copied)."""
        first = next(iter(tensors.values()))
        replicas = first.shape[0]
        never = torch.full((replicas,), -1, dtype=torch.long, device=first.device)
        return cls(
            tensors={name: value.clone() for name, value in tensors.items()},
            t_star=np.full(replicas, np.nan),
            steps_taken=np.zeros(replicas, dtype=np.int64),
            status=["completed"] * replicas,
            last_moved=never,
            diverged_after=never.clone(),
        )

    def state(self) -> dict:
        """The ledger as plain data (a checkpoint's); ``Ledger(**state)`` rebuilds it."""
        return dict(vars(self))

    def stop(
        self,
        ids: Tensor,
        tensors: Tensors | None,
        status: str,
        steps: int | np.ndarray,
        t_star: float | np.ndarray | None = None,
    ) -> None:
        """Freeze the replicas ``ids`` at ``tensors`` (their rows), NaN when None."""
        for name, value in self.tensors.items():
            value[ids] = torch.nan if tensors is None else tensors[name]
        index = ids.cpu().numpy()
        for replica in index:
            self.status[replica] = status
        self.steps_taken[index] = steps
        if t_star is not None:
            self.t_star[index] = t_star

    def everyone(self, ids: Tensor, tensors: Tensors) -> dict[str, Tensor]:
        """The values of every replica: the frozen ones, and ``tensors`` for ``ids``."""
        current = {name: value.clone() for name, value in self.tensors.items()}
        for name, value in tensors.items():
            current[name][ids] = value
        return current


def rows(tensors: Tensors, keep: Tensor) -> dict[str, Tensor]:
    """The rows ``keep`` of every tensor."""
    return {name: value[keep] for name, value in tensors.items()}


class Runner(Generic[State]):
    """The loop of one run: records, checks, advances through ``stepper``, book-keeps.

    ``kept``: what the caller needs back from a checkpoint besides the run's state
    (plain data, e.g. the perceptron's w(0)); the loop saves it with every checkpoint.
    """

    def __init__(
        self,
        stepper: Stepper[State],
        recorder: ScheduledRecorder,
        rules: StopRules,
        checkpointer: Checkpointer,
        kept: dict | None = None,
    ) -> None:
        self.stepper, self.recorder, self.rules = stepper, recorder, rules
        self.checkpointer, self.kept = checkpointer, kept or {}
        self.schedule = recorder.schedule
        self.ledger: Ledger | None = None

    def run(self, state: State, resumed: dict | None = None, progress: bool = False) -> Ledger:
        """Train ``state`` (every replica at step 0) to the stop or the budget.

        ``resumed``: a checkpoint's content to continue from. Returns the final ledger;
        the recorder holds the records, the final state recorded where training ended.
        """
        stepper, rules, schedule = self.stepper, self.rules, self.schedule
        self.ledger = Ledger.starting(stepper.tensors(state))
        step = 0
        if resumed is not None:
            state = stepper.restored(state, resumed["state"], resumed["step"])
            self.ledger = Ledger(**resumed["ledger"])
            self.recorder.records = resumed["records"]
            schedule.restore(resumed["schedule"])
            step = resumed["step"]
        total_steps = schedule.total_steps
        bar = progress_bar(total_steps, step, progress)
        while True:
            self._offer(step, state)
            self.recorder.record_if_due(step, partial(self._everyone, state))
            if state.replica_ids.numel() == 0 or step == total_steps:
                break
            if rules.check_every is not None and step % rules.check_every == 0:
                state = self._check(state, step)
                if state.replica_ids.numel() == 0:
                    if stepper.longest_block == 1:  # a step loop visits the next step
                        step += 1
                    continue
            stop = self._block_end(step)
            state, outcome = stepper.advance(state, step, stop)
            state = self._settle(state, outcome, step, stop)
            bar.update(stop - step)
            step = stop
        bar.close()
        self.checkpointer.remove()
        if state.replica_ids.numel():
            if rules.lazy:
                state = self._check(state, total_steps, last=True)
            final_status = "budget_exhausted" if rules.zero_loss else "completed"
            self.ledger.stop(state.replica_ids, stepper.tensors(state), final_status, total_steps)
        self.recorder.record_end(self.ledger.tensors, int(self.ledger.steps_taken.max()))
        return self.ledger

    def _everyone(self, state: State) -> dict[str, Tensor]:
        return self.ledger.everyone(state.replica_ids, self.stepper.tensors(state))

    def _offer(self, step: int, state: State) -> None:
        """Checkpoint before ``step`` when run.checkpoint_seconds have passed since the last."""
        self.checkpointer.offer(
            lambda: {
                "step": step,
                "state": self.stepper.saved(state),
                "ledger": self.ledger.state(),
                "records": self.recorder.settled(),
                "schedule": self.schedule.state(),
                **self.kept,
            }
        )

    def _block_end(self, step: int) -> int:
        """The end of the block from ``step``: next record, next check, budget, longest."""
        stop = min(self.schedule.total_steps, step + self.stepper.longest_block)
        next_record = self.schedule.next_step()
        if next_record is not None:
            stop = min(stop, next_record)
        every = self.rules.check_every
        if every is not None:
            stop = min(stop, (step // every + 1) * every)
        return stop

    def _settle(self, state: State, outcome: Outcome, step: int, stop: int) -> State:
        """Book what the block [step, stop) reported; stop replicas seen at zero loss
        before the step and, unless lazy, those that diverged."""
        ledger, rules = self.ledger, self.rules
        ids = state.replica_ids
        if outcome.last_moved is not None:
            moved = outcome.last_moved
            ledger.last_moved[ids] = torch.where(moved >= 0, moved, ledger.last_moved[ids])
        flags = outcome.nonfinite_after
        if rules.lazy:
            if flags is not None:
                pending = ledger.diverged_after[ids]
                ledger.diverged_after[ids] = torch.where(
                    (flags >= 0) & (pending < 0), flags, pending
                )
            return state
        finite = finite_parameters(self.stepper.tensors(state))
        if outcome.at_zero_loss is not None and rules.zero_loss:
            state, finite, flags = self._stop_at_zero_loss(state, outcome, finite, flags)
            ids = state.replica_ids
        loss = outcome.loss_before
        if loss is not None:
            finite &= torch.isfinite(loss)  # a non-finite loss is a divergence
            if rules.zero_loss:
                reached = loss <= rules.tolerance
                if bool(reached.any()):
                    stopped = rows(outcome.tensors_before, reached)
                    ledger.stop(ids[reached], stopped, "completed", step, rules.lr * step)
                    state, finite = state.subset(~reached), finite[~reached]
                    flags = None if flags is None else flags[~reached]
        return self._drop_diverged(state, finite, flags, stop)

    def _stop_at_zero_loss(
        self, state: State, outcome: Outcome, finite: Tensor, flags: Tensor | None
    ) -> tuple[State, Tensor, Tensor | None]:
        """Stop the rows the stepper saw at exactly zero loss (Outcome.at_zero_loss)."""
        reached = outcome.at_zero_loss & finite
        if not bool(reached.any()):
            return state, finite, flags
        ids = state.replica_ids[reached]
        steps = self.ledger.last_moved[ids].cpu().numpy() + 1
        stopped = rows(self.stepper.tensors(state), reached)
        self.ledger.stop(ids, stopped, "completed", steps, self.rules.lr * steps)
        flags = None if flags is None else flags[~reached]
        return state.subset(~reached), finite[~reached], flags

    def _drop_diverged(
        self, state: State, finite: Tensor, flags: Tensor | None, step: int
    ) -> State:
        """Stop as diverged the rows not ``finite`` or flagged; they stopped at their
        flag, else at ``step``. Return the others."""
        diverged = ~finite if flags is None else ~finite | (flags >= 0)
        if not bool(diverged.any()):
            return state
        if flags is None:
            steps = step
        else:
            steps = torch.where(flags >= 0, flags, step)[diverged].cpu().numpy()
        self.ledger.stop(state.replica_ids[diverged], None, "diverged", steps)
        return state.subset(~diverged)

    def _check(self, state: State, step: int, last: bool = False) -> State:
        """The check before ``step`` (``last``: at the budget, after the loop).

        Lazy rules act on the pending divergences first. With stop: zero_loss, replicas
        whose training loss is within run.tolerance stop at ``step`` with t* by the rule
        of stages.recording.stopping_time (exact from the last move at tolerance 0).
        """
        rules, ledger = self.rules, self.ledger
        if rules.lazy:
            finite = finite_parameters(self.stepper.tensors(state))
            flags = ledger.diverged_after[state.replica_ids]
            state = self._drop_diverged(state, finite, flags, step)
        if not rules.zero_loss or state.replica_ids.numel() == 0:
            return state
        ids = state.replica_ids
        if rules.lazy and not last:  # only a replica that did not move can be at zero loss
            candidates = ledger.last_moved[ids] < step - rules.check_every
            if not bool(candidates.any()):
                return state
            reached = torch.zeros_like(candidates)
            reached[candidates] = self.stepper.training_loss(state.subset(candidates)) <= (
                rules.tolerance
            )
        else:
            reached = self.stepper.training_loss(state) <= rules.tolerance
        if not bool(reached.any()):
            return state
        last_moved = ledger.last_moved[ids[reached]].cpu().numpy()
        t_star = stopping_time(rules.lr, last_moved, step, rules.tolerance)
        stopped = rows(self.stepper.tensors(state), reached)
        ledger.stop(ids[reached], stopped, "completed", step, t_star)
        return state.subset(~reached)


def run_artifact(
    config: PointConfig,
    recorder: ScheduledRecorder,
    variables: dict[str, tuple],
    attributes: dict[str, Any],
    metadata: dict[str, tuple[str, str]] | None = None,
) -> xr.Dataset:
    """The run artifact: the records on the schedule's steps, then ``variables``, with
    ``attributes``; described by io.metadata (``metadata``: the runner's own entries)."""
    from sgdnoise.io.metadata import describe

    records = {
        name: (("replica", "record", *recorder.record_dims.get(name, ())), recorder.stacked(name))
        for name in recorder.records
    }
    coordinates = {
        "replica": np.arange(config.run.replicas),
        **recorder.schedule.coordinates(config.optimizer.lr),
    }
    dataset = xr.Dataset({**records, **variables}, coords=coordinates)
    dataset.attrs.update(attributes)
    return describe(dataset, metadata)


def ledger_variables(ledger: Ledger, lr: float) -> dict[str, tuple]:
    """The artifact's per-replica stop variables, from the final ledger."""
    return {
        "t_star": (("replica",), ledger.t_star),
        "steps_to_zero_loss": (("replica",), np.rint(ledger.t_star / lr)),
        "steps_taken": (("replica",), ledger.steps_taken),
        "replica_status": (("replica",), np.array(ledger.status, dtype=object)),
    }


def run_attributes(
    config: PointConfig,
    ledger: Ledger,
    datasets: list[Dataset],
    device: torch.device,
    wall_seconds: float,
) -> dict[str, Any]:
    """The attributes every run artifact carries: provenance, status, data, device, time."""
    from sgdnoise.io.artifact import provenance

    return {
        **provenance("run", config),
        "status": overall_status(ledger.status),
        "device": str(device),
        "wall_seconds": wall_seconds,
        "data_sha256": data_fingerprint(datasets),
        "learning_rate": config.optimizer.lr,
    }
