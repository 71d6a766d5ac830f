"""What every runner shares: device choice, the recording grid, stop times, statuses.

The perceptron runner (stages.train) and the network runner (stages.train_network)
record on the same nominal time grid, stop on the same rules and mark replicas with
the same statuses, so their artifacts read alike:

- ``completed``: reached zero training loss (stop: zero_loss), or ran its budget with
  stop: never;
- ``budget_exhausted``: stop: zero_loss not reached within the budget;
- ``diverged``: non-finite weights or loss (recorded, never raised).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from sgdnoise.data import Dataset
from sgdnoise.stages.generate_data import build_datasets

STATUSES = ("completed", "budget_exhausted", "diverged")


def choose_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu; cuda without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("run.device is cuda but torch sees no CUDA device; use auto or cpu")
    return torch.device(name)


def recording_grid(run: dict, lr: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Nominal record times, the step recorded at each, and the total number of steps.

    log: t = 0, then count - 1 times log-spaced over the three decades below max_time.
    linear: count times evenly spaced over [0, max_time].
    The nominal times depend only on run.max_time and run.record, so points with
    different learning rates share one time coordinate; the step recorded is
    round(t / lr), capped by the step budget (min(max_time / lr, max_steps)).
    """
    total_steps = round(run["max_time"] / lr)
    if run["max_steps"] is not None:
        total_steps = min(total_steps, run["max_steps"])
    max_time = total_steps * lr
    count = run["record"]["count"]
    if run["record"]["times"] == "linear":
        times = np.linspace(0.0, run["max_time"], count)
    else:
        times = np.concatenate(
            [[0.0], np.geomspace(run["max_time"] * 1e-3, run["max_time"], count - 1)]
        )
    steps = np.minimum(np.rint(times / lr).astype(np.int64), total_steps)
    steps[-1] = total_steps if max_time > 0 else 0
    return times, steps, total_steps


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
    config: dict, datasets: list[Dataset] | None
) -> tuple[torch.device, torch.dtype, list[Dataset]]:
    """Device, dtype and training data of a point (every runner's); data built when None."""
    run = config["run"]
    device = choose_device(run["device"])
    dtype = torch.float64 if run["dtype"] == "float64" else torch.float32
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
