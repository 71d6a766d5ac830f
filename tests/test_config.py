"""Invalid configurations are rejected before anything runs, naming key and allowed values."""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import pytest
import yaml

from sgdnoise.config import (
    ConfigError,
    PointConfig,
    canonical_json,
    expand_study,
    point_id,
    resolve_point,
)
from sgdnoise.config.grid import ANALYSES


@pytest.mark.parametrize(
    ("raw", "fragments"),
    [
        ({"optimizer": {"kind": "adam"}}, ["optimizer.kind", "sgd", "persistent_sgd"]),
        ({"optimizer": {"bee": 0.3}}, ["bee", "allowed keys", "batch_normalization"]),
        ({"optimizer": {"b": 1.5}}, ["optimizer.b", "<= 1"]),
        ({"optimizer": {"b": 0.0}}, ["optimizer.b", "> 0"]),
        ({"data": {"N": "many"}}, ["data.N", "integer"]),
        ({"run": {"dtype": "float16"}}, ["run.dtype", "float32, float64"]),
        ({"colour": "blue"}, ["colour", "model, loss, data, optimizer, run"]),
        ({"run": {"replicas": 3, "pairing": "same_init"}}, ["run.replicas", "even", "got 3"]),
    ],
)
def test_schema_errors_name_the_key_and_the_allowed_values(raw, fragments):
    raw = {"data": {"P_over_N": 1.0}, **raw} if "data" not in raw else raw
    with pytest.raises(ConfigError) as error:
        resolve_point(raw)
    for fragment in fragments:
        assert fragment in str(error.value)


def test_persistent_sgd_tau_below_its_bound_is_rejected():
    raw = {"data": {"P_over_N": 1.0}, "optimizer": {"kind": "persistent_sgd", "b": 0.2, "lr": 0.1}}
    with pytest.raises(ConfigError, match="optimizer.tau"):
        resolve_point(raw)  # tau missing
    raw["optimizer"]["tau"] = 0.2  # lr (1 - b) / b = 0.4 > 0.2
    with pytest.raises(ConfigError, match=r"tau >= 0\.4"):
        resolve_point(raw)
    raw["optimizer"]["tau"] = 0.4
    assert resolve_point(raw).optimizer.tau == 0.4


def test_derived_values():
    point = resolve_point({"data": {"N": 100, "P_over_N": 1.5}})
    assert point.data.P == 150
    batch = resolve_point(
        {
            "data": {"N": 10, "P": 50},
            "optimizer": {"kind": "minibatch_sgd", "temperature": 0.01, "batch_size": 2},
        }
    )
    assert batch.optimizer.lr == pytest.approx(0.02)  # T = lr / (width B), width 1
    alpha = resolve_point(
        {
            "data": {"N": 10, "P": 5},
            "model": {"alpha": 4.0, "constraint": "none"},
            "loss": {"kind": "hinge", "kappa": None},
        }
    )
    assert alpha.loss.kappa == 0.25
    with pytest.raises(ConfigError, match="1/alpha"):
        resolve_point({"data": {"N": 10, "P": 5}, "model": {"alpha": 4.0}, "loss": {"kappa": 1.0}})


def test_yaml_scientific_notation_read_as_a_number():
    point = resolve_point({"data": {"P": 10}, "run": {"tolerance": "1e-12"}})
    assert point.run.tolerance == 1e-12
    with pytest.raises(ConfigError, match="run.tolerance"):
        resolve_point({"data": {"P": 10}, "run": {"tolerance": "tiny"}})


def test_an_integer_and_its_float_make_one_config_and_one_hash():
    """``alpha: 1`` and ``alpha: 1.0`` share a point id; they must share the config hash
    too, or a run cached under one is refused as stale under the other. Integer fields
    (data.P) stay integers."""
    from sgdnoise.config import config_sha256

    def point(alpha, tolerance):
        return resolve_point(
            {
                "model": {"kind": "fcn", "depth": 2, "width": 8, "alpha": alpha},
                "data": {"kind": "mnist_parity", "P": 64, "P_test": 64},
                "optimizer": {"kind": "minibatch_sgd", "batch_size": 16, "temperature": 0.01},
                "loss": {"kind": "hinge"},
                "run": {"tolerance": tolerance},
            }
        )

    as_int, as_float = point(1, 0), point(1.0, 0.0)
    assert config_sha256(as_int) == config_sha256(as_float)
    assert isinstance(as_int.model.alpha, float) and isinstance(as_int.data.P, int)
    assert config_sha256(resolve_point(as_int)) == config_sha256(as_int)  # idempotent
    assert config_sha256(point(2, 0)) != config_sha256(as_int)


def test_point_ids_are_canonical_numbers():
    assert point_id({"optimizer.b": 0.1}) == point_id({"optimizer.b": 0.10})
    assert point_id({"optimizer.b": 1}) == point_id({"optimizer.b": 1.0}) == "optimizer.b=1"
    assert point_id({"optimizer": {"kind": "sgd", "b": 0.3}}) == "optimizer=sgd+b=0.3"


def test_study_grid_errors():
    base = {"data": {"P_over_N": 1.0}}
    with pytest.raises(ConfigError, match="optimizer.bb.*allowed axes under optimizer"):
        expand_study("s", {"base": base, "grid": {"optimizer.bb": [0.1]}})
    with pytest.raises(ConfigError, match="non-empty list"):
        expand_study("s", {"base": base, "grid": {"optimizer.b": []}})
    with pytest.raises(ConfigError, match=r"(?s)point optimizer.b=2.*optimizer.b"):
        expand_study("s", {"base": base, "grid": {"optimizer.b": [0.5, 2.0]}})
    with pytest.raises(ConfigError, match="unknown analysis"):
        expand_study("s", {"base": base, "analyses": ["teff", "magic"]})
    points = expand_study("s", {"base": base, "grid": {"optimizer.b": [0.10, 0.2]}})
    assert [p.point_id for p in points] == ["optimizer.b=0.1", "optimizer.b=0.2"]
    with pytest.raises(ConfigError, match="two values with the id text '0.1'"):
        expand_study("s", {"base": base, "grid": {"optimizer.b": [0.1, 0.10, 0.2]}})


def test_workflow_schema_lists_every_analysis_the_package_knows():
    """Snakemake validates config.yaml with workflow/schemas/config.schema.yaml before any
    job; its analyses enum must be the package's list (workflow_plan.FIGURES_OF_ANALYSIS),
    else a valid analysis is rejected or an unknown one slips through to the grid check."""
    schema_file = Path(__file__).parents[1] / "workflow" / "schemas" / "config.schema.yaml"
    schema = yaml.safe_load(schema_file.read_text())
    study = schema["properties"]["studies"]["additionalProperties"]["properties"]
    listed = study["analyses"]["items"]["enum"]
    assert len(listed) == len(set(listed)) and set(listed) == set(ANALYSES)


def test_typed_sections_have_exactly_the_schema_keys():
    """Resolves: a key added to point.schema.yaml but not to its dataclass (or the reverse)
    would make every resolve fail, or drop a key from the hash and the artifacts."""
    from sgdnoise.config.schema import point_schema

    def compare(section_type: type, schema: dict, where: str) -> None:
        fields = {field.name: field for field in dataclasses.fields(section_type)}
        assert set(fields) == set(schema["properties"]), where
        hints = typing.get_type_hints(section_type)
        for name, sub in schema["properties"].items():
            if sub.get("type") == "object" and "properties" in sub:  # a free mapping is a dict
                compare(hints[name], sub, f"{where}.{name}")

    compare(PointConfig, point_schema(), "point")


def test_a_resolved_point_is_immutable_and_round_trips_through_its_mapping():
    """Resolves: stages mutating a shared config (a dict edited in place once changed a
    cached point's hash), and a mapping that does not rebuild the same point."""
    point = resolve_point({"data": {"P": 10}, "run": {"response": {"waiting_times": [1.0]}}})
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.run.replicas = 8
    assert point.run.response.waiting_times == (1.0,)
    assert PointConfig.from_mapping(point.to_mapping()) == point
    assert resolve_point(point) == point
    assert json.loads(canonical_json(point)) == point.to_mapping()
    with pytest.raises(ConfigError, match=r"run: expected keys .*got"):
        PointConfig.from_mapping({**point.to_mapping(), "run": {"replicas": 4}})
