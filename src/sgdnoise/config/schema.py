"""Validation of one grid point: JSON schema, defaults, and the physics cross-checks.

A grid point is the nested mapping of docs/design.md (model, loss, data, optimizer, run).
`resolve_point` fills every default from `point.schema.yaml`, rejects unknown keys and
bad values with a message naming the key and what is allowed, checks the conditions
the schema cannot express (persistent-SGD bounds on tau, P or P/N given, ...), and
derives the dependent values (P from P/N, lr from the temperature of minibatch SGD,
kappa = 1/alpha for the alpha-trick). The result is the canonical point, returned typed
and immutable (`config.point.PointConfig`): its mapping is what is hashed and stored in
every artifact, the dataclass is what every stage and engine receives.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import math
from importlib import resources
from typing import Any

import fastjsonschema
import jsonschema
import yaml

from sgdnoise.config.point import PointConfig

DEFAULT_LEARNING_RATE = 0.05
IMAGE_DATA = ("mnist_parity", "fashion_mnist_parity", "cifar_animals")
MARGIN_LOSSES = ("square_hinge", "hinge")
SQUARE_HINGE_TOLERANCE = 1e-10  # loss per sample: the square hinge only decays to zero


class ConfigError(ValueError):
    """An invalid configuration; the message names the key and what is allowed."""


@functools.cache
def point_schema() -> dict:
    """The JSON schema of one grid point (shipped with the package)."""
    text = resources.files("sgdnoise.config").joinpath("point.schema.yaml").read_text()
    return yaml.safe_load(text)


def _fill_defaults(node: dict, schema: dict) -> None:
    """Insert the schema's defaults for missing keys, recursively (in place)."""
    for key, sub in schema.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if isinstance(node.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(node[key], sub)


def _coerce_numbers(node: dict, schema: dict) -> None:
    """Read numbers as floats where the schema wants a number (in place).

    YAML 1.1 (PyYAML, Snakemake) reads ``1e-10`` (no dot) as a string; users mean the
    number. An integer (``alpha: 1``) becomes the float it stands for, so that ``1`` and
    ``1.0`` make one config and one sha256, as they make one point id. Text that does not
    parse stays text and fails validation with a message.
    """
    for key, sub in schema.get("properties", {}).items():
        value = node.get(key)
        types = sub.get("type", [])
        types = [types] if isinstance(types, str) else types
        if "number" in types and "integer" not in types:
            if key in node:
                node[key] = _as_number(value)
        elif isinstance(value, list) and sub.get("items", {}).get("type") == "number":
            node[key] = [_as_number(item) for item in value]
        elif isinstance(value, dict) and sub.get("type") == "object":
            _coerce_numbers(value, sub)


def _as_number(value: Any) -> Any:
    """``value`` as a float if it is an integer or numeric text, else unchanged."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _allowed(schema: dict) -> str:
    """Human description of what a schema node accepts."""
    if "enum" in schema:
        return "one of " + ", ".join(map(str, schema["enum"]))
    if schema.get("type") == "object":
        return "a mapping with keys " + ", ".join(schema.get("properties", {}))
    parts = [str(schema.get("type", "any value"))]
    for bound, symbol in [("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<=")]:
        if bound in schema:
            parts.append(f"{symbol} {schema[bound]}")
    return " ".join(parts)


def _describe(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    if error.validator == "additionalProperties":
        known = ", ".join(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        where = path if path != "<top level>" else "the point"
        return f"unknown key(s) {extra} in {where}; allowed keys: {known}"
    return f"config key {path}: {error.message}; allowed: {_allowed(error.schema)}"


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(point_schema())


@functools.cache
def _compiled_check():
    """The schema compiled to Python by fastjsonschema: ~30x faster on valid points."""
    return fastjsonschema.compile(point_schema(), use_default=False)


def validate_against_schema(point: dict) -> None:
    """Raise ConfigError listing every schema violation of a (default-filled) point.

    Valid points pass the compiled check; an invalid one is re-validated by jsonschema,
    whose messages name every offending key.
    """
    try:
        _compiled_check()(point)
        return
    except fastjsonschema.JsonSchemaException:
        pass
    errors = sorted(_validator().iter_errors(point), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(map(_describe, errors)))


def refuse_non_finite(node: Any, path: str = "") -> None:
    """Raise ConfigError naming the first key that holds NaN or an infinity.

    JSON-schema bounds cannot catch them (every comparison with NaN is false), and YAML
    reads ``.nan`` and ``.inf`` as floats; the text forms (``nan``, ``Infinity``) arrive
    here already read as numbers by ``_coerce_numbers``.
    """
    if isinstance(node, dict):
        for key, value in node.items():
            refuse_non_finite(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            refuse_non_finite(value, f"{path}[{index}]")
    elif isinstance(node, float) and not math.isfinite(node):
        raise ConfigError(f"config key {path or '<top level>'}: {node} is not a finite number")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _resolve_data(data: dict, model: dict) -> None:
    _require(
        (data["factory"] is None) or data["kind"] == "arrays",
        f"config key data.factory: only data.kind arrays reads a factory, not {data['kind']}",
    )
    if data["kind"] == "arrays":
        from sgdnoise.data.arrays import resolve_array_sizes

        _require(
            model["kind"] == "torch",
            f"config key data.kind: arrays trains model.kind torch, not {model['kind']}",
        )
        _require(
            (data["path"] is None) != (data["factory"] is None),
            "config key data.path / data.factory: data.kind arrays needs exactly one of them "
            "(a .npz or .pt file, or a function returning the arrays)",
        )
        resolve_array_sizes(data)
        return
    if data["kind"] in IMAGE_DATA:
        _require(
            data["P"] is not None, f"config key data.P: required for image data ({data['kind']})"
        )
        _require(
            data["kind"] != "cifar_animals" or data["path"] is not None,
            "config key data.path: cifar_animals needs the directory that holds your "
            "cifar-10-batches-py (no copy of CIFAR-10 is installed)",
        )
        return
    _require(
        data["P"] is not None or data["P_over_N"] is not None,
        "config key data.P / data.P_over_N: give the number of samples P or the ratio P_over_N",
    )
    from_ratio = None if data["P_over_N"] is None else max(1, round(data["P_over_N"] * data["N"]))
    if data["P"] is None:
        data["P"] = from_ratio
    elif from_ratio is not None:
        _require(
            from_ratio == data["P"],
            f"config keys data.P = {data['P']} and data.P_over_N = {data['P_over_N']} disagree "
            f"(N = {data['N']} gives P = {from_ratio}); give only one",
        )
    _require(
        model["kind"] in ("perceptron", "torch"),
        f"config key model.kind: {model['kind']} needs image data; "
        "allowed with synthetic data: perceptron, torch",
    )


def _resolve_optimizer(optimizer: dict, model: dict, data: dict) -> None:
    kind = optimizer["kind"]
    width = model["width"] if model["kind"] in ("fcn", "cnn") else 1
    if kind == "minibatch_sgd":
        lr, temperature, batch = optimizer["lr"], optimizer["temperature"], optimizer["batch_size"]
        _require(
            lr is not None or temperature is not None,
            "config key optimizer.lr / optimizer.temperature: minibatch_sgd needs one of them "
            "(T = lr / (width x batch_size))",
        )
        if lr is None:
            optimizer["lr"] = temperature * width * batch
        elif temperature is None:
            optimizer["temperature"] = lr / (width * batch)
        else:
            _require(
                math.isclose(temperature, lr / (width * batch), rel_tol=1e-9),
                f"config keys optimizer.lr = {lr} and optimizer.temperature = {temperature} "
                f"disagree: T must equal lr / (width x batch_size) = {lr / (width * batch)}",
            )
        if data["P"] is not None:
            _require(
                batch <= data["P"],
                f"config key optimizer.batch_size = {batch}: must be <= data.P = {data['P']}",
            )
        return
    if optimizer["lr"] is None:
        optimizer["lr"] = DEFAULT_LEARNING_RATE
    lr, b, tau = optimizer["lr"], optimizer["b"], optimizer["tau"]
    if kind == "langevin":
        _require(
            optimizer["temperature"] is not None,
            "config key optimizer.temperature: langevin needs a temperature T > 0",
        )
    if kind == "persistent_sgd":
        _require(tau is not None, "config key optimizer.tau: persistent_sgd needs tau > 0")
        bound = max(lr, lr * (1 - b) / b)
        _require(
            tau >= bound * (1 - 1e-12),
            f"config key optimizer.tau = {tau}: persistent_sgd needs tau >= lr = {lr} and "
            f"tau >= lr (1 - b) / b = {lr * (1 - b) / b}; allowed: tau >= {bound}",
        )
    _require(
        model["kind"] in ("perceptron", "torch"),
        f"config key optimizer.kind: {kind} trains the perceptron and model.kind torch; "
        "the alpha-trick networks use minibatch_sgd",
    )


def _resolve_torch_model(model: dict, loss: dict) -> None:
    """model.kind torch: a factory, no alpha-trick, constraint none or ridge, any loss."""
    _require(
        model["factory"] is not None,
        'config key model.factory: model.kind torch needs "package.module:function", a '
        "function returning your nn.Module",
    )
    _require(
        model["alpha"] is None,
        "config key model.alpha: the alpha-trick is for the fcn and cnn networks; "
        "allowed with model.kind torch: null",
    )
    if model["constraint"] is None:
        model["constraint"] = "none"
    _require(
        model["constraint"] in ("none", "ridge"),
        f"config key model.constraint: {model['constraint']} is the perceptron's; "
        "allowed with model.kind torch: none, ridge",
    )
    if loss["kind"] not in MARGIN_LOSSES:
        _require(
            loss["kappa"] in (None, 0, 0.0),
            f"config key loss.kappa: {loss['kind']} has no margin; allowed: null",
        )
        loss["kappa"] = 0.0
    elif loss["kappa"] is None:
        loss["kappa"] = 0.0


def _resolve_model_and_loss(model: dict, loss: dict) -> None:
    _require(
        model["kind"] == "torch" or (model["factory"] is None and not model["options"]),
        f"config key model.factory / model.options: only model.kind torch builds a module "
        f"from a factory, not {model['kind']}",
    )
    if model["kind"] == "torch":
        _resolve_torch_model(model, loss)
        return
    _require(
        loss["kind"] in MARGIN_LOSSES,
        f"config key loss.kind: {loss['kind']} is for model.kind torch; allowed for "
        f"{model['kind']}: {', '.join(MARGIN_LOSSES)}",
    )
    if model["constraint"] is None:
        model["constraint"] = "sphere"
    alpha = model["alpha"]
    _require(
        model["kind"] == "perceptron" or alpha is not None,
        f"config key model.alpha: the {model['kind']} network is trained with the alpha-trick "
        "(F = alpha (f - f0), hinge at margin 1/alpha); give alpha > 0",
    )
    if alpha is None:
        if loss["kappa"] is None:
            loss["kappa"] = 0.0
        return
    if loss["kappa"] is None:
        loss["kappa"] = 1.0 / alpha
    _require(
        math.isclose(loss["kappa"], 1.0 / alpha, rel_tol=1e-12),
        f"config key loss.kappa = {loss['kappa']}: with model.alpha = {alpha} the margin is "
        f"1/alpha = {1.0 / alpha}; allowed: null or {1.0 / alpha}",
    )


def _resolve_stop(run: dict, loss: dict, optimizer: dict, data: dict) -> None:
    """Defaults of the zero-loss stop that follow the physics of the loss.

    The hinge reaches exactly zero loss, so zero means zero (tolerance 0), and the exact
    stopping time t* = lr (last moving step + 1) does not depend on when zero loss is
    checked: minibatch SGD checks about once per epoch. The square hinge only decays
    exponentially: a small positive tolerance, checked every step.
    """
    if run["tolerance"] is None:
        run["tolerance"] = 0.0 if loss["kind"] == "hinge" else SQUARE_HINGE_TOLERANCE
    if run["check_every"] is None:
        exact = run["tolerance"] == 0 and optimizer["kind"] == "minibatch_sgd"
        run["check_every"] = -(-data["P"] // optimizer["batch_size"]) if exact else 1


def _resolve_engine(run: dict, model: dict, optimizer: dict) -> None:
    """run.engine: events only where the event-driven engine is exact in law (both losses
    have v'(h) = 0 beyond the margin); auto -> events there when zero loss is exact
    (tolerance 0: the engine then sees it without checks), else steps."""
    conditions = {
        "model.kind perceptron": model["kind"] == "perceptron",
        "model.constraint none": model["constraint"] == "none",
        "optimizer.kind minibatch_sgd": optimizer["kind"] == "minibatch_sgd",
    }
    unmet = [condition for condition, holds in conditions.items() if not holds]
    if run["engine"] == "auto":
        run["engine"] = "events" if not unmet and run["tolerance"] == 0 else "steps"
    _require(
        run["engine"] != "events" or not unmet,
        f"config key run.engine: events is exact only with {', '.join(conditions)}; this "
        f"point lacks {', '.join(unmet)}; allowed here: auto, steps",
    )


def _resolve_run(run: dict, model: dict, optimizer: dict) -> None:
    if run["device"] == "cuda":
        import torch

        _require(
            torch.cuda.is_available(),
            "config key run.device: cuda, but torch sees no CUDA device on this machine; "
            "allowed here: auto, cpu",
        )
    if run["init"] == "gd_minimum":
        _require(
            model["kind"] == "perceptron",
            "config key run.init: gd_minimum is for the perceptron; allowed for networks and "
            "model.kind torch: random",
        )
    for t_w in run["response"]["waiting_times"]:
        _require(
            t_w < run["max_time"],
            f"config key run.response.waiting_times: t_w = {t_w} must be < run.max_time "
            f"= {run['max_time']}",
        )
    if run["response"]["waiting_times"]:
        _require(
            model["kind"] in ("perceptron", "torch"),
            "config key run.response: the exact response is measured for the perceptron and "
            "model.kind torch, not the alpha-trick networks",
        )
    _require(
        run["stop"] != "zero_loss" or optimizer["kind"] != "langevin",
        "config key run.stop: langevin never reaches zero loss; allowed: never",
    )
    _require(
        run["pairing"] != "same_init" or run["replicas"] % 2 == 0,
        "config key run.replicas: pairing same_init needs an even number of replicas "
        f"(pairs 2k, 2k + 1), got {run['replicas']}",
    )


def resolve_point(raw: dict | PointConfig | None) -> PointConfig:
    """Return the canonical, validated grid point made from a (partial) mapping.

    Missing keys take the schema's defaults; unknown keys, wrong types and values out of
    bounds raise ConfigError naming the key and what is allowed. A PointConfig is
    validated again through its mapping (resolution is idempotent).
    """
    if isinstance(raw, PointConfig):
        raw = raw.to_mapping()
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"a grid point must be a mapping, got {type(raw).__name__}")
    point = copy.deepcopy(raw)
    _fill_defaults(point, point_schema())
    _coerce_numbers(point, point_schema())
    refuse_non_finite(point)
    validate_against_schema(point)
    _resolve_model_and_loss(point["model"], point["loss"])
    _resolve_data(point["data"], point["model"])
    _resolve_optimizer(point["optimizer"], point["model"], point["data"])
    _resolve_stop(point["run"], point["loss"], point["optimizer"], point["data"])
    _resolve_engine(point["run"], point["model"], point["optimizer"])
    _resolve_run(point["run"], point["model"], point["optimizer"])
    refuse_non_finite(point)
    validate_against_schema(point)
    resolved = PointConfig.from_mapping(point)
    if resolved.model.kind == "torch":
        from sgdnoise.models.user import check_user_point

        check_user_point(resolved)
    return resolved


def canonical_json(point: PointConfig | dict) -> str:
    """JSON text of a point (or of any mapping) with sorted keys: what is hashed and stored."""
    mapping = point.to_mapping() if isinstance(point, PointConfig) else point
    return json.dumps(mapping, sort_keys=True, separators=(",", ":"))


def config_sha256(point: PointConfig) -> str:
    """sha256 of the canonical JSON of a resolved point."""
    return hashlib.sha256(canonical_json(point).encode()).hexdigest()


def load_point(path: str) -> PointConfig:
    """Read a YAML or JSON grid point from a file and resolve it."""
    with open(path) as handle:
        try:
            raw = yaml.safe_load(handle)
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from error
    try:
        return resolve_point(raw)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def known_key_paths(schema: dict | None = None, prefix: str = "") -> list[str]:
    """Every dotted key path of the point schema (the possible grid axes)."""
    schema = point_schema() if schema is None else schema
    paths = []
    for key, sub in schema.get("properties", {}).items():
        path = f"{prefix}{key}"
        if sub.get("type") == "object":
            paths.extend(known_key_paths(sub, path + "."))
        else:
            paths.append(path)
    return paths


def section_paths(schema: dict | None = None, prefix: str = "") -> list[str]:
    """Every dotted path of a mapping in the point schema (variant grid axes)."""
    schema = point_schema() if schema is None else schema
    paths = []
    for key, sub in schema.get("properties", {}).items():
        if sub.get("type") == "object":
            paths.append(f"{prefix}{key}")
            paths.extend(section_paths(sub, f"{prefix}{key}."))
    return paths


def get_path(point: dict, path: str) -> Any:
    """The value at a dotted key path."""
    node = point
    for key in path.split("."):
        node = node[key]
    return node


def set_path(point: dict, path: str, value: Any) -> None:
    """Set the value at a dotted key path, creating intermediate mappings."""
    *parents, leaf = path.split(".")
    node = point
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
