"""Self-describing NetCDF artifacts: atomic writes, provenance, checked reads.

Every artifact is one xarray Dataset in a NetCDF-4 file. Writing stamps provenance
(schema and package versions, git commit, the grid point's config and its sha256,
device, wall seconds), compresses every variable (zlib), and goes through a temporary
file in the same directory that is renamed into place only when complete: a killed job
never leaves a file that looks finished. Reading refuses, naming the file, anything that
is not a NetCDF file, was not written by sgdnoise, or has another schema version.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import sgdnoise
from sgdnoise.config import ConfigError, PointConfig, canonical_json, config_sha256

SCHEMA_VERSION = 1
ARTIFACT_KINDS = ("data", "run", "two_time", "fit", "dmft", "summary")


class ArtifactError(OSError):
    """An artifact that cannot be used; the message names the file and the reason."""


def git_commit() -> str:
    """The commit of the source tree sgdnoise runs from ('unknown' outside git)."""
    source = Path(sgdnoise.__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def provenance(kind: str, point: PointConfig | None = None) -> dict[str, str | int | float]:
    """Attributes every artifact carries."""
    import torch

    attributes: dict[str, str | int | float] = {
        "artifact_kind": kind,
        "schema_version": SCHEMA_VERSION,
        "sgdnoise_version": sgdnoise.__version__,
        "git_commit": git_commit(),
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "xarray_version": xr.__version__,
        "python_version": platform.python_version(),
        "Conventions": "CF-1.8",
    }
    if point is not None:
        attributes["config"] = canonical_json(point)
        attributes["config_sha256"] = config_sha256(point)
    return attributes


def _encoding(dataset: xr.Dataset) -> dict[str, dict]:
    encoding = {}
    for name, variable in dataset.variables.items():
        if variable.dtype.kind in "fiub":
            encoding[name] = {"zlib": True, "complevel": 4}
        elif variable.dtype.kind in "OUS":
            # variable-length strings: a fixed width read from one input file (e.g. 9 for
            # "completed") would truncate longer values combined from others
            encoding[name] = {"dtype": str}
    return encoding


def with_grid_dimensions(
    dataset: xr.Dataset, coordinates: dict[str, Any], paths: list[str] | None = None
) -> xr.Dataset:
    """``dataset`` with a point's grid values as length-1 dimensions (name -> value), so
    that points combine by coordinates. ``paths``: the config key path of each name.

    Coordinates that are not indexes (``time`` and ``step`` on ``record``: they differ
    between points) get the grid dimensions too, so combining needs no option.
    """
    extra = [name for name in dataset.coords if name not in dataset.indexes]
    dataset = dataset.reset_coords(extra)
    for index, (name, value) in enumerate(coordinates.items()):
        dataset = dataset.expand_dims({name: [value]})
        path = paths[index] if paths else name
        dataset[name].attrs.update(units="1", long_name=f"grid axis {path}")
    return dataset.set_coords(extra)


def _umask() -> int:
    """The process's umask, read without changing it (Linux: /proc/self/status) or, where
    there is no such file, by setting it and restoring it at once."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def write_artifact(
    dataset: xr.Dataset,
    path: str | os.PathLike,
    kind: str,
    grid_coordinates: dict[str, Any] | None = None,
) -> None:
    """Write ``dataset`` atomically to ``path`` (NetCDF-4, zlib), stamping its kind.

    ``grid_coordinates`` (dimension name -> value, a grid point's swept values) are
    written as length-1 dimensions: a study's files then combine with plain xarray,
    ``xr.open_mfdataset("results/<study>/runs/*.nc")``; ``read_artifact`` removes them
    again, so every stage reads one point.

    Variables must carry ``units`` and ``long_name`` (ValueError otherwise): an
    artifact explains itself.
    """
    if kind not in ARTIFACT_KINDS:
        raise ValueError(f"artifact kind {kind!r}; allowed: {', '.join(ARTIFACT_KINDS)}")
    missing = [
        name
        for name, variable in dataset.data_vars.items()
        if "units" not in variable.attrs or "long_name" not in variable.attrs
    ]
    if missing:
        raise ValueError(f"variables without units/long_name: {', '.join(map(str, missing))}")
    dataset = dataset.copy()
    if grid_coordinates:
        dataset = with_grid_dimensions(dataset, grid_coordinates)
        dataset.attrs["grid_dimensions"] = json.dumps(list(grid_coordinates))
    dataset.attrs.setdefault("artifact_kind", kind)
    dataset.attrs.setdefault("schema_version", SCHEMA_VERSION)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".part", dir=target.parent
    )
    os.close(handle)
    try:
        dataset.to_netcdf(
            temporary, engine="netcdf4", format="NETCDF4", encoding=_encoding(dataset)
        )
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's 0600 would hide it from the group
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_artifact(path: str | os.PathLike, kind: str | None = None) -> xr.Dataset:
    """Open an artifact fully into memory, checking it is an sgdnoise artifact of ``kind``."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(f"{path}: no such artifact")
    try:
        with xr.open_dataset(path, engine="netcdf4") as handle:
            dataset = handle.load()
    except Exception as error:  # netCDF4 raises OSError, ValueError, RuntimeError...
        raise ArtifactError(
            f"{path}: not a readable NetCDF file ({type(error).__name__}: {error}); "
            "delete it and rerun the stage that makes it"
        ) from error
    version = dataset.attrs.get("schema_version")
    if version is None or "artifact_kind" not in dataset.attrs:
        raise ArtifactError(
            f"{path}: not an sgdnoise artifact (no schema_version / artifact_kind attribute)"
        )
    if int(version) != SCHEMA_VERSION:
        raise ArtifactError(
            f"{path}: schema_version {version}, this sgdnoise reads {SCHEMA_VERSION}; "
            "rerun the stage that makes it (snakemake --forcerun) or use a matching sgdnoise"
        )
    if kind is not None and dataset.attrs["artifact_kind"] != kind:
        raise ArtifactError(
            f"{path}: a {dataset.attrs['artifact_kind']} artifact where a {kind} artifact "
            "was expected"
        )
    grid_dimensions = json.loads(dataset.attrs.pop("grid_dimensions", "[]"))
    return dataset.squeeze(grid_dimensions, drop=True) if grid_dimensions else dataset


def artifact_config(dataset: xr.Dataset) -> PointConfig:
    """The grid point an artifact was made from (its ``config`` attribute), typed."""
    return _stored_point(dataset, "config")


def study_config(summary: xr.Dataset) -> PointConfig:
    """The config of one of a study summary's points: what the grid does not sweep."""
    return _stored_point(summary, "example_config")


def _stored_point(dataset: xr.Dataset, attribute: str) -> PointConfig:
    where = dataset.encoding.get("source", "an artifact")
    if attribute not in dataset.attrs:
        raise ArtifactError(f"{where}: no {attribute} attribute (not a grid point's artifact)")
    try:
        return PointConfig.from_mapping(json.loads(dataset.attrs[attribute]))
    except (ConfigError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{where}: attribute {attribute}: {error}") from None


def grid_axes(summary: xr.Dataset) -> dict[str, str]:
    """Dimension name -> config key path of a study summary's swept axes."""
    return json.loads(summary.attrs.get("grid_axes", "{}") or "{}")
