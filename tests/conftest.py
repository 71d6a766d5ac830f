"""Shared fixtures: small resolved grid points and a helper to train them."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import pytest
import torch

from sgdnoise.config import resolve_point

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(int(os.environ.get("SGDNOISE_TEST_THREADS", "2")))


def merge(base: dict, changes: dict) -> dict:
    """Deep-merge ``changes`` into a copy of ``base``."""
    result = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


@pytest.fixture
def small_point():
    """A factory of resolved perceptron points: small_point(optimizer={...}, run={...})."""

    def make(**sections) -> dict:
        base = {
            "data": {"kind": "random_patterns", "N": 60, "P_over_N": 2.0, "seed": 3},
            "optimizer": {"kind": "sgd", "b": 0.3, "lr": 0.05},
            "run": {"replicas": 3, "max_time": 5.0, "record": {"count": 8}, "seed": 11},
        }
        return resolve_point(merge(base, sections))

    return make


@pytest.fixture
def sgdnoise_command() -> list[str]:
    """The sgdnoise console command of the running interpreter's environment."""
    return [sys.executable, "-m", "sgdnoise.cli"]


@pytest.fixture(scope="session")
def models_file(tmp_path_factory) -> str:
    """A user's own factories (tests/user_modules.py) as a .py file outside the package."""
    from tests.user_modules import MODULES

    path = tmp_path_factory.mktemp("user_modules") / "models.py"
    path.write_text(MODULES)
    return str(path)
