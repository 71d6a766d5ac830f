"""What every runner shares: device choice, the recording grid, stop times, statuses.

The perceptron runner (stages.train) and the network runner (stages.train_network)
record on the same kind of step grid (RecordingSchedule), stop on the same rules and
mark replicas with the same statuses, so their artifacts read alike:

- ``completed``: reached zero training loss (stop: zero_loss), or ran its budget with
  stop: never;
- ``budget_exhausted``: stop: zero_loss not reached within the budget;
- ``diverged``: non-finite weights or loss (recorded, never raised).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from sgdnoise.config.point import PointConfig, RunConfig
from sgdnoise.data import Dataset
from sgdnoise.stages.generate_data import build_datasets

STATUSES = ("completed", "budget_exhausted", "diverged")
PENDING_BYTES = 1 << 28  # copies of records awaiting evaluation (256 MiB) before it is forced


def choose_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu; cuda without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("run.device is cuda but torch sees no CUDA device; use auto or cpu")
    return torch.device(name)


class RecordingSchedule:
    """The steps at which a runner records every replica's observables.

    Records are taken on the weights BEFORE the step's update; the artifact's time
    coordinate is t = lr x step of the steps actually recorded (dimension ``record``).

    - run.stop never: a fixed grid over the steps the budget allows,
      min(max_time / lr, max_steps): log (step 0, then log-spaced over three decades
      below the last step) or linear. Steps are distinct (no staircase of repeated steps
      when the grid is finer than one step).
    - run.stop zero_loss: the stopping time is unknown, so the grid is open-ended: every
      step at first, then geometric (each step at least 1 + 1/count times the previous)
      or evenly spaced; whenever 2 x count records are held, every other one is dropped
      and the spacing doubles (the ratio squares). A run that stops at t* >= count steps
      therefore holds between count and 2 count records in [0, t*], whatever max_time is.

    Recording ends where training ends: the last record is the step at which the last
    replica stopped (or the budget); no record is invented past it.
    """

    def __init__(self, run: RunConfig, lr: float) -> None:
        total_steps = run.step_budget(lr)
        self.total_steps = max(total_steps, 0)
        self.count = run.record.count
        self.log = run.record.times == "log"
        self.open_ended = run.stop == "zero_loss"
        self.steps: list[int] = []
        self.ratio = 1.0 + 1.0 / self.count  # open-ended log spacing
        self.interval = 1  # open-ended linear spacing
        self._planned = [] if self.open_ended else self._fixed_grid()
        self._next: int | None = 0

    @classmethod
    def at_steps(cls, steps: Iterable[int]) -> RecordingSchedule:
        """A fixed grid of the given steps (not empty); the budget ends at the last one."""
        planned = sorted({int(step) for step in steps})
        schedule = cls.__new__(cls)
        schedule.total_steps, schedule.count = planned[-1], len(planned)
        schedule.log = schedule.open_ended = False
        schedule.steps, schedule.ratio, schedule.interval = [], 1.0, 1
        schedule._planned, schedule._next = planned, planned[0]
        return schedule

    def _fixed_grid(self) -> list[int]:
        last, count = self.total_steps, self.count
        if self.log:
            first = max(1.0, last * 1e-3)
            later = np.geomspace(first, max(last, first), count - 1) if last > 0 else []
            steps = np.concatenate([[0], np.rint(later)])
        else:
            steps = np.rint(np.linspace(0, last, count))
        return sorted({int(step) for step in steps if step <= last})

    def next_step(self) -> int | None:
        """The next step to record (None: the grid is exhausted within the budget)."""
        return self._next

    def is_due(self, step: int) -> bool:
        """Whether ``step`` is the next step to record."""
        return self._next == step

    def taken(self, step: int) -> list[int] | None:
        """Note that ``step`` was recorded. When the open-ended grid then holds 2 x count
        records it thins: return the indices of the records kept (every other one), which
        the caller keeps of its own; else None."""
        self.steps.append(step)
        kept = None
        if self.open_ended and len(self.steps) >= 2 * self.count:
            kept = list(range(0, len(self.steps), 2))
            self.steps = [self.steps[i] for i in kept]
            self.ratio *= self.ratio
            self.interval *= 2
        self._next = self._following(self.steps[-1] if self.open_ended else step)
        return kept

    def _following(self, last: int) -> int | None:
        if self.open_ended:
            spacing = self.ratio * last if self.log else last + self.interval
            candidate = max(last + 1, math.ceil(spacing - 1e-9))
        else:
            later = [planned for planned in self._planned if planned > last]
            candidate = later[0] if later else None
        return candidate if candidate is not None and candidate <= self.total_steps else None

    def needs_final(self, end_step: int) -> bool:
        """Whether the step where training ended still has to be recorded (records
        taken later, while a stopped replica idled before its stop was seen, stay)."""
        return not self.steps or end_step > self.steps[-1]

    def coordinates(self, lr: float) -> dict[str, tuple]:
        """The ``record`` index and its ``time`` (lr x step) and ``step`` coordinates.

        The index lets points with different numbers of records combine (outer join:
        a shorter run reads NaN past its last record).
        """
        steps = np.asarray(self.steps, dtype=np.int64)
        return {
            "record": ("record", np.arange(len(steps))),
            "time": ("record", lr * steps),
            "step": ("record", steps),
        }

    def state(self) -> dict:
        """What a checkpoint keeps to resume the schedule exactly."""
        return {
            "steps": list(self.steps),
            "ratio": self.ratio,
            "interval": self.interval,
            "next": self._next,
        }

    def restore(self, saved: dict) -> None:
        """Resume from ``state()``."""
        self.steps, self.ratio = list(saved["steps"]), saved["ratio"]
        self.interval, self._next = saved["interval"], saved["next"]


class ScheduledRecorder:
    """Records of every replica taken on a RecordingSchedule, evaluated when needed.

    A runner's recorder subclasses it and defines ``observe(current)``: the observables
    of every replica (name -> tensor, replica axis first). ``current`` holds the
    per-replica tensors of every replica keyed by name (the perceptron's ``weights``, a
    network's parameters). ``record_dims``: the dimensions of a recorded observable
    beyond (replica, record), by name. ``records``: the evaluated records, one list per
    observable.

    Evaluation is deferred: a record keeps a copy of ``current`` and is observed when
    ``settled`` is asked (a checkpoint, the end of the run) or when the copies pending
    exceed PENDING_BYTES. An open-ended schedule (stop: zero_loss) drops every other
    record when it thins; a pending record dropped there is never observed. The values
    are the same as if observed at once (the same tensors through the same code).
    """

    record_dims: dict[str, tuple[str, ...]] = {}

    def __init__(self, schedule: RecordingSchedule) -> None:
        self.schedule = schedule
        self.records: dict[str, list[torch.Tensor]] = {}
        self._pending: list[Mapping[str, torch.Tensor]] = []

    def observe(self, current: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def record_if_due(self, step: int, current: Callable[[], Mapping[str, torch.Tensor]]) -> None:
        """Record ``current()`` if ``step`` is on the schedule (built only then; the
        tensors it returns must not change afterwards: the runner's are copies)."""
        if not self.schedule.is_due(step):
            return
        self._pending.append(current())
        kept = self.schedule.taken(step)
        if kept is not None:
            self._thin(kept)
        pending_bytes = sum(
            value.numel() * value.element_size()
            for snapshot in self._pending
            for value in snapshot.values()
        )
        if pending_bytes > PENDING_BYTES:
            self.settled()

    def _thin(self, kept: list[int]) -> None:
        """Keep the records ``kept`` (indices over the evaluated, then the pending ones)."""
        evaluated = len(next(iter(self.records.values()), []))
        for name, values in self.records.items():
            self.records[name] = [values[i] for i in kept if i < evaluated]
        self._pending = [self._pending[i - evaluated] for i in kept if i >= evaluated]

    def settled(self) -> dict[str, list[torch.Tensor]]:
        """Every record evaluated (the pending ones observed now, in order): ``records``."""
        for snapshot in self._pending:
            for name, value in self.observe(snapshot).items():
                self.records.setdefault(name, []).append(value.detach().cpu())
        self._pending = []
        return self.records

    def record_end(self, final: Mapping[str, torch.Tensor], end_step: int) -> None:
        """Record the final state at the step where training ended, unless already done,
        and evaluate every record."""
        if self.schedule.needs_final(end_step):
            self._pending.append(final)
            self.schedule.steps.append(end_step)
        self.settled()

    def stacked(self, name: str) -> np.ndarray:
        """(replica, record, ...) array of one recorded observable."""
        return torch.stack(self.records[name], dim=1).numpy()


def data_fingerprint(datasets: Sequence[Dataset]) -> str:
    """sha256 of the training and test arrays (the data an artifact was trained on)."""
    digest = hashlib.sha256()
    for dataset in datasets:
        for array in (dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test):
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def stopping_time(lr: float, last_moved: np.ndarray, step: int, tolerance: float) -> np.ndarray:
    """Training time t* (lr x steps) of replicas found at zero loss at step ``step``.

    With tolerance 0 the criterion is exact zero loss: the weights last changed at step
    ``last_moved`` (the last step whose batch held a sample with a non-zero loss
    derivative), so t* = lr (last_moved + 1), whatever the checking interval. With a
    positive tolerance the loss is only small, and t* = lr x step, the step it was seen.
    """
    last_moved = np.asarray(last_moved)
    if tolerance == 0:
        return lr * (last_moved + 1.0)
    return np.full(last_moved.shape, lr * step)


def overall_status(statuses: Iterable[str]) -> str:
    """A point's status from its replicas': diverged > budget_exhausted > completed."""
    present = set(statuses)
    for status in ("diverged", "budget_exhausted"):
        if status in present:
            return status
    return "completed"


def run_setup(
    config: PointConfig, datasets: list[Dataset] | None
) -> tuple[torch.device, torch.dtype, list[Dataset]]:
    """Device, dtype and training data of a point (every runner's); data built when None."""
    run = config.run
    device = choose_device(run.device)
    dtype = torch.float64 if run.dtype == "float64" else torch.float32
    return device, dtype, build_datasets(config) if datasets is None else datasets


def progress_bar(total_steps: int, first_step: int, progress: bool) -> tqdm:
    """The training loop's step counter (shown only with ``progress``)."""
    return tqdm(
        total=total_steps,
        initial=first_step,
        disable=not progress,
        desc="train",
        unit="step",
        mininterval=1,
    )
