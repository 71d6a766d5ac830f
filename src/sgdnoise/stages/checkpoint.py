"""Checkpoints of a training run: saved every run.checkpoint_seconds, resumed exactly.

Every runner's randomness is counter-based (dynamics.random: a function of seed, stream,
replica and step), so the tensors of the training state, the runner's per-replica
bookkeeping and the records taken so far are the whole state of a run: a run resumed
from its checkpoint is the uninterrupted run, bit for bit. What that content is, is the
runner's business; this module writes it atomically, refuses a checkpoint of another
config, and paces the saves in wall time.

A checkpoint file is read without running code from it: whoever can write beside a run's
artifact must not be able to execute code in the job that resumes it. The file is a
torch.save zip archive of plain data only (tensors, dicts with str keys, lists, tuples,
str, int, float, bool, None), which ``torch.load(weights_only=True)`` reads without
unpickling anything else. The content is encoded to that form and back: numpy arrays
travel as tensors; any other type (an object of any class) is refused when saving and
when loading. The archive's comment holds a JSON
header with the config's sha256, read (plain zip metadata) before the payload is
deserialised: a checkpoint of another config is never unpickled at all.
"""

from __future__ import annotations

import json
import os
import time as clock
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sgdnoise.config import config_sha256
from sgdnoise.config.point import PointConfig

HEADER_FORMAT = "sgdnoise checkpoint"
TYPE_KEY = "__checkpoint_type__"  # marks an encoded numpy array in a dict
PLAIN_TYPES = (bool, int, float, str)
ELAPSED_KEY = "wall_seconds_so_far"  # content key: the run's wall time at the save


class UnsafeCheckpointError(ValueError):
    """Checkpoint content this module does not encode or rebuild."""


def _encode(value: Any) -> Any:
    """``value`` as plain data that ``torch.load(weights_only=True)`` reads."""
    if value is None or type(value) in PLAIN_TYPES or isinstance(value, torch.Tensor):
        return value
    if type(value) in (list, tuple):
        return type(value)(_encode(item) for item in value)
    if type(value) is dict:
        if TYPE_KEY in value or not all(type(key) is str for key in value):
            raise UnsafeCheckpointError(f"a checkpoint dict needs str keys other than {TYPE_KEY}")
        return {key: _encode(item) for key, item in value.items()}
    if type(value) is np.ndarray:
        return {TYPE_KEY: "numpy.ndarray", "data": torch.from_numpy(value.copy())}
    name = f"{type(value).__module__}.{type(value).__qualname__}"
    raise UnsafeCheckpointError(f"a checkpoint holds plain data only, not a {name}")


def _decode(value: Any) -> Any:
    """The content ``_encode`` made ``value`` from."""
    if type(value) in (list, tuple):
        return type(value)(_decode(item) for item in value)
    if type(value) is not dict:
        return value
    name = value.get(TYPE_KEY)
    if name is None:
        return {key: _decode(item) for key, item in value.items()}
    if name == "numpy.ndarray" and isinstance(value.get("data"), torch.Tensor):
        return value["data"].numpy()
    raise UnsafeCheckpointError(f"it holds a {name!r}: a checkpoint holds plain data only")


def save_checkpoint(path: Path, config: PointConfig, content: dict) -> None:
    """Write ``content`` for ``config`` to ``path``, atomically.

    ``content``: tensors, numpy arrays, and dicts (str keys), lists and tuples of them
    or of str, int, float, bool, None
    (UnsafeCheckpointError otherwise). The file is written beside ``path`` and renamed
    over it, so a kill leaves either the previous checkpoint or the new one, never a
    torn file at ``path``.
    """
    temporary = path.with_name(path.name + ".part")
    torch.save(_encode(content), temporary)
    header = {"format": HEADER_FORMAT, "config_sha256": config_sha256(config)}
    with zipfile.ZipFile(temporary, "a") as archive:
        archive.comment = json.dumps(header).encode()
    os.replace(temporary, path)


def _ignored(path: Path, reason: str) -> None:
    """Warn (on stderr) that the checkpoint at ``path`` is not resumed, and why."""
    warnings.warn(
        f"{path}: {reason}; ignored, the run starts from scratch", RuntimeWarning, stacklevel=3
    )


def load_checkpoint(path: Path | None, config: PointConfig) -> dict | None:
    """The content of a checkpoint of this exact config, or None: absent, or (with a
    warning naming the file) of another config, unreadable or unsafe."""
    if path is None or not path.exists():
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            header = json.loads(archive.comment)
    except (OSError, zipfile.BadZipFile, ValueError):  # a kill can only cost the shortcut
        return _ignored(path, "not an sgdnoise checkpoint (no readable header: torn or foreign)")
    if not isinstance(header, dict) or header.get("format") != HEADER_FORMAT:
        return _ignored(path, "not an sgdnoise checkpoint (unknown header)")
    if header.get("config_sha256") != config_sha256(config):
        return _ignored(path, "a checkpoint of another config")
    try:
        payload = torch.load(path, weights_only=True)
    except Exception as error:  # UnpicklingError (a disallowed type), RuntimeError...
        return _ignored(
            path, f"unreadable or unsafe (not plain data and tensors): {type(error).__name__}"
        )
    try:
        content = _decode(payload)
    except UnsafeCheckpointError as error:
        return _ignored(path, f"unsafe: {error}")
    if type(content) is not dict:
        return _ignored(path, "unsafe: its content is not a dict")
    return content


class Checkpointer:
    """The checkpoint file of one run: resume from it, save to it when due, remove it.

    ``path`` None (or run.checkpoint_seconds 0 for the saving) disables it. ``offer`` is
    called by the training loop at every point where it can resume; it saves only when
    run.checkpoint_seconds of wall time have passed since the start or the last save,
    and builds the content (``make_content()``) only then.
    """

    def __init__(
        self, path: str | Path | None, config: PointConfig, started: float | None = None
    ) -> None:
        self.path = None if path is None else Path(path)
        self.config = config
        self.interval = config.run.checkpoint_seconds
        self.last_save = clock.perf_counter()
        # this process's part of the run began at ``started`` (perf_counter; default now)
        self.started = self.last_save if started is None else started
        self.earlier_seconds = 0.0  # wall time of the processes before a resumed checkpoint

    def resume(self) -> dict | None:
        """The saved content of this run, or None: start from scratch."""
        content = load_checkpoint(self.path, self.config)
        if content is not None:
            self.earlier_seconds = float(content.pop(ELAPSED_KEY, 0.0))
        return content

    def wall_seconds(self) -> float:
        """Wall time of the run so far, over every process that worked on it: this one's
        since ``started`` plus what the checkpoint it resumed from had accumulated."""
        return self.earlier_seconds + clock.perf_counter() - self.started

    def offer(self, make_content: Callable[[], dict]) -> None:
        """Save ``make_content()`` if a checkpoint is due."""
        if self.path is None or not self.interval:
            return
        if clock.perf_counter() - self.last_save > self.interval:
            content = make_content()
            content[ELAPSED_KEY] = self.wall_seconds()
            save_checkpoint(self.path, self.config, content)
            self.last_save = clock.perf_counter()

    def remove(self) -> None:
        """Delete the checkpoint (training is done: the artifact supersedes it)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
