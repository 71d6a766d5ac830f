"""Artifacts: self-describing, atomic, and refused with the file named when unusable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch
import xarray as xr
import yaml

from sgdnoise.config import PointConfig, resolve_point
from sgdnoise.io.artifact import ArtifactError, read_artifact, write_artifact
from sgdnoise.stages.checkpoint import Checkpointer
from sgdnoise.stages.train import train_point
from sgdnoise.stages.train_network import train_network_point
from sgdnoise.stages.train_user_model import train_user_model_point


@pytest.fixture
def run_file(tmp_path, small_point):
    path = tmp_path / "run.nc"
    write_artifact(train_point(small_point()), path, "run")
    return path


def test_run_artifact_opens_with_plain_xarray_and_describes_itself(run_file):
    with xr.open_dataset(run_file) as run:
        assert set(run["train_loss"].dims) == {"replica", "record"}
        lr = json.loads(run.attrs["config"])["optimizer"]["lr"]
        np.testing.assert_allclose(run["time"].values, lr * run["step"].values)
        for name in run.data_vars:
            assert run[name].attrs["units"] and run[name].attrs["long_name"]
        for key in (
            "schema_version",
            "sgdnoise_version",
            "git_commit",
            "config",
            "config_sha256",
            "torch_version",
            "numpy_version",
            "device",
            "wall_seconds",
            "status",
        ):
            assert key in run.attrs, key
        assert json.loads(run.attrs["config"])["optimizer"]["kind"] == "sgd"


def test_show_prints_the_scalars(run_file, sgdnoise_command):
    result = subprocess.run(
        [*sgdnoise_command, "show", str(run_file)], capture_output=True, text=True, check=True
    )
    summary = json.loads(result.stdout)
    for key in ("status", "config_sha256", "train_loss", "train_error", "t_star"):
        assert key in summary


def test_corrupt_truncated_and_foreign_files_are_refused_by_name(tmp_path, run_file):
    corrupt = tmp_path / "corrupt.nc"
    corrupt.write_bytes(b"this is not netcdf at all")
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(run_file.read_bytes()[:2000])
    foreign = tmp_path / "foreign.nc"
    xr.Dataset({"x": ("t", np.arange(3.0))}).to_netcdf(foreign)
    for path, reason in [
        (corrupt, "not a readable NetCDF"),
        (truncated, "not a readable NetCDF"),
        (foreign, "not an sgdnoise artifact"),
    ]:
        with pytest.raises(ArtifactError) as error:
            read_artifact(path)
        assert str(path) in str(error.value) and reason in str(error.value)


def test_other_schema_version_and_wrong_kind_are_refused(tmp_path, run_file):
    run = read_artifact(run_file)
    run.attrs["schema_version"] = 99
    old = tmp_path / "old.nc"
    run.to_netcdf(old)
    with pytest.raises(ArtifactError, match="schema_version 99"):
        read_artifact(old)
    with pytest.raises(ArtifactError, match="a run artifact where a summary"):
        read_artifact(run_file, "summary")


def test_cli_reports_bad_input_in_one_line(tmp_path, sgdnoise_command):
    point = tmp_path / "bad.yaml"
    point.write_text(yaml.safe_dump({"optimizer": {"kind": "adamw"}, "data": {"P": 5}}))
    result = subprocess.run(
        [*sgdnoise_command, "point", str(point), "--out", str(tmp_path / "x.nc")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "optimizer.kind" in result.stderr and "persistent_sgd" in result.stderr
    assert not (tmp_path / "x.nc").exists()


def test_killed_training_leaves_no_artifact(tmp_path, sgdnoise_command):
    point = tmp_path / "long.yaml"
    point.write_text(
        yaml.safe_dump(
            {
                "data": {"N": 400, "P": 800},
                "optimizer": {"kind": "sgd", "b": 0.5},
                "run": {"replicas": 8, "max_time": 1e5, "checkpoint_seconds": 0},
            }
        )
    )
    out = tmp_path / "runs" / "long.nc"
    process = subprocess.Popen(
        [*sgdnoise_command, "point", str(point), "--out", str(out), "--quiet"]
    )
    time.sleep(4)
    assert process.poll() is None, "the run should still be training"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not out.exists()
    leftovers = list(out.parent.glob("*")) if out.parent.exists() else []
    assert all(not p.name.endswith(".nc") for p in leftovers)


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path, sgdnoise_command):
    config = {
        "data": {"N": 100, "P": 200},
        "optimizer": {"kind": "persistent_sgd", "b": 0.3, "tau": 1.0},
        "run": {
            "replicas": 4,
            "max_time": 600.0,
            "checkpoint_seconds": 0.3,
            "record": {"count": 30},
        },
    }
    command, out, checkpoint = _point_command(tmp_path, config, sgdnoise_command)
    _kill_once_checkpointed(command, checkpoint, 0.5)
    assert checkpoint.exists() and not out.exists()
    subprocess.run(command, check=True)
    assert not checkpoint.exists()
    uninterrupted = train_point(resolve_point(config))
    resumed = read_artifact(out)
    for name in ("final_weights", "train_loss", "violated_fraction"):
        np.testing.assert_array_equal(resumed[name].values, uninterrupted[name].values)


def test_a_resumed_run_counts_the_wall_time_of_the_killed_process(tmp_path, small_point):
    """wall_seconds of a run resumed from a checkpoint is the run's, not the last
    process's: the checkpoint carries the time spent so far (here a first process that
    ran 100 s), the resumed process adds its own."""
    config = small_point(run={"replicas": 2, "checkpoint_seconds": 1.0})
    path = tmp_path / "run.nc.ckpt"
    first = Checkpointer(path, config, started=time.perf_counter() - 100.0)
    first.last_save -= 10.0  # a save is due
    first.offer(lambda: {"step": 3})
    second = Checkpointer(path, config)
    assert second.resume() == {"step": 3}  # the time is the checkpointer's, not the runner's
    assert 100.0 <= second.wall_seconds() < 110.0
    assert Checkpointer(tmp_path / "absent.ckpt", config).wall_seconds() < 10.0


def _point_command(tmp_path, config: dict | PointConfig, sgdnoise_command, *options: str):
    """``sgdnoise [options] point`` of ``config`` (written to a file), its artifact and
    its checkpoint file."""
    point = tmp_path / "point.yaml"
    mapping = config.to_mapping() if isinstance(config, PointConfig) else config
    point.write_text(yaml.safe_dump(mapping))
    out = tmp_path / "resumed.nc"
    command = [*sgdnoise_command, *options, "point", str(point), "--out", str(out), "--quiet"]
    return command, out, tmp_path / "resumed.nc.ckpt"


def _kill_once_checkpointed(command: list[str], checkpoint, after: float) -> None:
    """Start ``command``, SIGKILL it ``after`` seconds past its first checkpoint."""
    process = subprocess.Popen(command)
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    time.sleep(after)
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def _single_threaded(train, config):
    """``train(config)`` with one torch thread, as the ``--threads 1`` subprocess: the same
    reductions, the same bits."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(config)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_a_killed_network_run_resumes_to_the_uninterrupted_result(tmp_path, sgdnoise_command):
    """Killed after a checkpoint and before any replica stops, the rerun resumes: its
    artifact (stop times, records, final stabilities) is the uninterrupted run's."""
    config = resolve_point(
        {
            "model": {"kind": "fcn", "depth": 2, "width": 16, "activation": "gelu", "alpha": 1.0},
            "loss": {"kind": "hinge", "kappa": None},
            "data": {"kind": "mnist_parity", "P": 256, "P_test": 64},
            "optimizer": {"kind": "minibatch_sgd", "batch_size": 8, "temperature": 2.0**-8},
            "run": {
                "replicas": 3,
                "max_time": 1e5,
                "max_steps": 20_000,
                "stop": "zero_loss",
                "check_every": 8,
                "dtype": "float64",
                "seed": 5,
                "checkpoint_seconds": 0.2,
                "record": {"count": 20},
            },
        }
    )
    command, out, checkpoint = _point_command(tmp_path, config, sgdnoise_command, "--threads", "1")
    _kill_once_checkpointed(command, checkpoint, 0.2)
    assert not out.exists()
    killed_at = torch.load(checkpoint, weights_only=False)["step"]
    subprocess.run(command, check=True)
    assert not checkpoint.exists()

    uninterrupted = _single_threaded(train_network_point, config)
    resumed = read_artifact(out)
    assert 0 < killed_at < resumed["steps_taken"].min()  # the stops happened after resuming
    assert set(resumed["replica_status"].values) == {"completed"}
    for name, variable in uninterrupted.data_vars.items():
        np.testing.assert_array_equal(resumed[name].values, variable.values, err_msg=name)


@pytest.mark.slow
def test_a_killed_user_model_run_resumes_to_the_uninterrupted_result(tmp_path, sgdnoise_command):
    """model.kind torch under persistent SGD (a selection chain in the state): killed
    after a checkpoint, the rerun's artifact is the uninterrupted run's, bit for bit."""
    models = tmp_path / "models.py"
    models.write_text(
        "from torch import nn\n\n\ndef mlp():\n"
        "    return nn.Sequential(nn.Linear(20, 16), nn.Tanh(), nn.Linear(16, 1))\n"
    )
    config = resolve_point(
        {
            "model": {
                "kind": "torch",
                "factory": f"{models}:mlp",
                "constraint": "ridge",
                "ridge": 0.1,
            },
            "loss": {"kind": "square_hinge", "kappa": 1.0},
            "data": {"kind": "random_patterns", "N": 20, "P": 100},
            "optimizer": {"kind": "persistent_sgd", "b": 0.3, "tau": 1.0, "lr": 0.01},
            "run": {
                "replicas": 4,
                "max_time": 150.0,
                "checkpoint_seconds": 0.3,
                "record": {"count": 30},
            },
        }
    )
    command, out, checkpoint = _point_command(tmp_path, config, sgdnoise_command, "--threads", "1")
    _kill_once_checkpointed(command, checkpoint, 0.5)
    assert checkpoint.exists() and not out.exists()
    subprocess.run(command, check=True)
    assert not checkpoint.exists()
    uninterrupted = _single_threaded(train_user_model_point, config)
    resumed = read_artifact(out)
    for name in ("final_weights", "train_loss", "weight_change"):
        np.testing.assert_array_equal(resumed[name].values, uninterrupted[name].values)
