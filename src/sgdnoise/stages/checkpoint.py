"""Checkpoints of a training run: saved every run.checkpoint_seconds, resumed exactly.

Every runner's randomness is counter-based (dynamics.random: a function of seed, stream,
replica and step), so the tensors of the training state, the runner's per-replica
bookkeeping and the records taken so far are the whole state of a run: a run resumed
from its checkpoint is the uninterrupted run, bit for bit. What that content is, is the
runner's business; this module only writes it atomically, refuses a checkpoint of
another config, and paces the saves in wall time.
"""

from __future__ import annotations

import os
import time as clock
from collections.abc import Callable
from pathlib import Path

import torch

from sgdnoise.config import config_sha256


def save_checkpoint(path: Path, config: dict, content: dict) -> None:
    """Write ``content`` (anything torch.save pickles) for ``config`` to ``path``, atomically.

    The file is written beside ``path`` and renamed over it, so a kill leaves either the
    previous checkpoint or the new one, never a torn file at ``path``.
    """
    temporary = path.with_name(path.name + ".part")
    torch.save({**content, "config_sha256": config_sha256(config)}, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: Path | None, config: dict) -> dict | None:
    """The content of a checkpoint of this exact config, or None (absent, other config,
    unreadable)."""
    if path is None or not path.exists():
        return None
    try:
        content = torch.load(path, weights_only=False)
    except Exception:  # a checkpoint torn by a kill is only a lost shortcut
        return None
    return content if content.get("config_sha256") == config_sha256(config) else None


class Checkpointer:
    """The checkpoint file of one run: resume from it, save to it when due, remove it.

    ``path`` None (or run.checkpoint_seconds 0 for the saving) disables it. ``offer`` is
    called by the training loop at every point where it can resume; it saves only when
    run.checkpoint_seconds of wall time have passed since the start or the last save,
    and builds the content (``make_content()``) only then.
    """

    def __init__(self, path: str | Path | None, config: dict) -> None:
        self.path = None if path is None else Path(path)
        self.config = config
        self.interval = config["run"]["checkpoint_seconds"]
        self.last_save = clock.perf_counter()

    def resume(self) -> dict | None:
        """The saved content of this run, or None: start from scratch."""
        return load_checkpoint(self.path, self.config)

    def offer(self, make_content: Callable[[], dict]) -> None:
        """Save ``make_content()`` if a checkpoint is due."""
        if self.path is None or not self.interval:
            return
        if clock.perf_counter() - self.last_save > self.interval:
            save_checkpoint(self.path, self.config, make_content())
            self.last_save = clock.perf_counter()

    def remove(self) -> None:
        """Delete the checkpoint (training is done: the artifact supersedes it)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
