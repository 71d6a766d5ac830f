"""The sgdnoise command line: one subcommand per workflow stage, plus inspection.

    sgdnoise point POINT.yaml --out runs/X.nc [--data data/X.nc]   train one grid point
    sgdnoise data POINT.yaml --out data/X.nc                       build a point's data set
    sgdnoise show X.nc                                             JSON summary of an artifact
    sgdnoise validate CONFIG.yaml                                  check a study config, list points
    sgdnoise aggregate --grid grid.tsv --out summary.nc RUN.nc...  assemble a study
    sgdnoise study-fits summary.nc --analyses A... --out fits.nc  study-level fits
    sgdnoise render FIGURE summary.nc --out fig.png [--fits F.nc]  draw one figure

Errors in the input (invalid config, unusable artifact) print one clear line to stderr
and exit with status 2; nothing is written.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import yaml

from sgdnoise.config import ConfigError, expand_study, load_point, resolve_point
from sgdnoise.io.artifact import (
    ArtifactError,
    artifact_config,
    provenance,
    read_artifact,
    write_artifact,
)


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
    from sgdnoise.stages.generate_data import load_datasets

    point = _point_of(args)
    datasets = load_datasets(args.data, point) if args.data else None
    # a killed run resumes from <out>.ckpt when rerun (same result as uninterrupted)
    checkpoint = Path(args.out).with_name(Path(args.out).name + ".ckpt")
    if point["model"]["kind"] == "perceptron":
        from sgdnoise.stages.train import train_point

        dataset = train_point(point, datasets, progress=not args.quiet, checkpoint=checkpoint)
    else:
        from sgdnoise.stages.train_network import train_network_point

        dataset = train_network_point(
            point, datasets, progress=not args.quiet, checkpoint=checkpoint
        )
    write_artifact(dataset, args.out, "run")


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


def cmd_validate(args: argparse.Namespace) -> None:
    with open(args.config) as handle:
        config = yaml.safe_load(handle) or {}
    studies = config.get("studies") or {}
    if not studies:
        raise ConfigError(f"{args.config}: no studies (config key studies is empty)")
    for name, study in studies.items():
        points = expand_study(name, study)
        print(f"{name}: {len(points)} points")
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
    from sgdnoise.theory import UnsupportedPointError, solve_dmft

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
    theory.attrs.update(provenance("dmft", point))
    write_artifact(theory, args.out, "dmft")


def cmd_fit(args: argparse.Namespace) -> None:
    from sgdnoise.stages.fit import fit_point

    run = read_artifact(args.run, "run")
    two_time = read_artifact(args.two_time, "two_time") if args.two_time else None
    dmft = read_artifact(args.dmft, "dmft") if args.dmft else None
    write_artifact(fit_point(run, two_time, dmft), args.out, "fit")


def cmd_aggregate(args: argparse.Namespace) -> None:
    from sgdnoise.stages.aggregate import aggregate

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
    from sgdnoise.plots import render

    render(args.figure, args.summary, args.out, args.fits)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sgdnoise", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    point = commands.add_parser("point", help="train one grid point")
    point.add_argument("point", nargs="?", help="grid point YAML")
    point.add_argument("--json", help="the grid point as JSON text (instead of a file)")
    point.add_argument("--out", required=True, help="run artifact to write (.nc)")
    point.add_argument("--data", help="data artifact from 'sgdnoise data' (else built here)")
    point.add_argument("--quiet", action="store_true", help="no progress bar")
    point.set_defaults(handler=cmd_point)

    data = commands.add_parser("data", help="build the data set of a grid point")
    data.add_argument("point", nargs="?", help="grid point YAML")
    data.add_argument("--json", help="the grid point as JSON text (instead of a file)")
    data.add_argument("--out", required=True, help="data artifact to write (.nc)")
    data.set_defaults(handler=cmd_data)

    show = commands.add_parser("show", help="JSON summary of an artifact's scalars")
    show.add_argument("file")
    show.set_defaults(handler=cmd_show)

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
        help="study-level analyses: power_laws, critical_temperature",
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _set_threads(args.threads)
    try:
        args.handler(args)
    except (ConfigError, ArtifactError) as error:
        print(f"sgdnoise {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
