"""Stage aggregate: every grid point of a study on named dims in one summary.nc.

Input: the study's grid table (point id, config sha256, swept values) and the run
artifacts. Each run is reduced to what analyses and figures need (recorded time series
per replica, per-replica scalars, status), given its grid values as length-1
dimensions, and the points are combined by coordinates. A run whose config hash is
not the one the grid expects is refused, naming the file: an edited config never
reuses stale results silently.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from sgdnoise.config import coordinate_name
from sgdnoise.config.grid import grid_coordinates, read_grid_table
from sgdnoise.io.artifact import ArtifactError, provenance, read_artifact, with_grid_dimensions

HEAVY_VARIABLES = ("weights", "final_weights", "initial_weights", "final_stabilities")


def reduce_run(run: xr.Dataset) -> xr.Dataset:
    """What a study summary keeps of one run: time series and per-replica scalars."""
    reduced = run.drop_vars([name for name in HEAVY_VARIABLES if name in run])
    reduced = reduced.drop_vars([name for name in ("feature", "sample") if name in reduced.coords])
    reduced["status"] = xr.DataArray(run.attrs.get("status", "completed"))
    reduced["status"].attrs.update(units="1", long_name="status of the point's run")
    reduced["wall_seconds"] = xr.DataArray(float(run.attrs.get("wall_seconds", np.nan)))
    reduced["wall_seconds"].attrs.update(
        units="s", long_name="wall time of the run (summed over its processes if resumed)"
    )
    reduced.attrs = {}
    return reduced


def with_grid_coordinates(reduced: xr.Dataset, assignments: dict, axes: list[str]) -> xr.Dataset:
    """Give a reduced run its swept values as length-1 dimensions."""
    return with_grid_dimensions(reduced, grid_coordinates(assignments, axes), axes)


def swept_paths(rows: list[dict]) -> list[str]:
    """Every configuration key path that some grid axis sets (bundles and variants opened)."""
    paths: set[str] = set()
    for row in rows:
        for axis, value in row["assignments"].items():
            if isinstance(value, dict) and "label" in value:
                paths.update(key for key in value if key != "label")
            elif isinstance(value, dict):
                paths.update(f"{axis}.{key}" for key in value)
            else:
                paths.add(axis)
    return sorted(paths)


def aggregate(
    grid_path: str | Path, run_paths: list[str | Path], fit_paths: list[str | Path] = ()
) -> xr.Dataset:
    """The study summary from its grid table, run and fits artifacts (matched by point id)."""
    rows = read_grid_table(grid_path)
    by_id = {Path(p).stem: Path(p) for p in run_paths}
    fits_by_id = {Path(p).stem: Path(p) for p in fit_paths}
    axes = sorted(rows[0]["assignments"]) if rows else []
    reduced_points, example_config = [], None
    for row in rows:
        path = by_id.get(row["point_id"])
        if path is None:
            raise ArtifactError(f"{grid_path}: no run artifact given for point {row['point_id']}")
        run = read_artifact(path, "run")
        if run.attrs.get("config_sha256") != row["config_sha256"]:
            raise ArtifactError(
                f"{path}: trained with config sha256 {run.attrs.get('config_sha256')}, the "
                f"study now asks {row['config_sha256']}; it is stale: rerun train_replicas"
            )
        example_config = example_config or run.attrs.get("config")
        reduced = reduce_run(run)
        if row["point_id"] in fits_by_id:
            fits = read_artifact(fits_by_id[row["point_id"]], "fit")
            fits.attrs = {}
            reduced = xr.merge([reduced, fits], compat="no_conflicts", combine_attrs="override")
        reduced_points.append(reduced)
    parts = [
        with_grid_coordinates(reduced, row["assignments"], axes)
        for reduced, row in zip(reduced_points, rows, strict=True)
    ]
    summary = (
        # every variable already carries the grid dimensions ("minimal"): with "all",
        # xarray gives variables dimensions they do not have (a scalar T_eff gained
        # record when runs of different lengths met)
        xr.combine_by_coords(
            parts,
            compat="no_conflicts",
            join="outer",
            data_vars="minimal",
            coords="minimal",
            combine_attrs="override",
        )
        if axes
        else parts[0]
    )
    summary.attrs.update(provenance("summary"))
    summary.attrs["example_config"] = example_config
    summary.attrs["swept_paths"] = json.dumps(swept_paths(rows))
    summary.attrs["grid_axes"] = json.dumps({coordinate_name(path, axes): path for path in axes})
    return summary
