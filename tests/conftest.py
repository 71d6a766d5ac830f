"""Shared fixtures: small resolved grid points and a helper to train them."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sgdnoise.config import resolve_point

REPO = Path(__file__).resolve().parents[1]
torch.set_num_threads(int(os.environ.get("SGDNOISE_TEST_THREADS", "2")))


@pytest.fixture
def one_thread():
    """torch on one thread for a test, restored after: for tiny tensors, where per-operation
    overhead dominates and a second thread only adds synchronisation (several times
    slower on a shared 2-core machine). Use with pytest.mark.usefixtures("one_thread")."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def teacher_images(count: int, seed: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian 1 x side x side images (float32) labelled +-1 by the sign of a fixed
    linear teacher (the same teacher for every seed)."""
    teacher = np.random.default_rng(99).standard_normal(side * side)
    x = np.random.default_rng(seed).standard_normal((count, 1, side, side)).astype(np.float32)
    return x, np.where(x.reshape(count, -1) @ teacher >= 0, 1.0, -1.0)


def merge(base: dict, changes: dict) -> dict:
    """Deep-merge ``changes`` into a copy of ``base``."""
    result = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result


def network_point(**changes):
    """A resolved alpha-trick FCN point for the network tests: depth 2, width 16, gelu,
    hinge, P = 64 teacher images per replica (data.per_replica), 200 test images, B = 8,
    3 replicas to zero loss, float64; ``changes`` deep-merged in."""
    base = {
        "model": {"kind": "fcn", "depth": 2, "width": 16, "activation": "gelu", "alpha": 1.0},
        "loss": {"kind": "hinge", "kappa": None},
        "data": {"kind": "mnist_parity", "P": 64, "P_test": 200, "per_replica": True},
        "optimizer": {"kind": "minibatch_sgd", "batch_size": 8, "temperature": 2.0**-8},
        "run": {
            "replicas": 3,
            "max_time": 1e5,
            "max_steps": 20000,
            "stop": "zero_loss",
            "tolerance": 0.0,
            "check_every": 8,
            "dtype": "float64",
            "seed": 5,
            "record": {"count": 6},
        },
    }
    return resolve_point(merge(base, changes))


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
