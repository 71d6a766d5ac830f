"""model.kind torch: a user's own nn.Module, built by a factory, trained as replicas.

``model.factory: "package.module:function"`` (or "path/to/file.py:function") names a
function returning an ``nn.Module``; it is called with ``model.options`` as keywords.
The module is put in
eval mode: the only noise of training is the optimizer's (dropout off, batch-norm
statistics fixed), and its trainable parameters (``requires_grad``) are what SGD moves;
buffers are shared by the replicas and never change.

Replica r's initial parameters are those of a module the factory builds with torch's
random generator seeded by (run.seed, r) (the pair's seed for same_init pairs), so a
replica starts from the module's own initialisation, the same alone or among others.

Every check a point needs before any job runs (``check_user_point``) raises ConfigError
naming the key: a factory that cannot be imported or called, returns no module or one
without trainable parameters, inputs of the wrong shape, an output that does not fit the
loss or the labels.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from sgdnoise.config.point import DataConfig, ModelConfig, PointConfig, RunConfig
from sgdnoise.config.schema import ConfigError
from sgdnoise.dynamics.random import derive_seed

IMAGE_INPUT_SHAPES = {
    "mnist_parity": (1, 28, 28),
    "fashion_mnist_parity": (1, 28, 28),
    "cifar_animals": (3, 32, 32),
}


def load_callable(spec: str, key: str) -> Callable:
    """The function "package.module:function" or "path/to/file.py:function" names.

    A module is looked up on the Python path, then in the working directory (where a
    study's own code usually lives); a file path is read relative to the working
    directory. Raises ConfigError naming ``key``.
    """
    module_name, _, function_name = spec.rpartition(":")
    if not module_name or not function_name:
        raise ConfigError(
            f'config key {key}: "{spec}" is not of the form "package.module:function" or '
            '"path/to/file.py:function"'
        )
    try:
        module = _import(module_name)
    except Exception as error:  # noqa: BLE001 - any failure of the user's import is reported
        raise ConfigError(
            f"config key {key}: cannot import {module_name} ({type(error).__name__}: {error})"
        ) from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ConfigError(f"config key {key}: {module_name} has no function {function_name}")
    return function


def _import(module_name: str) -> ModuleType:
    """A module by dotted name, or a .py file by path (loaded once per resolved path)."""
    if not module_name.endswith(".py"):
        if os.getcwd() not in sys.path:
            sys.path.append(os.getcwd())
        return importlib.import_module(module_name)
    path = Path(module_name).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"no file {path}")
    name = f"sgdnoise_user_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def build_module(model: ModelConfig, seed: int | None = None) -> nn.Module:
    """A fresh module from the factory, in eval mode (torch's generator seeded by ``seed``)."""
    factory = load_callable(model.factory, "model.factory")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        try:
            module = factory(**model.options)
        except Exception as error:  # noqa: BLE001 - the user's code, reported with the key
            raise ConfigError(
                f"config key model.factory: {model.factory}(**model.options) raised "
                f"{type(error).__name__}: {error}"
            ) from None
    if not isinstance(module, nn.Module):
        raise ConfigError(
            f"config key model.factory: {model.factory} returned {type(module).__name__}, "
            "not a torch nn.Module"
        )
    if not any(parameter.requires_grad for parameter in module.parameters()):
        raise ConfigError(f"config key model.factory: {model.factory} has no trainable parameters")
    return module.eval()


def trainable(module: nn.Module) -> dict[str, Tensor]:
    """The module's trainable parameters by name."""
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def module_function(module: nn.Module) -> Callable[[Mapping[str, Tensor], Tensor], Tensor]:
    """f(parameters, x) of one replica: outputs (n,) or (n, C), a trailing axis 1 dropped."""

    def f(parameters: Mapping[str, Tensor], x: Tensor) -> Tensor:
        outputs = functional_call(module, dict(parameters), (x,))
        return outputs.squeeze(-1) if outputs.dim() == 2 and outputs.shape[-1] == 1 else outputs

    return f


def initial_user_parameters(
    model: ModelConfig, run: RunConfig, device: torch.device, dtype: torch.dtype
) -> dict[str, Tensor]:
    """w0 of every replica, stacked (R, *shape): the factory's initialisation, seeded per draw."""
    draws = {
        owner: trainable(build_module(model, derive_seed(run.seed, "torch_init", owner)))
        for owner in sorted(set(run.draw_owners()))
    }
    return {
        name: torch.stack([draws[owner][name].detach() for owner in run.draw_owners()]).to(
            device=device, dtype=dtype
        )
        for name in draws[run.draw_owners()[0]]
    }


def _input_sample(data: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """Two training inputs and the training labels a data section will hold."""
    if data.kind == "arrays":
        from sgdnoise.data.arrays import load_arrays

        arrays = load_arrays(data)
        return arrays["x_train"][:2], arrays["y_train"]
    shape = IMAGE_INPUT_SHAPES.get(data.kind, (data.N,))
    return np.zeros((2, *shape), dtype=np.float32), np.array([-1.0, 1.0])


@functools.cache
def _check(model_json: str, loss: str, data_json: str, dtype_name: str) -> None:
    model = ModelConfig.from_mapping(json.loads(model_json), "model")
    module = build_module(model, seed=0)
    inputs, labels = _input_sample(DataConfig.from_mapping(json.loads(data_json), "data"))
    dtype = torch.float64 if dtype_name == "float64" else torch.float32
    x = torch.as_tensor(np.asarray(inputs), dtype=dtype)
    try:
        with torch.no_grad():
            outputs = module_function(module.to(dtype))(trainable(module), x)
    except Exception as error:  # noqa: BLE001 - the user's forward, reported with the keys
        raise ConfigError(
            f"config key data.kind / model.factory: the module cannot take inputs of shape "
            f"{tuple(x.shape[1:])} ({type(error).__name__}: {error})"
        ) from None
    classes = outputs.shape[-1] if outputs.dim() == 2 else 1
    integer_labels = bool(np.all(labels == np.round(labels)))
    if loss in ("hinge", "square_hinge"):
        if outputs.dim() != 1:
            raise ConfigError(
                f"config key loss.kind: {loss} needs one output per sample; the module gives "
                f"{classes} (allowed with {classes} outputs: cross_entropy, mse)"
            )
        if not np.all(np.abs(labels) == 1):
            raise ConfigError(
                f"config key loss.kind: {loss} needs labels +-1 (y_train holds others)"
            )
    elif loss == "cross_entropy":
        if classes < 2:
            raise ConfigError(
                "config key loss.kind: cross_entropy needs one output per class (at least 2); "
                "the module gives 1 (allowed with one output: hinge, square_hinge, mse)"
            )
        if not integer_labels or labels.min() < 0 or labels.max() >= classes:
            raise ConfigError(
                f"config key loss.kind: cross_entropy needs class labels 0..{classes - 1}; "
                f"y_train holds values in [{labels.min()}, {labels.max()}]"
            )
    elif classes > 1 and (not integer_labels or labels.min() < 0 or labels.max() >= classes):
        raise ConfigError(
            f"config key loss.kind: mse with {classes} outputs needs class labels "
            f"0..{classes - 1} (one-hot targets); y_train holds others"
        )


def check_user_point(point: PointConfig) -> None:
    """Raise ConfigError (naming the key) unless the factory, data and loss fit together.

    Builds the module once per factory, options, data and loss (cached per process) and
    runs it on two training inputs.
    """
    mapping = point.to_mapping()
    _check(
        json.dumps(mapping["model"], sort_keys=True),
        point.loss.kind,
        json.dumps(mapping["data"], sort_keys=True),
        point.run.dtype,
    )
