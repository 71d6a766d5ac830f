"""Configuration: the grid-point vocabulary, its validation and the expansion of studies."""

from sgdnoise.config.grid import GridPoint, coordinate_name, expand_study, point_id
from sgdnoise.config.point import (
    DataConfig,
    LossConfig,
    ModelConfig,
    OptimizerConfig,
    PointConfig,
    RecordConfig,
    ResponseConfig,
    RunConfig,
)
from sgdnoise.config.schema import (
    ConfigError,
    canonical_json,
    config_sha256,
    get_path,
    load_point,
    resolve_point,
)

__all__ = [
    "ConfigError",
    "DataConfig",
    "GridPoint",
    "LossConfig",
    "ModelConfig",
    "OptimizerConfig",
    "PointConfig",
    "RecordConfig",
    "ResponseConfig",
    "RunConfig",
    "canonical_json",
    "config_sha256",
    "coordinate_name",
    "expand_study",
    "get_path",
    "load_point",
    "point_id",
    "resolve_point",
]
