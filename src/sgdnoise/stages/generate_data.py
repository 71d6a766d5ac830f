"""Stage generate_data: build a data set once per spec and seed, cache it as NetCDF.

The spec is the ``data:`` section of a grid point (plus the replica count when every
replica draws its own training set, and the pairing when same_init pairs share their
draw); its id ``<kind>-<sha256[:12]>`` names the file, so every grid point with the same
data shares one file.
"""

from __future__ import annotations

import hashlib

import numpy as np
import xarray as xr

from sgdnoise.config import canonical_json
from sgdnoise.config.point import PointConfig
from sgdnoise.data import Dataset, make_dataset
from sgdnoise.io.artifact import ArtifactError, provenance, read_artifact
from sgdnoise.io.metadata import describe


def data_spec(point: PointConfig) -> dict:
    """What determines a point's data: its data section (and, per replica, its draws).

    With data.per_replica the replica count, and the pairing when it is same_init (pairs
    share a draw); only then, so the ids of every other spec stay what they were.
    """
    spec = point.data.to_mapping()
    if spec["per_replica"]:
        spec["replicas"] = point.run.replicas
        if point.run.pairing == "same_init":
            spec["pairing"] = "same_init"
    return spec


def data_spec_id(point: PointConfig) -> str:
    """File id of a point's data: kind and a hash of the spec."""
    spec = data_spec(point)
    digest = hashlib.sha256(canonical_json(spec).encode()).hexdigest()[:12]
    return f"{spec['kind']}-{digest}"


def data_draws(point: PointConfig) -> list[int]:
    """The data draw each replica trains on, one index per replica.

    Draw 0 for every replica on shared data; with data.per_replica the replica's own
    draw (RunConfig.draw_owners: with pairing same_init, replicas 2k and 2k + 1 share draw k).
    """
    if not point.data.per_replica:
        return [0] * point.run.replicas
    return point.run.draw_owners()


def build_datasets(point: PointConfig) -> list[Dataset]:
    """The point's data: one shared Dataset, or one per replica (data.per_replica).

    Per replica, each draw is made once and listed for every replica that trains on it
    (the two replicas of a same_init pair hold the same object).
    """
    data = point.data
    if not data.per_replica:
        return [make_dataset(data)]
    draws = data_draws(point)
    made = {draw: make_dataset(data, draw) for draw in sorted(set(draws))}
    return [made[draw] for draw in draws]


def datasets_to_xarray(point: PointConfig, datasets: list[Dataset]) -> xr.Dataset:
    """The data artifact: inputs flattened to a ``feature`` dim, a ``draw`` dim per replica."""

    def stack(name: str) -> np.ndarray:
        arrays = [getattr(d, name) for d in datasets]
        return np.stack(
            [a.reshape(a.shape[0], int(np.prod(a.shape[1:]))) if a.ndim > 1 else a for a in arrays]
        )

    variables = {
        "x_train": (("draw", "sample", "feature"), stack("x_train")),
        "y_train": (("draw", "sample"), stack("y_train")),
        "x_test": (("draw", "test_sample", "feature"), stack("x_test")),
        "y_test": (("draw", "test_sample"), stack("y_test")),
    }
    if datasets[0].teacher is not None:
        variables["teacher"] = (("feature",), datasets[0].teacher)
    dataset = xr.Dataset(variables)
    dataset.attrs.update(provenance("data"))
    dataset.attrs.update(
        data_spec=canonical_json(data_spec(point)),
        input_shape=list(datasets[0].input_shape),
        description=canonical_json(datasets[0].description),
    )
    extra = {
        "draw": (
            "1",
            "replica whose training set this is (one per replica with data.per_replica; "
            "a same_init pair holds one draw twice)",
        ),
        "test_sample": ("1", "test sample index"),
    }
    return describe(dataset, extra)


def load_datasets(path: str, point: PointConfig) -> list[Dataset]:
    """Read a data artifact back, checking it was made for this point's spec."""
    artifact = read_artifact(path, "data")
    expected = canonical_json(data_spec(point))
    if artifact.attrs.get("data_spec") != expected:
        raise ArtifactError(
            f"{path}: made for data spec {artifact.attrs.get('data_spec')}, "
            f"this point needs {expected}; rerun generate_data"
        )
    shape = tuple(int(n) for n in np.atleast_1d(artifact.attrs["input_shape"]))
    teacher = artifact["teacher"].values if "teacher" in artifact else None
    datasets = []
    for draw in range(artifact.sizes["draw"]):
        part = artifact.isel(draw=draw)
        datasets.append(
            Dataset(
                x_train=part["x_train"].values.reshape(-1, *shape),
                y_train=part["y_train"].values,
                x_test=part["x_test"].values.reshape(-1, *shape),
                y_test=part["y_test"].values,
                teacher=teacher,
            )
        )
    return datasets
