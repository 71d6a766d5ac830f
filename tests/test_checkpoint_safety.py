"""Files a run reads or writes are safe to share: a checkpoint file never runs code, and
an artifact gets the permissions a plain file would (the umask's), not private ones."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from sgdnoise.config import config_sha256
from sgdnoise.io.artifact import write_artifact
from sgdnoise.stages.checkpoint import load_checkpoint, save_checkpoint
from sgdnoise.stages.train import train_point


class _Planted:
    """Unpickling it runs code: it creates the directory ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


@pytest.fixture
def tiny_point(small_point):
    return small_point(run={"replicas": 2, "max_time": 0.5})


@pytest.mark.parametrize("header", ["none", "forged"])
def test_a_planted_pickle_at_the_checkpoint_path_is_never_run(tmp_path, tiny_point, header):
    """A pickle planted where the run looks for its checkpoint, claiming the run's config
    hash (inside, as checkpoints once did, and with a forged header copied from a
    genuine checkpoint), is refused with a warning naming it: the run starts from
    scratch and ends as the uninterrupted run."""
    checkpoint, marker = tmp_path / "run.nc.ckpt", tmp_path / "code-ran"
    torch.save(
        {"config_sha256": config_sha256(tiny_point), "step": 0, "book": _Planted(marker)},
        checkpoint,
    )
    if header == "forged":
        genuine = tmp_path / "genuine.ckpt"
        save_checkpoint(genuine, tiny_point, {"step": 0})
        with zipfile.ZipFile(genuine) as source, zipfile.ZipFile(checkpoint, "a") as target:
            target.comment = source.comment
    with pytest.warns(RuntimeWarning, match=str(checkpoint)):
        resumed = train_point(tiny_point, checkpoint=checkpoint)
    assert not marker.exists()
    assert not checkpoint.exists()
    uninterrupted = train_point(tiny_point)
    np.testing.assert_array_equal(
        resumed["final_weights"].values, uninterrupted["final_weights"].values
    )
    assert set(resumed["replica_status"].values) == {"completed"}


def test_a_checkpoint_round_trips_tensors_arrays_and_ledgers(tmp_path, tiny_point):
    book = {
        "weights": torch.randn(2, 3, dtype=torch.float64),
        "t_star": np.array([np.nan, 1.5]),
        "steps_taken": np.array([0, 7], dtype=np.int64),
        "status": ["completed", "diverged"],
        "last_moved": np.array([-1, 6], dtype=np.int64),
    }
    content = {
        "step": 7,
        "state": (torch.ones(2, 3), None, torch.arange(2)),
        "book": book,
        "records": {"train_loss": [torch.zeros(2), torch.ones(2)]},
        "schedule": {"steps": [0, 4], "ratio": 1.25, "next": None},
        "gd_init_loss": float("nan"),
    }
    path = tmp_path / "run.nc.ckpt"
    save_checkpoint(path, tiny_point, content)
    loaded = load_checkpoint(path, tiny_point)
    assert loaded.keys() == content.keys()
    assert loaded["step"] == 7 and np.isnan(loaded["gd_init_loss"])
    assert isinstance(loaded["state"], tuple) and loaded["state"][1] is None
    assert torch.equal(loaded["state"][2], content["state"][2])
    assert loaded["book"]["status"] == book["status"]
    assert torch.equal(loaded["book"]["weights"], book["weights"])
    for name in ("t_star", "steps_taken", "last_moved"):
        saved, restored = book[name], loaded["book"][name]
        assert restored.dtype == saved.dtype
        np.testing.assert_array_equal(restored, saved)
    assert torch.equal(loaded["records"]["train_loss"][1], torch.ones(2))
    assert loaded["schedule"] == content["schedule"]


def test_a_checkpoint_of_another_config_or_torn_is_ignored(tmp_path, tiny_point, small_point):
    path = tmp_path / "run.nc.ckpt"
    save_checkpoint(path, small_point(run={"replicas": 3}), {"step": 1})
    with pytest.warns(RuntimeWarning, match="another config"):
        assert load_checkpoint(path, tiny_point) is None
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match=str(path)):
        assert load_checkpoint(path, tiny_point) is None


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664)])
def test_an_artifact_has_the_mode_the_umask_gives(tmp_path, umask, mode):
    dataset = xr.Dataset(
        {"loss": ("record", np.zeros(3), {"units": "1", "long_name": "training loss"})}
    )
    previous = os.umask(umask)
    try:
        write_artifact(dataset, tmp_path / "run.nc", "run")
    finally:
        os.umask(previous)
    assert (tmp_path / "run.nc").stat().st_mode & 0o777 == mode
