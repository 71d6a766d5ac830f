"""The real Snakemake workflow: dry run of the default config, a tiny study end to end,
--configfile isolation and config errors caught before any job runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from sgdnoise.io.artifact import read_artifact
from tests.conftest import REPO
from tests.workflow_runner import snakemake

TINY_STUDY = {
    "results": "results",
    "studies": {
        "tiny": {
            "base": {
                "data": {"kind": "random_patterns", "N": 40},
                "optimizer": {"lr": 0.05},
                "run": {"replicas": 2, "max_time": 10.0, "record": {"count": 12}},
            },
            "grid": {
                "data.P_over_N": [1.5, 3.0],
                "optimizer": [
                    {"kind": "gd"},
                    {"kind": "sgd", "b": 0.3},
                    {"kind": "persistent_sgd", "b": 0.3, "tau": 1.0},
                ],
            },
            "analyses": ["training_curves"],
        }
    },
}


def write_config(workdir: Path, config: dict) -> Path:
    path = workdir / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_dry_run_of_the_default_config_lists_the_stages(tmp_path):
    # relative paths of the config (results, a user model's files) are read from the
    # working directory, as from the repository root by `make study`
    example = Path("workflow/studies/fashion_cnn.py")
    (tmp_path / example.parent).mkdir(parents=True)
    shutil.copy(REPO / example, tmp_path / example)
    result = snakemake(
        REPO,
        "-n",
        "--cores",
        "1",
        "--directory",
        str(tmp_path),
        "--configfile",
        str(REPO / "config.yaml"),
    )
    for stage in ("generate_data", "train_replicas", "aggregate", "render"):
        assert stage in result.stdout, stage


@pytest.mark.slow
def test_tiny_study_end_to_end(tmp_path):
    config = write_config(tmp_path, TINY_STUDY)
    snakemake(tmp_path, "--cores", "2", "--configfile", str(config))
    results = tmp_path / "results" / "tiny"
    assert (results / "figures" / "training_curves.png").stat().st_size > 10_000
    assert len(list((results / "runs").glob("*.nc"))) == 6
    assert len(list((results / "data").glob("*.nc"))) == 2  # one data set per P/N
    with xr.open_dataset(results / "summary.nc") as summary:
        assert summary.sizes["P_over_N"] == 2 and summary.sizes["optimizer"] == 3
        assert set(summary["train_loss"].dims) == {"P_over_N", "optimizer", "replica", "record"}
        assert set(summary["time"].dims) == {"P_over_N", "optimizer", "record"}
    # nothing to do the second time; a new grid value trains only the new points
    again = snakemake(tmp_path, "--cores", "2", "--configfile", str(config))
    assert "Nothing to be done" in again.stdout + again.stderr
    # the HTML report holds every figure with its caption
    snakemake(tmp_path, "--configfile", str(config), "--report", "report.html")
    report = (tmp_path / "report.html").read_text(errors="replace")
    assert "training_curves" in report and "Training curves of study" in report
    grown = yaml.safe_load(config.read_text())
    grown["studies"]["tiny"]["grid"]["data.P_over_N"].append(2.0)
    write_config(tmp_path, grown)
    dry = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(config)).stdout
    assert dry.count("rule train_replicas") == 3


def _batched(points_per_job: int) -> dict:
    config = yaml.safe_load(yaml.safe_dump(TINY_STUDY))
    config["studies"]["tiny"]["points_per_job"] = points_per_job
    return config


def test_points_per_job_batches_the_training_jobs_in_grid_order(tmp_path):
    """Six points at four per job: two training jobs (4 + 2 points), no one-point job."""
    config = write_config(tmp_path, _batched(4))
    dry = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(config)).stdout
    assert "rule train_replicas" not in dry
    assert dry.count("rule train_tiny_batch0") == 1 and dry.count("rule train_tiny_batch1") == 1
    assert dry.count("results/tiny/runs/") >= 6


@pytest.mark.slow
def test_points_per_job_writes_the_runs_of_one_point_jobs(tmp_path):
    """Batched (4 points to a job) and one-point jobs write the same run artifacts, value
    for value; a second batched run has nothing to do."""
    runs = {}
    for points_per_job in (1, 4):
        workdir = tmp_path / f"per_job_{points_per_job}"
        workdir.mkdir()
        config = write_config(workdir, _batched(points_per_job))
        snakemake(workdir, "--cores", "2", "--configfile", str(config), "--until", "aggregate")
        runs[points_per_job] = workdir / "results" / "tiny" / "runs"
    again = snakemake(workdir, "-n", "--cores", "1", "--configfile", str(config))
    assert "train_tiny_batch" not in again.stdout
    names = sorted(path.name for path in runs[1].glob("*.nc"))
    assert len(names) == 6 and names == sorted(path.name for path in runs[4].glob("*.nc"))
    for name in names:
        one, batched = (read_artifact(runs[n] / name) for n in (1, 4))
        for dataset in (one, batched):
            dataset.attrs.pop("wall_seconds", None)
        xr.testing.assert_identical(
            one.drop_vars("wall_seconds", errors="ignore"),
            batched.drop_vars("wall_seconds", errors="ignore"),
        )


def test_configfile_runs_only_its_own_studies(tmp_path):
    config = write_config(tmp_path, TINY_STUDY)
    result = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(config))
    assert "results/tiny/summary.nc" in result.stdout
    assert "training_curves/summary.nc" not in result.stdout


@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        (lambda s: s["base"]["data"].update(kind="mnist_digits"), ["data.kind", "mnist_parity"]),
        (lambda s: s["base"]["run"].update(dtype="float16"), ["run.dtype", "float64"]),
        (lambda s: s["grid"].update({"optimizer.bb": [1]}), ["optimizer.bb", "allowed axes"]),
        (lambda s: s["grid"].update({"optimizer.b": []}), ["optimizer.b"]),
        (lambda s: s.update(analyses=["magic"]), ["magic"]),
        (lambda s: s.update(dmft={"solver_seeds": 1}), ["solver_seeds"]),
        (lambda s: s.update(points_per_job=0), ["points_per_job", "minimum"]),
        (
            lambda s: s.update(
                analyses=["dmft"], base={**s["base"], "model": {"sphere_update": "projection"}}
            ),
            ["analysis dmft", "projection", "allowed: multiplier"],
        ),
    ],
)
def test_invalid_config_is_rejected_before_any_job(tmp_path, edit, fragments):
    broken = yaml.safe_load(yaml.safe_dump(TINY_STUDY))
    edit(broken["studies"]["tiny"])
    config = write_config(tmp_path, broken)
    result = snakemake(tmp_path, "--cores", "1", "--configfile", str(config), check=False)
    assert result.returncode != 0
    for fragment in fragments:
        assert fragment in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


DMFT_STUDY = {
    "results": "results",
    "studies": {
        "theory": {
            "base": {
                "model": {"kind": "perceptron", "constraint": "ridge", "ridge": 1.0},
                "loss": {"kind": "square_hinge", "kappa": 1.0},
                "data": {"kind": "random_patterns", "N": 100, "P_over_N": 3.0},
                "optimizer": {"kind": "sgd", "lr": 0.1},
                "run": {
                    "replicas": 3,
                    "max_time": 6.0,
                    "dtype": "float64",
                    "record": {"times": "linear", "count": 7},
                    "response": {"waiting_times": [3.0, 4.0], "max_lag": 2.0, "lag_count": 5},
                },
            },
            "grid": {"optimizer.b": [0.3, 0.6]},
            "dmft": {"paths": 500, "solver_seeds": 3},
            "analyses": ["teff", "dmft"],
        }
    },
}


@pytest.mark.slow
def test_a_study_asks_for_the_dmft_beside_its_simulations(tmp_path):
    """The dmft rule solves every point; the summary holds the theory's T_eff, FDT curve and
    loss beside the simulation's; the three figures of the analysis are drawn."""
    config = write_config(tmp_path, DMFT_STUDY)
    snakemake(tmp_path, "--cores", "2", "--configfile", str(config))
    results = tmp_path / "results" / "theory"
    assert len(list((results / "dmft").glob("*.nc"))) == 2
    for figure in ("fdt_parametric", "teff_vs_b", "dmft_vs_simulation"):
        assert (results / "figures" / f"{figure}.png").stat().st_size > 10_000, figure
    with xr.open_dataset(results / "summary.nc") as summary:
        assert summary["dmft_T_eff"].dims == ("b", "window")
        assert summary["dmft_train_loss"].dims == ("b", "record")
        assert set(summary["dmft_status"].values) == {"converged"}
        assert np.isfinite(summary["dmft_T_eff"].sel(window="s<=1")).all()
        loss = summary["train_loss"].mean("replica")
        np.testing.assert_allclose(summary["dmft_train_loss"], loss, rtol=0.15)
