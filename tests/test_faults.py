"""Faults: stale results are refused, diverged points aggregate as marked cells."""

from __future__ import annotations

import numpy as np
import pytest

from sgdnoise.config import expand_study
from sgdnoise.io.artifact import ArtifactError, write_artifact
from sgdnoise.stages.aggregate import aggregate, grid_table
from sgdnoise.stages.train import train_point

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


def test_an_edited_config_never_reuses_stale_runs(tmp_path):
    grid, runs = _write_study(tmp_path, STUDY)
    edited = {**STUDY, "base": {**STUDY["base"], "data": {"N": 30, "P": 41}}}
    grid.write_text(grid_table(expand_study("s", edited)))  # same ids, new configs
    with pytest.raises(ArtifactError, match="stale: rerun train_replicas"):
        aggregate(grid, runs)
