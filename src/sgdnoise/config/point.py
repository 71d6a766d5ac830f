"""The resolved grid point as typed, immutable values: one dataclass per section.

`sgdnoise.config.resolve_point` validates a mapping against `point.schema.yaml`, fills
the defaults and derives the dependent values; what it returns is a `PointConfig`, the
only form of a grid point that stages, engines and analyses receive. String keys into
raw mappings remain only where YAML and JSON are read (`config.schema`, `config.grid`,
`io.artifact.point_config_of`).

The fields are the schema's keys, one for one (tested); their meaning, units and
defaults are the schema's descriptions (`sgdnoise validate --help` and docs/design.md).
`to_mapping()` gives back the canonical mapping: the one that is hashed and stored in
every artifact, so a point read back from an artifact is equal to the one that made it.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class _Section:
    """Construction from and conversion to the canonical mapping, for every section."""

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any], where: str = "") -> Any:
        """The section built from its (resolved) mapping; the keys must be exactly the fields."""
        from sgdnoise.config.schema import ConfigError

        fields = {field.name for field in dataclasses.fields(cls)}
        if not isinstance(mapping, Mapping) or set(mapping) != fields:
            given = sorted(mapping) if isinstance(mapping, Mapping) else type(mapping).__name__
            raise ConfigError(
                f"config section {where or '<point>'}: expected keys {sorted(fields)}, got "
                f"{given} (not a resolved grid point of this version of sgdnoise)"
            )
        hints = typing.get_type_hints(cls)
        values = {}
        for name, value in mapping.items():
            kind = hints[name]
            if isinstance(kind, type) and issubclass(kind, _Section):
                value = kind.from_mapping(value, f"{where}.{name}" if where else name)
            elif isinstance(value, list):
                value = tuple(value)
            values[name] = value
        return cls(**values)

    def to_mapping(self) -> dict[str, Any]:
        """The canonical mapping (nested dicts, tuples as lists), as hashed and stored."""
        result = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, _Section):
                value = value.to_mapping()
            elif isinstance(value, tuple):
                value = list(value)
            result[field.name] = value
        return result

    def replace(self, **changes: Any) -> Any:
        """A copy with some fields changed (no validation: for derived internal runs)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ModelConfig(_Section):
    """The trained model: the perceptron, a network of the alpha-trick, or a user's module."""

    kind: str
    factory: str | None
    options: dict[str, Any]
    constraint: str
    sphere_update: str
    ridge: float
    depth: int
    width: int
    activation: str
    alpha: float | None

    @property
    def output_width(self) -> int:
        """The width h in the temperature T = lr / (h B): the width of the alpha-trick
        networks, 1 for the perceptron and a user's module (T = lr / B)."""
        return self.width if self.kind in ("fcn", "cnn") else 1

    @property
    def ridge_strength(self) -> float:
        """lambda of the ridge term lambda |w|^2 / 2: the ridge, with constraint ridge only."""
        return self.ridge if self.constraint == "ridge" else 0.0


@dataclass(frozen=True)
class LossConfig(_Section):
    """The loss per sample as a function of the stability h; kappa resolved (never null)."""

    kind: str
    kappa: float


@dataclass(frozen=True)
class DataConfig(_Section):
    """The data set; P resolved for synthetic data (from P_over_N when given)."""

    kind: str
    N: int
    P: int | None
    P_over_N: float | None
    P_test: int
    delta: float
    chi: float
    per_replica: bool
    path: str | None
    factory: str | None
    seed: int


@dataclass(frozen=True)
class OptimizerConfig(_Section):
    """The training dynamics; lr always resolved, temperature resolved for minibatch_sgd."""

    kind: str
    lr: float
    b: float
    tau: float | None
    batch_normalization: str
    temperature: float | None
    batch_size: int

    @property
    def gradient_scale(self) -> float:
        """Factor on the summed gradient of sgd / persistent_sgd: 1 (sum) or 1/b (mean)."""
        return 1.0 / self.b if self.batch_normalization == "mean" else 1.0


@dataclass(frozen=True)
class RecordConfig(_Section):
    """The recording grid of a run."""

    times: str
    count: int
    weights: bool


@dataclass(frozen=True)
class ResponseConfig(_Section):
    """The exact-response measurement (perceptron): waiting times t_w and time lags."""

    waiting_times: tuple[float, ...]
    probes: int
    finite_field: float | None
    max_lag: float | None
    lag_count: int


@dataclass(frozen=True)
class RunConfig(_Section):
    """How a point is run, stopped and recorded; tolerance and check_every resolved."""

    replicas: int
    pairing: str
    init: str
    gd_init_time: float
    max_time: float
    max_steps: int | None
    stop: str
    tolerance: float
    check_every: int
    engine: str
    error_tolerance: float
    record: RecordConfig
    response: ResponseConfig
    dtype: str
    seed: int
    device: str
    checkpoint_seconds: float

    def step_budget(self, lr: float) -> int:
        """The step budget round(max_time / lr), capped by max_steps."""
        steps = round(self.max_time / lr)
        return steps if self.max_steps is None else min(steps, self.max_steps)

    @property
    def events(self) -> bool:
        """Whether the perceptron runs event-driven (run.engine resolved: events or steps)."""
        return self.engine == "events"

    @property
    def replicas_per_unit(self) -> int:
        """Replicas per statistically independent unit: 2 for same_init pairs, else 1."""
        return 2 if self.pairing == "same_init" else 1

    def draw_owners(self) -> list[int]:
        """The random draw each replica owns: for its w(0), and its data when per replica.

        Replica r owns draw r; with pairing same_init, replicas 2k and 2k + 1 share draw
        k, so the two replicas of a pair differ only in their selection noise
        (docs/physics.md A6).
        """
        if self.pairing == "same_init":
            return [replica // 2 for replica in range(self.replicas)]
        return list(range(self.replicas))


@dataclass(frozen=True)
class PointConfig(_Section):
    """One resolved grid point: model, loss, data, optimizer and run."""

    model: ModelConfig
    loss: LossConfig
    data: DataConfig
    optimizer: OptimizerConfig
    run: RunConfig
