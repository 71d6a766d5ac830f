"""Faults: stale results are refused, diverged points aggregate as marked cells, a killed
workflow leaves nothing that looks finished and reruns to the uninterrupted result."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from sgdnoise.config import expand_study
from sgdnoise.config.grid import grid_table
from sgdnoise.io.artifact import ArtifactError, read_artifact, write_artifact
from sgdnoise.stages.aggregate import aggregate
from sgdnoise.stages.train import train_point
from tests.workflow_runner import kill_group, snakemake, start_snakemake

STUDY = {
    "base": {
        "data": {"N": 30, "P": 40},
        "model": {"constraint": "none"},
        "optimizer": {"kind": "gd"},
        "run": {"replicas": 2, "max_time": 1e4, "max_steps": 200, "record": {"count": 5}},
    },
    "grid": {"optimizer.lr": [0.05, 60.0]},
}


def _write_study(tmp_path, study):
    points = expand_study("s", study)
    grid = tmp_path / "grid.tsv"
    grid.write_text(grid_table(points))
    runs = []
    for point in points:
        path = tmp_path / "runs" / f"{point.point_id}.nc"
        write_artifact(train_point(point.config), path, "run")
        runs.append(path)
    return grid, runs


def test_diverged_points_are_marked_cells_of_the_summary(tmp_path):
    grid, runs = _write_study(tmp_path, STUDY)
    summary = aggregate(grid, runs)
    status = summary["status"].to_series().to_dict()
    assert status == {0.05: "completed", 60.0: "diverged"}
    assert set(summary["replica_status"].sel(lr=60.0).values) == {"diverged"}
    assert np.isfinite(summary["train_loss"].sel(lr=0.05)).all()


def test_a_diverged_point_measures_and_fits_to_nan_not_to_a_crash():
    """The response stage replays a diverged run (its diverged replicas left out of the
    replay check) and reports NaN for them; the fit marks it not stationary, T_eff NaN,
    and so does the DMFT beside it (status diverged)."""
    from sgdnoise.config import resolve_point
    from sgdnoise.data import make_dataset
    from sgdnoise.stages.correlation_response import measure_two_time
    from sgdnoise.stages.dmft import solve_dmft
    from sgdnoise.stages.fit import fit_point

    point = resolve_point(
        {
            "data": {"P_over_N": 3.0, "N": 60},
            "optimizer": {"kind": "gd", "lr": 2.0},  # too large a step for the sphere
            "run": {
                "replicas": 2,
                "max_time": 20.0,
                "response": {"waiting_times": [4.0, 6.0], "max_lag": 2.0},
            },
        }
    )
    run = train_point(point)
    assert run.attrs["status"] == "diverged"
    two_time = measure_two_time(run, [make_dataset(point.data)])
    assert two_time.attrs["status"] == "diverged" and np.isnan(two_time["chi"]).all()
    with pytest.warns(RuntimeWarning, match="diverged"):
        theory = solve_dmft(point, paths=200, solver_seeds=2)
    fits = fit_point(run, two_time, theory)
    assert int(fits["stationary"]) == 0 and int(fits["dmft_stationary"]) == 0
    assert np.isnan(fits["T_eff"]).all() and np.isnan(fits["dmft_T_eff"]).all()
    assert str(fits["dmft_status"].values) == "diverged"


def test_an_edited_config_never_reuses_stale_runs(tmp_path):
    grid, runs = _write_study(tmp_path, STUDY)
    edited = {**STUDY, "base": {**STUDY["base"], "data": {"N": 30, "P": 41}}}
    grid.write_text(grid_table(expand_study("s", edited)))  # same ids, new configs
    with pytest.raises(ArtifactError, match="stale: rerun train_replicas"):
        aggregate(grid, runs)


INTERRUPTED = {
    "results": "results",
    "studies": {
        "interrupted": {
            "base": {
                "data": {"kind": "random_patterns", "N": 100, "P_over_N": 2.0},
                "optimizer": {"kind": "sgd", "lr": 0.05},
                # 12,000 steps: a training job lasts seconds, checkpointed twice a second
                "run": {
                    "replicas": 2,
                    "max_time": 600.0,
                    "checkpoint_seconds": 0.5,
                    "record": {"count": 20},
                },
            },
            "grid": {"optimizer.b": [0.1, 0.3, 0.6]},
            "analyses": ["training_curves"],
        }
    },
}
SUMMARY = "results/interrupted/summary.nc"
VOLATILE = "wall_seconds"
"""Provenance that differs between two runs of one point (attribute, summary variable)."""


def _comparable(path: Path) -> xr.Dataset:
    dataset = read_artifact(path)
    dataset.attrs.pop(VOLATILE, None)
    return dataset.drop_vars(VOLATILE, errors="ignore")


@pytest.mark.slow
def test_a_killed_workflow_reruns_incomplete_jobs_to_the_uninterrupted_result(tmp_path):
    """SIGKILL Snakemake and its jobs mid-training: every .nc left is a complete artifact
    (partial files are written beside their final path), and --unlock then
    --rerun-incomplete finish with the artifacts of an uninterrupted run (a killed point
    resumes from its checkpoint)."""
    killed, uninterrupted = tmp_path / "killed", tmp_path / "uninterrupted"
    for workdir in (killed, uninterrupted):
        workdir.mkdir()
        (workdir / "study.yaml").write_text(yaml.safe_dump(INTERRUPTED))
    arguments = (SUMMARY, "--cores", "2", "--configfile", "study.yaml")

    process = start_snakemake(
        killed, *arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    runs = killed / "results" / "interrupted" / "runs"
    deadline = time.time() + 300
    try:  # a checkpoint on disk: a training job is running, past its set-up
        while not list(runs.glob("*.ckpt")) and process.poll() is None:
            assert time.time() < deadline, "no training job checkpointed in time"
            time.sleep(0.05)
    finally:
        kill_group(process)
    assert list(runs.glob("*.ckpt")), "snakemake ended before a training job was killed"
    assert len(list(runs.glob("*.nc"))) < 3 and not (killed / SUMMARY).exists()
    for path in killed.rglob("*.nc"):  # a file at its final path is a complete artifact
        read_artifact(path)

    snakemake(killed, *arguments, "--unlock")  # the kill left Snakemake's lock behind
    snakemake(killed, *arguments, "--rerun-incomplete")
    snakemake(uninterrupted, *arguments)

    assert not list(runs.glob("*.ckpt"))  # each removed once its run was written
    expected = sorted(p.relative_to(uninterrupted) for p in uninterrupted.rglob("*.nc"))
    assert len(expected) == 5  # data, 3 runs, summary
    assert sorted(p.relative_to(killed) for p in killed.rglob("*.nc")) == expected
    for relative in expected:
        xr.testing.assert_identical(
            _comparable(killed / relative), _comparable(uninterrupted / relative)
        )
