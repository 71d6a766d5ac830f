"""The command line and the rules that call it: every job runs sgdnoise through the
interpreter of Snakemake (no activated environment needed), paths with spaces, user
errors as one line with exit status 2, and `validate` applying the workflow's study
schema (one file, shipped with the package)."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sgdnoise import cli
from sgdnoise.config import expand_study
from sgdnoise.config.grid import grid_table
from sgdnoise.io.artifact import write_artifact
from sgdnoise.stages.aggregate import aggregate
from sgdnoise.stages.train import train_point
from tests.conftest import REPO
from tests.workflow_runner import kill_group, snakemake

TINY_POINT = {
    "data": {"kind": "random_patterns", "N": 20, "P_over_N": 1.0},
    "run": {"replicas": 2, "max_time": 1.0, "record": {"count": 4}},
}
TINY_STUDY = {"results": "results", "studies": {"tiny": {"base": TINY_POINT}}}
BARE_PATH = "/usr/bin:/bin"  # the system's directories only: no environment's bin


def write_config(directory: Path, config: dict, name: str = "study.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(config))
    return path


def run_cli(sgdnoise_command: list[str], *arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*sgdnoise_command, *arguments], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def stderr_lines(result: subprocess.CompletedProcess) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.slow
def test_rules_reach_sgdnoise_without_the_environment_on_path(tmp_path):
    """`.venv/bin/snakemake` by absolute path, venv not activated: jobs still find sgdnoise."""
    snakemake_script = Path(sys.executable).parent / "snakemake"
    assert shutil.which("sgdnoise", path=BARE_PATH) is None
    config = write_config(tmp_path, TINY_STUDY)
    process = subprocess.Popen(
        [
            str(snakemake_script),
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--cores",
            "2",
            "--configfile",
            str(config),
        ],
        cwd=tmp_path,
        env=dict(os.environ, PATH=BARE_PATH),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=600)
    except BaseException:
        kill_group(process)
        raise
    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert (tmp_path / "results" / "tiny" / "figures" / "training_curves.png").stat().st_size


@pytest.mark.slow
def test_a_results_directory_with_a_space_holds_everything(tmp_path):
    results = tmp_path / "with space" / "results"
    config = write_config(tmp_path, dict(TINY_STUDY, results=str(results)))
    before = set(os.listdir(tmp_path))
    snakemake(tmp_path, "--cores", "2", "--configfile", str(config), timeout=600)
    assert set(os.listdir(tmp_path)) - before == {"with space", ".snakemake"}
    assert os.listdir(tmp_path / "with space") == ["results"]
    assert (results / "tiny" / "figures" / "training_curves.png").stat().st_size
    assert (results / "tiny" / "summary.nc").stat().st_size


def test_options_that_name_files_are_quoted(tmp_path):
    """The --two-time of `sgdnoise fit` and the --fits of `sgdnoise render` (built as
    option text by input functions) reach the command as one argument each."""
    results = tmp_path / "with space" / "results"
    temperature = {
        "base": {
            "data": {"kind": "random_patterns", "N": 20, "P_over_N": 1.0},
            "optimizer": {"kind": "minibatch_sgd", "batch_size": 5},
            "run": {"replicas": 2, "max_time": 1.0, "stop": "zero_loss"},
        },
        "grid": {"optimizer.temperature": [0.1, 0.2], "data.N": [20, 40]},
        "analyses": ["critical_temperature"],
    }
    teff = {
        "base": dict(TINY_POINT, run={**TINY_POINT["run"], "response": {"waiting_times": [0.5]}}),
        "analyses": ["teff"],
    }
    config = {"results": str(results), "studies": {"teff": teff, "temperature": temperature}}
    path = write_config(tmp_path, config)
    result = snakemake(tmp_path, "-n", "-p", "--cores", "1", "--configfile", str(path))
    options = {}
    commands = {"--two-time": "fit", "--fits": "render"}  # aggregate has a --fits too
    for line in result.stdout.splitlines():
        words = shlex.split(line) if "sgdnoise" in line and "--out" in line else []
        for option, command in commands.items():
            if option in words and command in words:
                options[option] = words[words.index(option) + 1]
    assert options == {
        "--two-time": f"{results}/teff/two_time/base.nc",
        "--fits": f"{results}/temperature/fits.nc",
    }


@pytest.fixture(scope="module")
def tiny_summary(tmp_path_factory) -> Path:
    """The summary of the tiny study (training curves only: no T_eff)."""
    directory = tmp_path_factory.mktemp("tiny")
    points = expand_study("tiny", TINY_STUDY["studies"]["tiny"])
    (directory / "grid.tsv").write_text(grid_table(points))
    runs = []
    for point in points:
        runs.append(directory / f"{point.point_id}.nc")
        write_artifact(train_point(point.config), runs[-1], "run")
    write_artifact(aggregate(directory / "grid.tsv", runs), directory / "summary.nc", "summary")
    return directory / "summary.nc"


FILES = {
    "list.yaml": "- studies\n- tiny\n",
    "syntax.yaml": "studies: [tiny\n",
    "tabs.yaml": "studies:\n\ttiny:\n\t\tbase: {}\n",
    "bad_value.yaml": yaml.safe_dump(
        {"studies": {"s": {"base": {"optimizer": {"b": 2.0, "lr": -1.0}}}}}
    ),
}
ERROR_CASES = {
    "validate-top-level-list": ["validate", "list.yaml"],
    "validate-yaml-syntax": ["validate", "syntax.yaml"],
    "validate-tab-indentation": ["validate", "tabs.yaml"],
    "validate-missing-file": ["validate", "missing.yaml"],
    "validate-point-errors": ["validate", "bad_value.yaml"],
    "render-unknown-figure": ["render", "no_such_figure", "{summary}", "--out", "figure.png"],
    "render-figure-without-data": ["render", "teff_vs_b", "{summary}", "--out", "figure.png"],
    "aggregate-empty-grid": ["aggregate", "--grid", "/dev/null", "--out", "s.nc", "/dev/null"],
    "point-missing-file": ["point", "missing.yaml", "--out", "run.nc"],
    "points-manifest-not-json": ["points", "--manifest", "{runs"],
    "points-manifest-not-entries": ["points", "--manifest", '[{"config": {}}]'],
    "negative-threads": ["--threads", "-3", "validate", "list.yaml"],
}


@pytest.mark.parametrize("arguments", ERROR_CASES.values(), ids=ERROR_CASES)
def test_user_errors_are_one_line_with_status_2(arguments, tmp_path, request, sgdnoise_command):
    for name, text in FILES.items():
        (tmp_path / name).write_text(text)
    if "{summary}" in arguments:
        summary = request.getfixturevalue("tiny_summary")
        arguments = [str(summary) if word == "{summary}" else word for word in arguments]
    result = run_cli(sgdnoise_command, *arguments, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(stderr_lines(result)) == 1, result.stderr
    assert stderr_lines(result)[0].startswith("sgdnoise"), result.stderr


def test_negative_threads_are_refused_by_name(tmp_path, sgdnoise_command):
    result = run_cli(sgdnoise_command, "--threads", "-3", "show", "x.nc", cwd=tmp_path)
    assert "--threads" in result.stderr and "positive" in result.stderr


def test_validate_applies_the_study_schema_of_the_workflow(tmp_path, sgdnoise_command):
    """A misspelt study key (grids:) is refused by validate as by Snakemake, naming the
    key path and the allowed keys; the workflow's schema is the package's file."""
    study = {"base": TINY_POINT, "grids": {"optimizer.b": [0.1, 0.2]}}
    path = write_config(tmp_path, {"studies": {"tiny": study}})
    result = run_cli(sgdnoise_command, "validate", str(path), cwd=tmp_path)
    assert result.returncode == 2 and len(stderr_lines(result)) == 1, result.stderr
    assert "studies.tiny" in result.stderr and "grids" in result.stderr
    assert "allowed" in result.stderr and "grid" in result.stderr.split("allowed")[1]
    refused = snakemake(tmp_path, "-n", "--cores", "1", "--configfile", str(path), check=False)
    assert refused.returncode != 0 and "grids" in refused.stdout + refused.stderr
    workflow_schema = REPO / "workflow" / "schemas" / "config.schema.yaml"
    package_schema = REPO / "src" / "sgdnoise" / "config" / "study.schema.yaml"
    assert workflow_schema.is_symlink() and workflow_schema.resolve() == package_schema.resolve()


def test_validate_fills_the_schema_defaults_as_snakemake_does(tmp_path):
    from snakemake.utils import validate

    studies = {"tiny": {}, "theory": {"dmft": {"paths": 500}, "analyses": ["dmft"]}}
    path = write_config(tmp_path, {"studies": studies})
    config = cli.load_study_config(str(path))
    assert config["results"] == "results"
    assert config["studies"]["tiny"]["analyses"] == ["training_curves"]
    assert config["studies"]["theory"]["dmft"]["paths"] == 500
    assert config["studies"]["theory"]["dmft"]["solver_seeds"] == 4
    workflow_config = yaml.safe_load(path.read_text())
    validate(workflow_config, str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    assert config == workflow_config


def test_validate_counts_a_large_grid_before_expanding_it(tmp_path, sgdnoise_command):
    """Above 10,000 points: a one-line warning with the count, then counts only (no ids)."""
    grid = {"optimizer.b": [round(0.0099 * (i + 1), 4) for i in range(101)]}
    grid["run.seed"] = list(range(100))
    path = write_config(tmp_path, {"studies": {"big": {"base": TINY_POINT, "grid": grid}}})
    result = run_cli(sgdnoise_command, "validate", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["big: 10100 points"]
    assert len(stderr_lines(result)) == 1 and "10100" in result.stderr
    # counted before expanding: a million points whose first is invalid warn first
    grid = {f"run.{key}": list(range(100)) for key in ("seed", "replicas", "checkpoint_seconds")}
    path = write_config(tmp_path, {"studies": {"huge": {"base": TINY_POINT, "grid": grid}}})
    result = run_cli(sgdnoise_command, "validate", str(path), cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    warning, error = stderr_lines(result)
    assert "1000000" in warning and "error" in error and "replicas" in error


def test_show_into_a_pipe_that_closes_early_is_not_an_error(tmp_path):
    """`sgdnoise show X.nc | head -2` is how people read a file: no error when the reader
    leaves early (here `true`, which leaves before sgdnoise writes anything)."""
    point = expand_study("s", {"base": {"data": {"N": 20, "P": 20}, "run": {"replicas": 2}}})[0]
    path = tmp_path / "run.nc"
    write_artifact(train_point(point.config), path, "run")
    command = f"{shlex.quote(sys.executable)} -m sgdnoise show {shlex.quote(str(path))} | true"
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.parametrize("hard_links", [True, False])
def test_a_killed_batch_takes_back_its_finished_points(tmp_path, monkeypatch, hard_links):
    """`sgdnoise points`: a batch killed at its second point, its outputs deleted as
    Snakemake deletes an incomplete job's, is rerun: the first point comes back from its
    .done link without training (the same file), a .done of another config is not taken,
    and no .done file is left once the batch is whole; the same where the file system has
    no hard links (copies instead). Error resolved: a batch that retrains (hours, for a
    row of the paper grid) every point it had finished."""
    from sgdnoise.config import resolve_point

    if not hard_links:

        def no_link(source, target):
            raise OSError("hard links not supported")

        monkeypatch.setattr(cli.os, "link", no_link)

    points = [
        resolve_point({**TINY_POINT, "data": {**TINY_POINT["data"], "seed": seed}})
        for seed in (1, 2)
    ]
    outs = [tmp_path / f"run{s}.nc" for s in (1, 2)]
    manifest = json.dumps(
        [
            {"config": point.to_mapping(), "data": None, "coordinates": None, "out": str(out)}
            for point, out in zip(points, outs, strict=True)
        ]
    )
    arguments = argparse.Namespace(manifest=manifest, quiet=True)
    trained = []
    real = cli._train_point

    def killed_at_the_second(point, data, coordinates, out, quiet):
        if out == str(outs[1]):
            raise KeyboardInterrupt
        real(point, data, coordinates, out, quiet)

    monkeypatch.setattr(cli, "_train_point", killed_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        cli.cmd_points(arguments)
    first = outs[0].read_bytes()
    outs[0].unlink()  # Snakemake removes an incomplete job's outputs before its rerun

    def counted(point, data, coordinates, out, quiet):
        trained.append(out)
        real(point, data, coordinates, out, quiet)

    monkeypatch.setattr(cli, "_train_point", counted)
    cli.cmd_points(arguments)
    assert trained == [str(outs[1])]
    assert outs[0].read_bytes() == first
    assert not list(tmp_path.glob("*.done"))

    # a .done that is not this point's run (another seed's) is retrained, not taken
    shutil.copyfile(outs[1], str(outs[0]) + ".done")
    outs[0].unlink()
    trained.clear()
    cli.cmd_points(arguments)
    assert trained == [str(outs[0]), str(outs[1])]
    assert outs[0].read_bytes() != outs[1].read_bytes()
