"""Trust at the seams: a grid never runs a value its id does not name, non-finite numbers
and studies that cannot feed their analyses are refused before anything runs, defaults
follow the physics, a diverged replica is NaN (never 0), and the time axis is lr x the
recorded step."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import xarray as xr
import yaml

from sgdnoise.cli import summarize
from sgdnoise.config import ConfigError, expand_study, resolve_point
from sgdnoise.io.artifact import read_artifact, write_artifact
from sgdnoise.stages.train import train_point

TINY = {
    "data": {"N": 20, "P": 20},
    "optimizer": {"kind": "sgd", "b": 0.5},
    "run": {"replicas": 2, "max_time": 1.0, "record": {"count": 4}},
}


def study(grid: dict, base: dict | None = None, **extra) -> dict:
    return {"base": base or TINY, "grid": grid, **extra}


# --- a grid never runs a value other than the one its id names -------------------------


@pytest.mark.parametrize(
    ("grid", "fragments"),
    [
        (  # an axis and a variant that sets the same key
            {"optimizer.b": [0.1, 0.3], "optimizer": [{"kind": "sgd", "b": 0.5}]},
            ["'optimizer.b'", "'optimizer'", "optimizer.b"],
        ),
        (  # a bundle key that an axis also sets
            {
                "regime": [{"label": "A", "data.P_over_N": 1.0}],
                "data.P_over_N": [2.0],
                "data.P": [None],
            },
            ["'regime'", "'data.P_over_N'"],
        ),
        (  # a bundle that sets a whole section, beside an axis inside it
            {"regime": [{"label": "A", "run": {"max_time": 2.0}}], "run.max_time": [3.0]},
            ["'regime'", "'run.max_time'", "run.max_time"],
        ),
        (  # two bundle values with one label would be one point
            {"regime": [{"label": "A", "data.P": 10}, {"label": "A", "data.P": 20}]},
            ["'regime'", "'A'", "label"],
        ),
        (  # two numbers that read alike in an id would be one file
            {"optimizer.b": [0.3, 0.3000000000001]},
            ["'optimizer.b'", "0.3000000000001", "'0.3'"],
        ),
        (  # two identical variants
            {"optimizer": [{"kind": "sgd", "b": 0.3}, {"b": 0.3, "kind": "sgd"}]},
            ["'optimizer'", "'sgd+b=0.3'"],
        ),
    ],
)
def test_ambiguous_grids_are_refused_naming_both_sources(grid, fragments):
    with pytest.raises(ConfigError) as error:
        expand_study("s", study(grid))
    for fragment in fragments:
        assert fragment in str(error.value)


def test_every_point_runs_the_values_its_id_names():
    """The control: disjoint axes, bundles and variants expand to what the ids say."""
    grid = {
        "optimizer.b": [0.1, 0.3],
        "optimizer": [{"kind": "sgd"}, {"kind": "persistent_sgd", "tau": 1.0}],
        "regime": [{"label": "A", "data.P": 10}, {"label": "B", "data.P": 30}],
    }
    points = expand_study("s", study(grid))
    assert len(points) == 8
    for point in points:
        assert point.config.optimizer.b == point.assignments["optimizer.b"]
        assert point.config.optimizer.kind == point.assignments["optimizer"]["kind"]
        assert point.config.data.P == point.assignments["regime"]["data.P"]
        assert f"optimizer.b={point.assignments['optimizer.b']:g}" in point.point_id


def test_a_point_id_longer_than_a_file_name_allows_is_refused():
    """Three variant axes of realistic size make a ~250-character id: refused at
    validation (it used to train, then fail to write: 'File name too long')."""
    optimizer = {"kind": "persistent_sgd", "b": 0.123456789, "lr": 0.0123456789}
    grid = {
        "optimizer": [{**optimizer, "tau": 1.0, "batch_normalization": "mean"}],
        "run": [
            {
                "max_time": 1.0,
                "replicas": 2,
                "seed": 12345,
                "pairing": "independent",
                "dtype": "float64",
                "init": "random",
            }
        ],
        "data": [
            {"kind": "gaussian_mixture", "N": 20, "P": 20, "seed": 98765, "delta": 1.23456789}
        ],
    }
    with pytest.raises(ConfigError, match="characters, longer than 200.*label"):
        expand_study("s", study(grid))
    labelled = {
        axis: [{"label": "A", **{f"{axis}.{k}": v for k, v in values[0].items()}}]
        for axis, values in grid.items()
    }
    assert len(expand_study("s", study(labelled))[0].point_id) < 40


# --- non-finite numbers ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("optimizer: {b: .nan}", "optimizer.b"),
        ("optimizer: {lr: .nan}", "optimizer.lr"),
        ("optimizer: {lr: nan}", "optimizer.lr"),
        ("run: {max_time: .inf}", "run.max_time"),
        ("data: {P_over_N: .inf, N: 20}", "data.P_over_N"),
        ("data: {P_over_N: Infinity, N: 20}", "data.P_over_N"),
        ("run: {response: {waiting_times: [1.0, .nan]}}", "run.response.waiting_times[1]"),
        ("model: {alpha: -.inf}", "model.alpha"),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_key(text, key):
    raw = yaml.safe_load(text)
    raw.setdefault("data", {}).setdefault("P", None if "P_over_N" in raw["data"] else 20)
    with pytest.raises(ConfigError) as error:
        resolve_point(raw)
    assert key in str(error.value) and "finite" in str(error.value)


def test_a_non_finite_grid_value_is_refused_naming_the_axis():
    with pytest.raises(ConfigError, match=r"grid\.optimizer\.lr\[1\].*finite"):
        expand_study("s", study({"optimizer.lr": [0.1, float("nan")]}))


# --- defaults that follow the physics --------------------------------------------------

PAPER_B_PERCEPTRON = {
    "model": {"kind": "perceptron", "constraint": "none", "alpha": 32768},
    "loss": {"kind": "hinge"},
    "data": {"kind": "depleted_sign", "N": 16, "P": 64, "chi": 1.0, "P_test": 100},
    "optimizer": {"kind": "minibatch_sgd", "batch_size": 2, "lr": 2.0**-3},
    "run": {"replicas": 3, "stop": "zero_loss", "max_time": 1e9, "record": {"count": 10}},
}


def test_paper_b_perceptron_defaults_are_its_physics():
    point = resolve_point(PAPER_B_PERCEPTRON)
    assert point.loss.kappa == 1 / 32768  # the margin of the alpha-trick
    assert point.run.tolerance == 0  # the hinge reaches zero loss exactly
    assert point.run.check_every == 32  # once per epoch, ceil(P / B)
    plain = resolve_point({"data": {"P_over_N": 1.0}})
    assert plain.loss.kappa == 0.0 and plain.run.tolerance == 1e-10
    with pytest.raises(ConfigError, match="1/alpha"):
        resolve_point({**PAPER_B_PERCEPTRON, "loss": {"kind": "hinge", "kappa": 0.0}})


def test_zero_loss_time_is_exact_and_the_detection_step_is_reported():
    """t* = lr (last moving step + 1), checked against a step-by-step replay that looks at
    the loss after every step; the detection step (a once-per-epoch check) is later."""
    run = train_point(resolve_point(PAPER_B_PERCEPTRON))
    assert set(run["replica_status"].values) == {"completed"}
    steps = run["steps_to_zero_loss"].values
    np.testing.assert_array_equal(run["t_star"].values, 2.0**-3 * steps)
    detected = run["steps_taken"].values
    assert (detected >= steps).all() and (detected < steps + 2 * 32 + 1).all()
    reference = train_point(
        resolve_point(
            {**PAPER_B_PERCEPTRON, "run": {**PAPER_B_PERCEPTRON["run"], "check_every": 1}}
        )
    )
    np.testing.assert_array_equal(reference["steps_to_zero_loss"].values, steps)
    assert (reference["steps_taken"].values <= steps + 1).all()


# --- the time axis is lr x the recorded step -------------------------------------------


def test_time_is_lr_times_the_recorded_step_and_ends_where_training_ends():
    config = resolve_point(
        {
            **TINY,
            "run": {"replicas": 2, "max_time": 100.0, "max_steps": 10, "record": {"count": 60}},
        }
    )
    run = train_point(config)
    steps = run["step"].values
    np.testing.assert_allclose(run["time"].values, config.optimizer.lr * steps)
    assert steps[-1] == 10 and (np.diff(steps) > 0).all()  # no record past the budget,
    assert run.sizes["record"] == 11  # no repeated step: every step 0..10 once


def test_a_run_to_zero_loss_has_its_records_between_zero_and_t_star():
    run = train_point(resolve_point(PAPER_B_PERCEPTRON))
    t_star, times = np.nanmax(run["t_star"].values), run["time"].values
    count = 10
    # the event engine sees zero loss exactly (no checks): the run ends at the first record
    # time at or after the last replica's stop, with no record beyond it
    assert times[0] == 0 and times[-2] < t_star <= times[-1]
    assert count <= np.sum(times <= t_star) <= 2 * count
    assert (np.diff(times) > 0).all()


# --- a diverged replica is NaN, never 0 ------------------------------------------------


def test_a_diverged_replica_reports_nan_errors_not_zero(tmp_path):
    config = resolve_point(
        {
            "model": {"constraint": "none"},
            "data": {"N": 30, "P": 40},
            "optimizer": {"kind": "gd", "lr": 60.0},
            "run": {"replicas": 2, "max_time": 1e4, "max_steps": 200},
        }
    )
    run = train_point(config)
    assert set(run["replica_status"].values) == {"diverged"}
    for name in ("train_error", "violated_fraction"):
        assert np.isnan(run[name].isel(record=-1).values).all(), name
    path = tmp_path / "run.nc"
    write_artifact(run, path, "run")
    summary = summarize(read_artifact(path, "run"))
    assert summary["status"] == "diverged"
    assert summary["train_error"] is None and summary["train_loss"] is None


# --- every analysis, model and data set states what it needs ---------------------------


@pytest.mark.parametrize(
    ("changes", "fragments"),
    [
        ({"analyses": ["teff"]}, ["analysis teff", "run.response.waiting_times"]),
        ({"analyses": ["replica_distance"]}, ["analysis replica_distance", "same_init"]),
        ({"analyses": ["phase_diagram"]}, ["analysis phase_diagram", "model.alpha"]),
        ({"analyses": ["power_laws"]}, ["analysis power_laws", "temperature"]),
        (
            {"analyses": ["dmft"], "base": {**TINY, "model": {"sphere_update": "projection"}}},
            ["analysis dmft", "inside the theory"],
        ),
    ],
)
def test_a_study_that_cannot_feed_its_analyses_is_refused(changes, fragments):
    with pytest.raises(ConfigError) as error:
        expand_study("s", {**study({"optimizer.b": [0.5]}), **changes})
    for fragment in fragments:
        assert fragment in str(error.value)


@pytest.mark.parametrize(
    ("raw", "fragments"),
    [
        (
            {
                "model": {"kind": "fcn"},
                "data": {"kind": "mnist_parity", "P": 64},
                "optimizer": {"kind": "minibatch_sgd", "lr": 0.1},
            },
            ["model.alpha"],
        ),
        (
            {
                "model": {"kind": "fcn", "alpha": 1.0},
                "data": {"kind": "cifar_animals", "P": 64},
                "optimizer": {"kind": "minibatch_sgd", "lr": 0.1},
            },
            ["data.path", "cifar-10-batches-py"],
        ),
    ],
)
def test_models_and_data_sets_state_what_they_need(raw, fragments):
    with pytest.raises(ConfigError) as error:
        resolve_point(raw)
    for fragment in fragments:
        assert fragment in str(error.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_device_is_refused_at_validation():
    with pytest.raises(ConfigError, match="run.device.*auto, cpu"):
        resolve_point({**TINY, "run": {"device": "cuda"}})


# --- a study's runs combine with plain xarray ------------------------------------------


def test_runs_open_together_with_plain_xarray(tmp_path):
    grid = {"optimizer.b": [0.2, 0.5], "optimizer.lr": [0.05, 0.1]}
    for point in expand_study("s", study(grid)):
        run = train_point(point.config)
        write_artifact(run, tmp_path / f"{point.point_id}.nc", "run", point.coordinates)
    with xr.open_mfdataset(str(tmp_path / "*.nc")) as runs:
        assert {"b", "lr", "replica", "record"} <= set(runs["train_loss"].dims)
        assert set(runs["b"].values) == {0.2, 0.5}
        time_error = runs["time"] - runs["lr"] * runs["step"]  # broadcast by dimension name
        np.testing.assert_allclose(time_error.values, 0.0, atol=1e-12)
    one = read_artifact(next(tmp_path.glob("*.nc")), "run")  # the stages see one point
    assert set(one["train_loss"].dims) == {"replica", "record"}
    assert json.loads(one.attrs["config"])["optimizer"]["b"] in (0.2, 0.5)
    assert not math.isnan(float(one["train_loss"].isel(record=0).mean()))


def test_runs_with_different_record_counts_make_one_summary(tmp_path):
    """Runs with different budgets (or stops at different t*) hold different numbers of
    records: the summary pads the shorter ones with NaN (it used to refuse to combine)."""
    from sgdnoise.config.grid import grid_table
    from sgdnoise.stages.aggregate import aggregate

    base = {**TINY, "run": {"replicas": 2, "max_time": 10.0, "record": {"count": 60}}}
    points = expand_study("s", study({"run.max_steps": [5, 20]}, base=base))
    runs = []
    for point in points:
        runs.append(tmp_path / f"{point.point_id}.nc")
        write_artifact(train_point(point.config), runs[-1], "run", point.coordinates)
    counts = {read_artifact(path, "run").sizes["record"] for path in runs}
    assert len(counts) == 2  # the test's premise: two lengths
    (tmp_path / "grid.tsv").write_text(grid_table(points))
    summary = aggregate(tmp_path / "grid.tsv", runs)
    assert summary.sizes["record"] == max(counts)
    recorded = summary["time"].notnull().sum("record")  # per point: its own count
    assert sorted(recorded.values.ravel().tolist()) == sorted(counts)
    assert np.isnan(summary["train_loss"]).any()  # the shorter run, past its end
    for name in ("t_star", "steps_taken", "replica_status"):  # no dimension invented
        assert set(summary[name].dims) == {"max_steps", "replica"}, name


# --- the repository is self-contained --------------------------------------------------


def test_the_docs_the_code_cites_are_in_the_repository():
    """Every 'docs/physics.md A7b' a docstring, config or README cites names a section
    that docs/physics.md has, and nothing sends a user outside the repository."""
    import re
    import subprocess

    from tests.conftest import REPO

    files = subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    headings = set(re.findall(r"^### ([AB]\d+b?)\.", (REPO / "docs/physics.md").read_text(), re.M))
    cited: set[str] = set()
    for name in files:
        path = REPO / name
        if path.suffix not in {".py", ".md", ".yaml", ".smk", ".rst"} or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        outside = ("../" + "shared", "PHYSICS" + ".md", "DESIGN" + ".md")  # not this line
        assert not any(word in text for word in outside), name
        cited |= set(re.findall(r"docs/physics\.md,? ([AB]\d+b?)\b", text))
    assert cited and cited <= headings, sorted(cited - headings)
