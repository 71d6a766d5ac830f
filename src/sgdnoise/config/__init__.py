"""Configuration: the grid-point vocabulary, its validation and the expansion of studies."""

from sgdnoise.config.grid import GridPoint, coordinate_name, expand_study, point_id
from sgdnoise.config.schema import (
    ConfigError,
    canonical_json,
    config_sha256,
    draw_owners,
    get_path,
    load_point,
    resolve_point,
)

__all__ = [
    "ConfigError",
    "GridPoint",
    "canonical_json",
    "config_sha256",
    "coordinate_name",
    "draw_owners",
    "expand_study",
    "get_path",
    "load_point",
    "point_id",
    "resolve_point",
]
