"""Studies: a base point plus grid axes whose Cartesian product makes the grid points.

A grid point's id is a readable, canonical string of its swept values,
``optimizer.b=0.1__optimizer.kind=sgd``: the same number always gives the same
string (0.1 and 0.10 are one file), so adding a value to an axis trains only the new
points.
"""

from __future__ import annotations

import copy
import csv
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sgdnoise.config.point import PointConfig
from sgdnoise.config.schema import (
    ConfigError,
    config_sha256,
    known_key_paths,
    refuse_non_finite,
    resolve_point,
    section_paths,
    set_path,
)
from sgdnoise.workflow_plan import ANALYSES as ANALYSIS_REGISTRY
from sgdnoise.workflow_plan import unmet_needs

STUDY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
ANALYSES = tuple(ANALYSIS_REGISTRY)  # every analysis a study may ask for
# Longest point id: file names add up to ~40 characters (".nc.ckpt", the temporary
# ".<name>.XXXXXXXX.part" of atomic writes) and most file systems stop at 255 bytes.
MAX_POINT_ID_LENGTH = 200
GRID_COLUMNS = ("point_id", "config_sha256", "assignments")


@dataclass(frozen=True)
class GridPoint:
    """One point of a study: its id, swept values (axis path -> value), resolved config,
    and its coordinates (dimension name -> value) in the study's summary and runs."""

    point_id: str
    assignments: dict[str, Any]
    config: PointConfig
    coordinates: dict[str, Any]


def format_value(value: Any) -> str:
    """Canonical text of a swept value: numbers by value (0.10 -> 0.1, 1.0 -> 1).

    A mapping (a variant axis such as ``optimizer: [{kind: gd}, {kind: sgd, b: 0.3}]``)
    reads ``sgd+b=0.3``: its kind first, then the other keys sorted; a bundle value
    (``{label: SAT, data.P_over_N: 1.0, ...}``) reads as its label.
    """
    if isinstance(value, dict) and "label" in value:
        return format_value(value["label"])
    if isinstance(value, dict):
        head = [format_value(value["kind"])] if "kind" in value else []
        rest = [f"{k}={format_value(v)}" for k, v in sorted(value.items()) if k != "kind"]
        return "+".join(head + rest)
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, (int, float)):
        return format(float(value), ".12g")
    if isinstance(value, list):
        return "-".join(format_value(item) for item in value)
    return str(value)


def point_id(assignments: dict[str, Any]) -> str:
    """Readable canonical id of a grid point from its swept values."""
    if not assignments:
        return "base"
    return "__".join(f"{path}={format_value(value)}" for path, value in sorted(assignments.items()))


def coordinate_name(path: str, all_paths: list[str]) -> str:
    """Short dimension name of a grid axis in summary.nc.

    ``optimizer.kind`` -> ``optimizer``; a leaf that is unique among the axes keeps its
    own name (``optimizer.b`` -> ``b``); otherwise section and leaf (``data_seed``).
    """
    parts = path.split(".")
    if parts[-1] == "kind":
        return parts[0]
    leaves = [p.split(".")[-1] for p in all_paths]
    if leaves.count(parts[-1]) == 1 and parts[-1] not in {"model", "loss", "data", "optimizer"}:
        return parts[-1]
    return "_".join(parts)


def grid_coordinates(assignments: dict[str, Any], axes: list[str]) -> dict[str, Any]:
    """Dimension name -> value of a point's swept values (variants and bundles by label)."""
    return {
        coordinate_name(path, axes): format_value(value) if isinstance(value, dict) else value
        for path, value in assignments.items()
    }


def _assign(raw: dict, path: str, value: Any) -> None:
    """Set a key path; a mapping value is merged key by key into the section."""
    if isinstance(value, dict):
        for key, item in value.items():
            _assign(raw, f"{path}.{key}", item)
    else:
        set_path(raw, path, copy.deepcopy(value))


def _check_bundle(study: str, axis: str, values: Any, known: set[str]) -> None:
    """A bundle axis: values are mappings {label: ..., <dotted key>: value, ...}."""
    if not isinstance(values, list) or not values:
        raise ConfigError(f"study {study}: grid axis {axis!r} needs a non-empty list of values")
    for value in values:
        if not isinstance(value, dict) or "label" not in value:
            raise ConfigError(
                f"study {study}: grid axis {axis!r} is not a configuration key; a named bundle "
                "axis takes mappings {label: ..., <key path>: value, ...}"
            )
        unknown = sorted(
            k for k in value if k != "label" and k not in known and k not in section_paths()
        )
        if unknown:
            raise ConfigError(
                f"study {study}: bundle axis {axis!r} value {value['label']!r} sets unknown keys "
                f"{unknown}; keys are dotted configuration paths such as data.P_over_N"
            )


def _flat_keys(path: str, value: Any) -> set[str]:
    """The leaf key paths a grid value sets at ``path`` (mappings opened recursively)."""
    if isinstance(value, dict):
        return set().union(*(_flat_keys(f"{path}.{key}", item) for key, item in value.items()))
    return {path}


def _keys_set_by(axis: str, values: list) -> set[str]:
    """Every configuration key path that some value of a grid axis sets."""
    keys: set[str] = set()
    for value in values:
        if isinstance(value, dict) and "label" in value:  # a bundle: dotted keys
            for key, item in value.items():
                if key != "label":
                    keys |= _flat_keys(key, item)
        else:
            keys |= _flat_keys(axis, value)
    return keys


def _refuse_overlapping_axes(study: str, grid: dict) -> None:
    """Two axes that set one key would run a value other than the one an id names."""
    owners: dict[str, str] = {}
    for axis, values in grid.items():
        for key in sorted(_keys_set_by(axis, values)):
            # a key clashes with the same key, or with a mapping above or below it
            for other_key, other_axis in owners.items():
                if other_axis == axis:
                    continue
                if (
                    key == other_key
                    or key.startswith(other_key + ".")
                    or other_key.startswith(key + ".")
                ):
                    raise ConfigError(
                        f"study {study}: grid axes {other_axis!r} and {axis!r} both set "
                        f"{min(key, other_key, key=len)}; a point's id would name one value "
                        "while it runs the other. Set each key in one axis only"
                    )
            owners[key] = axis


def _refuse_colliding_values(study: str, axis: str, values: list) -> None:
    """Two values of an axis whose id text is the same would share one point (one file)."""
    seen: dict[str, Any] = {}
    for value in values:
        text = format_value(value)
        if text in seen:
            what = "label" if isinstance(value, dict) and "label" in value else "value"
            raise ConfigError(
                f"study {study}: grid axis {axis!r} has two values with the id text {text!r} "
                f"({seen[text]!r} and {value!r}); each {what} must be distinct "
                "(numbers are told apart to 12 significant digits)"
            )
        seen[text] = value


def grid_size(study: dict) -> int:
    """Number of points of a study, without expanding it (product of the axis lengths)."""
    size = 1
    for values in (study.get("grid") or {}).values():
        size *= len(values) if isinstance(values, list) else 1
    return size


def _check_axes(name: str, grid: dict) -> None:
    """Every axis is a key, a section with mapping values, or a bundle; no ambiguity."""
    known = set(known_key_paths())
    sections = set(section_paths())
    for axis, values in grid.items():
        if "." not in axis and axis not in sections and axis not in known:
            _check_bundle(name, axis, values, known)
        elif axis in sections:
            if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
                raise ConfigError(
                    f"study {name}: grid axis {axis!r} is a section: its values must be "
                    "mappings of that section's keys (variants)"
                )
        elif axis not in known:
            section = axis.split(".")[0]
            near = sorted(k for k in known if k.startswith(section + "."))
            raise ConfigError(
                f"study {name}: grid axis {axis!r} is not a configuration key; allowed axes"
                f"{' under ' + section if near else ''}: {', '.join(near or sorted(known))}"
                f" (or a whole section with mapping values: {', '.join(sorted(sections))})"
            )
        if not isinstance(values, list) or not values:
            raise ConfigError(f"study {name}: grid axis {axis!r} needs a non-empty list of values")
        try:
            refuse_non_finite(values, f"grid.{axis}")
        except ConfigError as error:
            raise ConfigError(f"study {name}: {error}") from None
        _refuse_colliding_values(name, axis, values)
    _refuse_overlapping_axes(name, grid)


def expand_study(name: str, study: dict) -> list[GridPoint]:
    """Every grid point of a study, resolved and validated (ConfigError if any is invalid).

    Refused before any point is built: unknown axes, two axes that set one key (a bundle
    key that an axis also sets, a variant that sets a swept key), values of one axis whose
    ids collide, non-finite numbers, ids too long for a file name, and analyses the
    study's points cannot feed.
    """
    if not STUDY_NAME.match(name):
        raise ConfigError(f"study name {name!r}: use letters, digits, '_' and '-'")
    grid = study.get("grid") or {}
    _check_axes(name, grid)
    analyses = study.get("analyses", [])
    for analysis in analyses:
        if analysis not in ANALYSES:
            raise ConfigError(
                f"study {name}: unknown analysis {analysis!r}; allowed: {', '.join(ANALYSES)}"
            )
    axes = list(grid)
    points: list[GridPoint] = []
    for combination in itertools.product(*(grid[a] for a in axes)):
        assignments = dict(zip(axes, combination, strict=True))
        raw = copy.deepcopy(study.get("base") or {})
        for path, value in assignments.items():
            if isinstance(value, dict) and "label" in value:
                for key, item in value.items():
                    if key != "label":
                        _assign(raw, key, item)
            elif isinstance(value, dict):
                _assign(raw, path, value)
            else:
                set_path(raw, path, value)
        identifier = point_id(assignments)
        if len(identifier) > MAX_POINT_ID_LENGTH:
            raise ConfigError(
                f"study {name}: point id {identifier[:60]}... is {len(identifier)} characters, "
                f"longer than {MAX_POINT_ID_LENGTH} (a file name); give variant or bundle "
                "values a short label: [{label: A, <key path>: value, ...}]"
            )
        try:
            config = resolve_point(raw)
        except ConfigError as error:
            raise ConfigError(f"study {name}, point {identifier}: {error}") from None
        points.append(
            GridPoint(identifier, assignments, config, grid_coordinates(assignments, axes))
        )
    problems = unmet_needs(analyses, points, swept_key_paths(grid))
    if problems:
        raise ConfigError(f"study {name}: " + "; ".join(problems))
    return points


def swept_key_paths(grid: dict) -> list[str]:
    """Every configuration key path a study's grid sets (bundles and variants opened)."""
    return sorted(set().union(*(_keys_set_by(axis, values) for axis, values in grid.items())))


def grid_table(points: list[GridPoint]) -> str:
    """Tab-separated table of a study's points: id, config hash, swept values (JSON)."""
    lines = ["\t".join(GRID_COLUMNS)]
    for point in points:
        assignments = json.dumps(point.assignments, sort_keys=True)
        lines.append("\t".join([point.point_id, config_sha256(point.config), assignments]))
    return "\n".join(lines) + "\n"


def read_grid_table(path: str | Path) -> list[dict]:
    """Rows of a grid table with the assignments decoded."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    for row in rows:
        row["assignments"] = json.loads(row["assignments"])
    return rows
