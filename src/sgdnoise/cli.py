"""The sgdnoise command line: one subcommand per workflow stage, plus inspection.

    sgdnoise point POINT.yaml --out runs/X.nc [--data data/X.nc]   train one grid point
    sgdnoise points --manifest JSON                                train several points, one process
    sgdnoise data POINT.yaml --out data/X.nc                       build a point's data set
    sgdnoise show X.nc                                             JSON summary of an artifact
    sgdnoise validate CONFIG.yaml                                  check a study config, list points
    sgdnoise aggregate --grid grid.tsv --out summary.nc RUN.nc...  assemble a study
    sgdnoise study-fits summary.nc --analyses A... --out fits.nc  study-level fits
    sgdnoise render FIGURE summary.nc --out fig.png [--fits F.nc]  draw one figure

Errors in the input (invalid config, unusable artifact, missing file, bad option) print
one clear line to stderr and exit with status 2; nothing is written. Also run as
``python -m sgdnoise`` (how the workflow's rules call it).
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import math
import os
import shutil
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import NoReturn

import jsonschema
import numpy as np
import yaml

from sgdnoise.config import ConfigError, expand_study, load_point, resolve_point
from sgdnoise.config.grid import grid_size
from sgdnoise.config.point import PointConfig
from sgdnoise.io.artifact import (
    ArtifactError,
    artifact_config,
    read_artifact,
    write_artifact,
)
from sgdnoise.workflow_plan import ANALYSES

LARGE_GRID = 10_000  # above this many points, validate warns and lists no point ids


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (exit status 2), like every other error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _thread_count(text: str) -> int:
    """The value of --threads: a positive integer."""
    try:
        threads = int(text)
    except ValueError:
        threads = 0  # refused below, with the text given
    if threads < 1:
        raise argparse.ArgumentTypeError(f"a positive integer is required, got {text!r}")
    return threads


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _point_of(args: argparse.Namespace) -> dict:
    """The resolved grid point given as a file (positional) or as JSON text (--json)."""
    if (args.point is None) == (args.json is None):
        raise ConfigError("give the grid point as a YAML file or with --json, not both")
    if args.json is not None:
        try:
            raw = json.loads(args.json)
        except json.JSONDecodeError as error:
            raise ConfigError(f"--json: not valid JSON: {error}") from None
        return resolve_point(raw)
    return load_point(args.point)


def cmd_point(args: argparse.Namespace) -> None:
    _train_point(
        _point_of(args), args.data, _grid_coordinates(args.coordinates), args.out, args.quiet
    )


def cmd_points(args: argparse.Namespace) -> None:
    """Train several grid points one after another in this process (one start-up).

    Resumable point by point: each finished run is also linked as ``<out>.done``, a file
    Snakemake does not own. A batch killed midway is rerun whole, and Snakemake deletes
    the outputs of an incomplete job first; the rerun then takes back every finished run
    whose ``.done`` file is a complete run artifact of the same config and data instead
    of retraining it (the point being trained resumes from its ``.ckpt``). The ``.done``
    files are removed once the whole batch is written.
    """
    entries = _manifest(args.manifest)
    for entry in entries:
        point, out = resolve_point(entry["config"]), entry["out"]
        done = Path(out + BATCH_DONE)
        if _finished_run(done, point, entry["data"]):
            Path(out).unlink(missing_ok=True)
            _link_or_copy(done, Path(out))
            continue
        _train_point(point, entry["data"], entry["coordinates"], out, args.quiet)
        done.unlink(missing_ok=True)
        _link_or_copy(Path(out), done)
    for entry in entries:
        Path(entry["out"] + BATCH_DONE).unlink(missing_ok=True)


BATCH_DONE = ".done"  # beside a batch's finished run until the batch is whole (cmd_points)


def _link_or_copy(source: Path, target: Path) -> None:
    """A hard link ``target`` to ``source``; a copy (written beside, then renamed) where the
    file system has no hard links."""
    try:
        os.link(source, target)
    except OSError:
        partial = target.with_name(target.name + ".part")
        shutil.copyfile(source, partial)
        os.replace(partial, target)


def _finished_run(path: Path, point: PointConfig, data: str | None) -> bool:
    """Whether ``path`` is a complete run artifact of ``point`` trained on ``data`` (the
    data artifact's arrays, when given): same config and data fingerprints."""
    from sgdnoise.config import config_sha256
    from sgdnoise.stages.generate_data import load_datasets
    from sgdnoise.stages.recording import data_fingerprint

    if not path.exists():
        return False
    try:
        attrs = read_artifact(path, "run").attrs
    except ArtifactError:
        return False
    if attrs.get("config_sha256") != config_sha256(point):
        return False
    return data is None or attrs.get("data_sha256") == data_fingerprint(load_datasets(data, point))


def _manifest(text: str) -> list[dict]:
    """The --manifest JSON list of {config, data, coordinates, out}, one entry per point."""
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"--manifest: not valid JSON: {error}") from None
    keys = {"config", "data", "coordinates", "out"}
    if not isinstance(entries, list) or not all(
        isinstance(entry, dict) and set(entry) == keys for entry in entries
    ):
        raise ConfigError(
            f"--manifest: a JSON list of mappings with keys {', '.join(sorted(keys))}"
        )
    return entries


def _train_point(
    point: PointConfig, data: str | None, coordinates: dict | None, out: str, quiet: bool
) -> None:
    """Train one grid point on its data artifact (None: built here) and write its run."""
    from sgdnoise.stages.generate_data import load_datasets

    datasets = load_datasets(data, point) if data else None
    # a killed run resumes from <out>.ckpt when rerun (same result as uninterrupted)
    checkpoint = Path(out).with_name(Path(out).name + ".ckpt")
    if point.model.kind == "perceptron":
        from sgdnoise.stages.train import train_point

        dataset = train_point(point, datasets, progress=not quiet, checkpoint=checkpoint)
    elif point.model.kind == "torch":
        from sgdnoise.stages.train_user_model import train_user_model_point

        dataset = train_user_model_point(point, datasets, progress=not quiet, checkpoint=checkpoint)
    else:
        from sgdnoise.stages.train_network import train_network_point

        dataset = train_network_point(point, datasets, progress=not quiet, checkpoint=checkpoint)
    write_artifact(dataset, out, "run", coordinates)


def _grid_coordinates(text: str | None) -> dict | None:
    """The --coordinates JSON mapping (dimension name -> swept value), or None."""
    if text is None:
        return None
    try:
        coordinates = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"--coordinates: not valid JSON: {error}") from None
    if not isinstance(coordinates, dict):
        raise ConfigError("--coordinates: a JSON mapping of dimension name to value")
    return coordinates


def cmd_data(args: argparse.Namespace) -> None:
    from sgdnoise.stages.generate_data import build_datasets, datasets_to_xarray

    point = _point_of(args)
    write_artifact(datasets_to_xarray(point, build_datasets(point)), args.out, "data")


def _scalar(value) -> object:
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def summarize(dataset) -> dict:
    """Scalars of an artifact: attributes plus final, replica-averaged observables (at the
    last recorded time of a run, the last step of a DMFT solve)."""
    summary: dict[str, object] = {
        key: _scalar(value)
        for key, value in dataset.attrs.items()
        if key not in ("config",) and np.ndim(value) == 0
    }
    time_axis = next((dim for dim in ("record", "step") if dim in dataset.dims), None)  # dmft: step
    if time_axis is not None:
        final = dataset.isel({time_axis: -1})
        for name in (
            "train_loss",
            "loss",
            "train_error",
            "violated_fraction",
            "test_error",
            "weight_change",
            "signal",
            "noise",
            "nu",
            "m",
            "replica_distance",
        ):
            if name in final:
                summary[name] = _scalar(final[name].mean())
    if "t_star" in dataset:
        stopped = dataset["t_star"].values
        summary["t_star"] = _scalar(np.nanmean(stopped)) if np.isfinite(stopped).any() else None
    if "replica_status" in dataset:
        statuses = [str(s) for s in dataset["replica_status"].values]
        summary["replica_status"] = {s: statuses.count(s) for s in sorted(set(statuses))}
    for name, variable in dataset.data_vars.items():
        if variable.ndim == 0 and name not in summary:
            summary[name] = _scalar(variable.values)
    return summary


def cmd_show(args: argparse.Namespace) -> None:
    print(json.dumps(summarize(read_artifact(args.file)), indent=2, default=str))


@functools.cache
def study_schema() -> dict:
    """The JSON schema of a study config (shipped with the package; the workflow's
    workflow/schemas/config.schema.yaml is a link to the same file)."""
    text = resources.files("sgdnoise.config").joinpath("study.schema.yaml").read_text()
    return yaml.safe_load(text)


def _properties_with_defaults(
    validator: jsonschema.protocols.Validator, properties: dict, instance: object, schema: dict
) -> Iterator[jsonschema.ValidationError]:
    """The ``properties`` keyword, first inserting the defaults of missing keys (as
    Snakemake's ``validate`` does)."""
    if validator.is_type(instance, "object"):
        for key, sub in properties.items():
            if "default" in sub:
                instance.setdefault(key, copy.deepcopy(sub["default"]))
    yield from jsonschema.Draft202012Validator.VALIDATORS["properties"](
        validator, properties, instance, schema
    )


_FillingValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"properties": _properties_with_defaults}
)


def _violation(error: jsonschema.ValidationError) -> str:
    """One schema violation: the key path and what is allowed there."""
    path = ".".join(str(key) for key in error.absolute_path) or "<top level>"
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(error.schema.get("properties", {}))
        unknown = ", ".join(sorted(str(key) for key in error.instance if key not in allowed))
        return f"config key {path}: unknown key(s) {unknown}; allowed: {', '.join(allowed)}"
    if error.validator == "type":
        return (
            f"config key {path}: must be of type {error.validator_value}, "
            f"got {type(error.instance).__name__}"
        )
    if error.validator == "enum":
        allowed = ", ".join(map(str, error.validator_value))
        return f"config key {path}: {error.instance!r} is not allowed; allowed: {allowed}"
    return f"config key {path}: {error.message}"


def _read_yaml(path: str) -> object:
    """The YAML document of a file (ConfigError naming line and column if it is not YAML)."""
    with open(path, "rb") as handle:
        try:
            return yaml.safe_load(handle)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
            problem = getattr(error, "problem", None) or str(error)
            raise ConfigError(f"{path}: not valid YAML: {problem}{where}") from None


def load_study_config(path: str) -> dict:
    """A study config read from YAML, checked against the study schema with its defaults
    filled in: the config the workflow sees (ConfigError naming every violation)."""
    config = _read_yaml(path)
    config = {} if config is None else config
    errors = sorted(
        _FillingValidator(study_schema()).iter_errors(config), key=lambda e: list(e.absolute_path)
    )
    if errors:
        raise ConfigError(f"{path}: " + "; ".join(map(_violation, errors)))
    return config


def cmd_grid(args: argparse.Namespace) -> None:
    from sgdnoise.config import canonical_json
    from sgdnoise.config.grid import grid_table

    try:
        study = json.loads(args.json)
    except json.JSONDecodeError as error:
        raise ConfigError(f"--json: not valid JSON: {error}") from None
    points = expand_study(args.study, study)
    directory = Path(args.points)
    directory.mkdir(parents=True, exist_ok=True)
    for point in points:
        (directory / f"{point.point_id}.yaml").write_text(canonical_json(point.config) + "\n")
    Path(args.table).write_text(grid_table(points))


def cmd_validate(args: argparse.Namespace) -> None:
    for name, study in load_study_config(args.config)["studies"].items():
        size = grid_size(study)  # before expanding: a huge grid is named before it is built
        if size > LARGE_GRID:
            print(
                f"sgdnoise validate: warning: study {name} has {size} points (more than "
                f"{LARGE_GRID}); their ids are not listed",
                file=sys.stderr,
                flush=True,
            )
        points = expand_study(name, study)
        print(f"{name}: {len(points)} points")
        if size <= LARGE_GRID:
            for point in points:
                print(f"  {point.point_id}")


def cmd_two_time(args: argparse.Namespace) -> None:
    from sgdnoise.stages.correlation_response import measure_two_time
    from sgdnoise.stages.generate_data import build_datasets, load_datasets

    run = read_artifact(args.run, "run")
    point = artifact_config(run)
    datasets = load_datasets(args.data, point) if args.data else build_datasets(point)
    write_artifact(measure_two_time(run, datasets), args.out, "two_time")


def cmd_dmft(args: argparse.Namespace) -> None:
    from sgdnoise.stages.dmft import solve_dmft
    from sgdnoise.theory import UnsupportedPointError

    point = _point_of(args)
    try:
        theory = solve_dmft(
            point,
            paths=args.paths,
            seed=args.seed,
            solver_seeds=args.solver_seeds,
            tolerance=args.tolerance,
            max_iterations=args.max_iterations,
        )
    except UnsupportedPointError as error:
        raise ConfigError(f"the DMFT does not cover this point: {error}") from None
    write_artifact(theory, args.out, "dmft")


def cmd_fit(args: argparse.Namespace) -> None:
    from sgdnoise.stages.fit import fit_point

    run = read_artifact(args.run, "run")
    two_time = read_artifact(args.two_time, "two_time") if args.two_time else None
    dmft = read_artifact(args.dmft, "dmft") if args.dmft else None
    write_artifact(fit_point(run, two_time, dmft), args.out, "fit")


def _check_grid_table(path: str) -> None:
    """Refuse a --grid file that is not a study's grid table with at least one point."""
    from sgdnoise.config.grid import GRID_COLUMNS

    with open(path) as handle:
        lines = handle.read().splitlines()
    if len(lines) < 2 or lines[0].split("\t") != list(GRID_COLUMNS):
        raise ArtifactError(
            f"{path}: not a study's grid table (a header {' '.join(GRID_COLUMNS)}, then a "
            "line per point), as the workflow's rule grid_table writes it"
        )


def cmd_aggregate(args: argparse.Namespace) -> None:
    from sgdnoise.stages.aggregate import aggregate

    _check_grid_table(args.grid)
    write_artifact(aggregate(args.grid, args.runs, args.fits or []), args.out, "summary")


def cmd_study_fits(args: argparse.Namespace) -> None:
    from sgdnoise.stages.study_fits import study_fits

    summary = read_artifact(args.summary, "summary")
    try:
        fits = study_fits(summary, args.analyses)
    except ValueError as error:
        raise ArtifactError(f"{args.summary}: {error}") from None
    write_artifact(fits, args.out, "fit")


def cmd_render(args: argparse.Namespace) -> None:
    from sgdnoise.plots import FIGURES, render

    try:
        render(args.figure, args.summary, args.out, args.fits)
    except (KeyError, ValueError) as error:  # an unknown name, or data the summary lacks
        detail = error.args[0] if error.args else type(error).__name__
        if args.figure in FIGURES:
            detail = f"figure {args.figure} cannot be drawn from {args.summary}: {detail}"
        raise ArtifactError(detail) from None


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sgdnoise", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--threads", type=_thread_count, default=None, help="torch threads (default: torch's)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    point = commands.add_parser("point", help="train one grid point")
    point.add_argument("point", nargs="?", help="grid point YAML")
    point.add_argument("--json", help="the grid point as JSON text (instead of a file)")
    point.add_argument("--out", required=True, help="run artifact to write (.nc)")
    point.add_argument("--data", help="data artifact from 'sgdnoise data' (else built here)")
    point.add_argument("--quiet", action="store_true", help="no progress bar")
    point.add_argument(
        "--coordinates",
        help="the point's grid values as JSON {dimension: value}: written as length-1 "
        "dimensions, so a study's runs combine with xr.open_mfdataset",
    )
    point.set_defaults(handler=cmd_point)

    points = commands.add_parser(
        "points", help="train several grid points in one process (a workflow job's batch)"
    )
    points.add_argument(
        "--manifest",
        required=True,
        help="JSON list of {config, data, coordinates, out}: each point as 'point' would train it",
    )
    points.add_argument("--quiet", action="store_true", help="no progress bar")
    points.set_defaults(handler=cmd_points)

    data = commands.add_parser("data", help="build the data set of a grid point")
    data.add_argument("point", nargs="?", help="grid point YAML")
    data.add_argument("--json", help="the grid point as JSON text (instead of a file)")
    data.add_argument("--out", required=True, help="data artifact to write (.nc)")
    data.set_defaults(handler=cmd_data)

    show = commands.add_parser("show", help="JSON summary of an artifact's scalars")
    show.add_argument("file")
    show.set_defaults(handler=cmd_show)

    grid = commands.add_parser(
        "grid", help="write a study's grid table and every point's full config"
    )
    grid.add_argument("study", help="the study's name")
    grid.add_argument("--json", required=True, help="the study (base, grid, analyses) as JSON")
    grid.add_argument("--table", required=True, help="grid table to write (grid.tsv)")
    grid.add_argument("--points", required=True, help="folder for points/<id>.yaml")
    grid.set_defaults(handler=cmd_grid)

    validate = commands.add_parser("validate", help="validate a study config and list its points")
    validate.add_argument("config")
    validate.set_defaults(handler=cmd_validate)

    two_time = commands.add_parser(
        "correlation-response", help="C(t, t_w) and the exact response chi of a run"
    )
    two_time.add_argument("run", help="run artifact")
    two_time.add_argument("--data", help="data artifact (else rebuilt from the config)")
    two_time.add_argument("--out", required=True, help="two-time artifact to write (.nc)")
    two_time.set_defaults(handler=cmd_two_time)

    dmft = commands.add_parser("dmft", help="solve the DMFT of a grid point (same vocabulary)")
    dmft.add_argument("point", nargs="?", help="grid point YAML")
    dmft.add_argument("--json", help="the grid point as JSON text (instead of a file)")
    dmft.add_argument("--paths", type=int, default=10000, help="effective-process paths")
    dmft.add_argument("--seed", type=int, default=0, help="solver seed")
    dmft.add_argument(
        "--solver-seeds", type=int, default=1, help="independent solver seeds (error bars)"
    )
    dmft.add_argument(
        "--tolerance", type=float, default=1e-6, help="stop when the change per iteration is below"
    )
    dmft.add_argument("--max-iterations", type=int, default=100, help="iteration cap")
    dmft.add_argument("--out", required=True, help="dmft artifact to write (.nc)")
    dmft.set_defaults(handler=cmd_dmft)

    fit = commands.add_parser("fit", help="per-point analyses: T_eff, replica distance, margins")
    fit.add_argument("run", help="run artifact")
    fit.add_argument("--two-time", help="two-time artifact (for T_eff)")
    fit.add_argument("--dmft", help="dmft artifact of the same point (theory side by side)")
    fit.add_argument("--out", required=True, help="fits artifact to write (.nc)")
    fit.set_defaults(handler=cmd_fit)

    aggregate = commands.add_parser("aggregate", help="assemble a study's runs into summary.nc")
    aggregate.add_argument("--grid", required=True, help="the study's grid.tsv")
    aggregate.add_argument("--fits", nargs="*", help="fits artifacts of the points")
    aggregate.add_argument("--out", required=True)
    aggregate.add_argument("runs", nargs="+")
    aggregate.set_defaults(handler=cmd_aggregate)

    study = commands.add_parser(
        "study-fits", help="study-level fits of a summary: power laws, critical temperature"
    )
    study.add_argument("summary", help="the study's summary.nc")
    study.add_argument(
        "--analyses",
        nargs="+",
        required=True,
        help="study-level analyses: "
        + ", ".join(name for name, a in ANALYSES.items() if "study_fits" in a.stages),
    )
    study.add_argument("--out", required=True, help="fits artifact to write (fits.nc)")
    study.set_defaults(handler=cmd_study_fits)

    render = commands.add_parser("render", help="draw one figure of a study")
    render.add_argument("figure")
    render.add_argument("summary")
    render.add_argument("--out", required=True)
    render.add_argument("--fits", help="the study's fits.nc (figures of study-level fits)")
    render.set_defaults(handler=cmd_render)
    return parser


def _one_line(error: Exception) -> str:
    """The message of a user error on one line (an OSError as 'file: reason')."""
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.filename}: {error.strerror}"
    else:
        text = str(error)
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    message = lines[0] if lines else type(error).__name__
    for line in lines[1:]:  # a list of problems after "...:", or several sentences
        message += (" " if message.endswith(":") else "; ") + line
    return message


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; return its exit status (2: an error in the input, on one line)."""
    args = build_parser().parse_args(argv)
    _set_threads(args.threads)
    try:
        args.handler(args)
    except BrokenPipeError:  # the reader stopped early (sgdnoise show X.nc | head): fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ConfigError, OSError) as error:  # ArtifactError is an OSError
        print(f"sgdnoise {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
