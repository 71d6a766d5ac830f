"""data.kind arrays: a user's own samples, from a file or a function.

The source holds ``x_train`` (n, *input_shape) and ``y_train`` (n,), and
optionally ``x_test``, ``y_test``; as a ``.npz`` file (numpy.savez), a ``.pt`` file
(torch.save of a mapping of tensors) at data.path, or the mapping a function returns
(data.factory, "package.module:function", called without arguments). Labels are what
the loss needs: +-1 for the margin losses, class indices 0..C-1 for cross_entropy,
class indices or real targets for mse.

A draw takes data.P training samples without replacement from x_train with the draw's
generator (all of them, in their order, when P is the whole set) and the first
data.P_test test samples: the test set is the same for every draw.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from sgdnoise.config.point import DataConfig
from sgdnoise.data.dataset import Dataset

REQUIRED = ("x_train", "y_train")
OPTIONAL = ("x_test", "y_test")


def _as_numpy(value: object, where: str, name: str) -> np.ndarray:
    """A numpy copy of an array or tensor (float inputs as they are, labels as float64)."""
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{where}: {name} holds {array.dtype} values, not numbers")
    return array


@functools.cache
def _read(path: str, modified: float) -> dict[str, np.ndarray]:
    """The arrays of a .npz or .pt file (cached per path and modification time)."""
    suffix = Path(path).suffix
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            mapping = {name: archive[name] for name in archive.files}
    elif suffix == ".pt":
        import torch

        mapping = torch.load(path, map_location="cpu", weights_only=True)
    else:
        raise ValueError(
            f"{path}: data.path must be a .npz or .pt file, not {suffix or 'no suffix'}"
        )
    return _checked(mapping, path)


def _checked(mapping: object, where: str) -> dict[str, np.ndarray]:
    """The mapping's arrays as numpy, with the required names and matching lengths."""
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{where}: expected a mapping of arrays, got {type(mapping).__name__}")
    missing = [name for name in REQUIRED if name not in mapping]
    if missing:
        raise ValueError(
            f"{where}: missing {', '.join(missing)} (has {', '.join(map(str, mapping))})"
        )
    if ("x_test" in mapping) != ("y_test" in mapping):
        raise ValueError(f"{where}: give both x_test and y_test, or neither")
    arrays = {
        name: _as_numpy(mapping[name], where, name)
        for name in REQUIRED + OPTIONAL
        if name in mapping
    }
    for split in ("train", "test"):
        if f"x_{split}" not in arrays:
            continue
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
            raise ValueError(
                f"{where}: x_{split} must be (n, *input_shape) and y_{split} (n,) with the same "
                f"n; got {x.shape} and {y.shape}"
            )
    if "x_test" in arrays and arrays["x_test"].shape[1:] != arrays["x_train"].shape[1:]:
        raise ValueError(
            f"{where}: x_test has input shape {arrays['x_test'].shape[1:]}, x_train "
            f"{arrays['x_train'].shape[1:]}"
        )
    return arrays


@functools.cache
def _from_factory(spec: str) -> dict[str, np.ndarray]:
    from sgdnoise.models.user import load_callable

    return _checked(load_callable(spec, "data.factory")(), f"data.factory {spec}")


def load_arrays(data: DataConfig) -> dict[str, np.ndarray]:
    """Every array of the source of a data.kind arrays section (cached per process)."""
    if data.factory is not None:
        return _from_factory(data.factory)
    path = os.path.expanduser(data.path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"data.path: no file {path}")
    return _read(path, os.path.getmtime(path))


def resolve_array_sizes(data: dict) -> None:
    """Fill data.P (null: every training sample) and check P, P_test against the source.

    Called on the raw ``data:`` mapping while a point is resolved; raises ConfigError
    naming the key. Without test arrays P_test resolves to 0.
    """
    from sgdnoise.config.schema import ConfigError

    section = DataConfig.from_mapping(data, "data")
    try:
        arrays = load_arrays(section)
    except ConfigError:  # a factory that cannot be loaded: already names its key
        raise
    except (OSError, ValueError, ImportError) as error:
        key = "data.factory" if section.factory is not None else "data.path"
        raise ConfigError(f"config key {key}: {error}") from None
    available = len(arrays["x_train"])
    if data["P"] is None:
        data["P"] = available
    if data["P"] > available:
        raise ConfigError(
            f"config key data.P = {data['P']}: the source has {available} training samples"
        )
    tests = len(arrays["x_test"]) if "x_test" in arrays else 0
    if tests == 0:
        data["P_test"] = 0
    elif data["P_test"] > tests:
        raise ConfigError(
            f"config key data.P_test = {data['P_test']}: the source has {tests} test samples; "
            f"allowed: 0 .. {tests}"
        )
    data["N"] = int(np.prod(arrays["x_train"].shape[1:]))


def arrays_dataset(data: DataConfig, rng: np.random.Generator) -> Dataset:
    """One draw of a data.kind arrays section (see the module docstring)."""
    arrays = load_arrays(data)
    x, y = arrays["x_train"], arrays["y_train"]
    if data.P == len(x):
        train = np.arange(len(x))
    else:
        train = np.sort(rng.choice(len(x), size=data.P, replace=False))
    if data.P_test:
        x_test, y_test = arrays["x_test"][: data.P_test], arrays["y_test"][: data.P_test]
    else:
        x_test = np.zeros((0, *x.shape[1:]), dtype=x.dtype)
        y_test = np.zeros(0, dtype=np.float64)
    source = data.path if data.factory is None else f"factory {data.factory}"
    return Dataset(
        x[train],
        y[train].astype(np.float64),
        x_test,
        y_test.astype(np.float64),
        None,
        {"task": "arrays", "source": source, "pool_size": len(x)},
    )
