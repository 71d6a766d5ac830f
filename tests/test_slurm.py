"""A real single-node SLURM cluster on localhost runs a study through the project's profile,
and its artifacts equal those of a local run (scripts/slurm-local.sh starts the daemons)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from tests.conftest import REPO
from tests.workflow_runner import snakemake

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

STUDY = {
    "results": "results",
    "studies": {
        "on_slurm": {
            "base": {
                "data": {"kind": "random_patterns", "N": 40, "P_over_N": 2.0},
                "optimizer": {"kind": "sgd", "lr": 0.05},
                "run": {"replicas": 2, "max_time": 5.0, "record": {"count": 6}},
            },
            "grid": {"optimizer.b": [0.2, 0.5]},
            "analyses": ["training_curves"],
        }
    },
}


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.skip("starting slurmctld/slurmd/munged needs root")
    if shutil.which("slurmctld") is None or shutil.which("sbatch") is None:
        pytest.skip("SLURM is not installed: `make test` (scripts/install.sh --test) installs it")
    script = REPO / "scripts" / "slurm-local.sh"
    started = subprocess.run([str(script), "start"], capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        pytest.fail(f"could not start the local cluster:\n{started.stdout}\n{started.stderr}")
    yield
    subprocess.run([str(script), "stop"], capture_output=True, timeout=120)


def _run(workdir: Path, *extra: str) -> None:
    config = workdir / "study.yaml"
    config.write_text(yaml.safe_dump(STUDY))
    snakemake(workdir, "--configfile", str(config), *extra, timeout=600)


def test_study_through_the_slurm_profile_equals_a_local_run(cluster, tmp_path):
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    on_slurm.mkdir()
    local.mkdir()
    _run(
        on_slurm,
        "--profile",
        str(REPO / "workflow" / "profiles" / "slurm"),
        "--default-resources",
        "slurm_partition=debug",
        "slurm_account=root",
        "mem_mb=500",
        "runtime=10",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--latency-wait",
        "10",
    )
    _run(local, "--cores", "2")
    log = "".join(p.read_text() for p in (on_slurm / ".snakemake" / "log").glob("*.log"))
    submitted = log.count("has been submitted with SLURM jobid")
    assert submitted >= 3, "the jobs did not go through sbatch"  # grouped points, aggregate, render
    for run in sorted((local / "results" / "on_slurm" / "runs").glob("*.nc")):
        twin = on_slurm / "results" / "on_slurm" / "runs" / run.name
        with xr.open_dataset(run) as expected, xr.open_dataset(twin) as produced:
            np.testing.assert_array_equal(
                expected["final_weights"].values, produced["final_weights"].values
            )
            assert expected.attrs["config_sha256"] == produced.attrs["config_sha256"]
    assert (on_slurm / "results" / "on_slurm" / "figures" / "training_curves.png").exists()
