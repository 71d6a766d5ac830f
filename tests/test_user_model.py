"""model.kind torch: a user's module trained like the native models, and its bad inputs.

Exact references: the perceptron written as a user's nn.Module follows the native
engine's trajectory (same data, selection streams and initial weights) to rounding, for
every optimizer; GD same-init pairs end at distance exactly 0; a replica follows the same
trajectory alone or among others.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sgdnoise.analysis.replica_distance import replica_distance
from sgdnoise.config import ConfigError, resolve_point
from sgdnoise.dynamics.user_model import UserModelDynamics
from sgdnoise.stages.train import train_point
from sgdnoise.stages.train_user_model import train_user_model_point, user_model_setup

OPTIMIZERS = [
    {"kind": "gd"},
    {"kind": "sgd", "b": 0.3},
    {"kind": "persistent_sgd", "b": 0.3, "tau": 0.5},
    {"kind": "langevin", "temperature": 0.2},
    {"kind": "minibatch_sgd", "batch_size": 5, "lr": 0.1},
]


def user_point(models_file: str, function: str = "perceptron", **sections) -> dict:
    point = {
        "model": {"kind": "torch", "factory": f"{models_file}:{function}", "options": {"N": 20}},
        "loss": {"kind": "square_hinge", "kappa": 1.0},
        "data": {"kind": "random_patterns", "N": 20, "P": 60},
        "optimizer": {"kind": "sgd", "b": 0.3, "lr": 0.1},
        "run": {"replicas": 4, "max_time": 3.0, "record": {"count": 4}},
    }
    for name, section in sections.items():
        point[name] = {**point[name], **section}
    return point


@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=lambda o: o["kind"])
def test_the_perceptron_as_a_module_follows_the_native_trajectory(models_file, optimizer):
    """Same data, selections, noise and w(0): the final weights agree to 1e-10 (float64).

    Resolves any error in the gradient, its scale (1, 1/b, 1/B), the ridge, the Langevin
    amplitude or the selection streams (each changes w at the first step by O(lr)).
    """
    ridge = {"constraint": "ridge", "ridge": 0.5}
    optimizer = {"lr": 0.1, **optimizer}
    native = resolve_point(
        {
            "model": {"kind": "perceptron", **ridge},
            "loss": {"kind": "square_hinge", "kappa": 1.0},
            "data": {"kind": "random_patterns", "N": 20, "P": 60},
            "optimizer": optimizer,
            "run": {"replicas": 4, "max_time": 3.0, "record": {"count": 4}},
        }
    )
    run = train_point(native)
    mine = resolve_point(user_point(models_file, model=ridge, optimizer=optimizer))
    *_, dynamics = user_model_setup(mine, None)
    assert isinstance(dynamics, UserModelDynamics)
    initial = torch.as_tensor(run["initial_weights"].values)
    state = dynamics.initial_state({"w": initial}, list(range(4)))
    for _ in range(round(3.0 / optimizer["lr"])):
        state, _ = dynamics.step(state)
    expected = run["final_weights"].values
    assert np.abs(state.parameters["w"].numpy() - expected).max() < 1e-10 * np.abs(expected).max()


def test_gd_pairs_end_at_distance_zero_and_sgd_pairs_do_not(models_file):
    """Same-init pairs: GD is deterministic (d = 0 exactly), SGD's selections differ."""
    distances = {}
    for kind in ("gd", "sgd"):
        point = resolve_point(
            user_point(
                models_file,
                "mlp",
                model={"options": {"inputs": 20}},
                optimizer={"kind": kind, "lr": 0.02},
                run={"pairing": "same_init", "max_time": 2.0},
            )
        )
        run = train_user_model_point(point)
        distances[kind] = float(replica_distance(run)["replica_distance"])
    assert distances["gd"] == 0.0
    assert distances["sgd"] > 1e-6


def test_a_replica_is_the_same_alone_or_among_others(models_file):
    """Up to the rounding of batched products (1e-9 here); another replica's draws would
    move it by O(1)."""
    point = resolve_point(user_point(models_file, "mlp", model={"options": {"inputs": 20}}))
    together = train_user_model_point(point)
    alone = train_user_model_point(point.replace(run=point.run.replace(replicas=1)))
    np.testing.assert_allclose(
        alone["final_weights"].values[0], together["final_weights"].values[0], rtol=1e-7
    )


def test_cross_entropy_on_arrays_learns_and_records_errors(models_file, tmp_path):
    """A 3-class task from an .npz file: the training error falls from chance."""
    rng = np.random.default_rng(0)
    centres = 3.0 * rng.standard_normal((3, 20))
    labels = rng.integers(0, 3, 200)
    x = centres[labels] + rng.standard_normal((200, 20))
    path = tmp_path / "blobs.npz"
    np.savez(path, x_train=x[:150], y_train=labels[:150], x_test=x[150:], y_test=labels[150:])
    point = resolve_point(
        {
            "model": {"kind": "torch", "factory": f"{models_file}:mlp", "options": {"outputs": 3}},
            "loss": {"kind": "cross_entropy"},
            "data": {"kind": "arrays", "path": str(path), "P": 100, "P_test": 50},
            "optimizer": {"kind": "minibatch_sgd", "batch_size": 10, "lr": 0.5},
            "run": {"replicas": 2, "max_time": 30.0, "record": {"count": 5}},
        }
    )
    assert point.data.N == 20
    run = train_user_model_point(point)
    assert (run["train_error"].values[:, 0] > 0.3).all()
    assert (run["train_error"].values[:, -1] < 0.1).all()
    assert (run["test_error"].values[:, -1] < 0.2).all()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": {"factory": "no_such_module_here:f"}}, "model.factory: cannot import"),
        ({"model": {"factory": "{models}:missing"}}, "has no function missing"),
        ({"model": {"factory": "{models}:not_a_module", "options": {}}}, "not a torch nn.Module"),
        ({"model": {"factory": "{models}:frozen"}}, "no trainable parameters"),
        ({"model": {"factory": "{models}:broken", "options": {}}}, "raised RuntimeError"),
        ({"model": {"factory": None}}, "model.factory: model.kind torch needs"),
        ({"model": {"alpha": 2.0}}, "model.alpha"),
        ({"model": {"constraint": "sphere"}}, "model.constraint"),
        ({"data": {"N": 30}}, "cannot take inputs of shape (30,)"),
        ({"loss": {"kind": "cross_entropy", "kappa": None}}, "needs one output per class"),
        (
            {"model": {"factory": "{models}:mlp", "options": {"outputs": 3}}},
            "square_hinge needs one output per sample",
        ),
        ({"data": {"kind": "arrays", "path": "/nonexistent.npz"}}, "data.path: no file"),
        (
            {"loss": {"kind": "cross_entropy"}, "model": {"kind": "perceptron", "options": {}}},
            "loss.kind: cross_entropy is for model.kind torch",
        ),
        ({"model": {"kind": "perceptron"}}, "model.factory / model.options"),
    ],
)
def test_bad_user_input_is_refused_naming_the_key(models_file, change, message):
    raw = user_point(models_file)
    for section, values in change.items():
        values = {
            key: value.format(models=models_file) if isinstance(value, str) else value
            for key, value in values.items()
        }
        raw[section] = {**raw[section], **values}
    if raw["model"]["kind"] == "perceptron":
        raw["model"].pop("factory")
    with pytest.raises(ConfigError, match="config key") as caught:
        resolve_point(raw)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_arrays_of_the_wrong_shape_or_labels_are_refused(models_file, tmp_path):
    rng = np.random.default_rng(1)
    bad_labels = tmp_path / "labels.npz"
    np.savez(bad_labels, x_train=rng.standard_normal((10, 20)), y_train=np.arange(10) % 3)
    raw = user_point(models_file, data={"kind": "arrays", "path": str(bad_labels), "P": None})
    with pytest.raises(ConfigError, match="needs labels"):
        resolve_point(raw)
    mismatched = tmp_path / "mismatched.npz"
    np.savez(mismatched, x_train=rng.standard_normal((10, 20)), y_train=np.ones(9))
    raw["data"]["path"] = str(mismatched)
    with pytest.raises(ConfigError, match="config key data.path: .*same n"):
        resolve_point(raw)
    good = tmp_path / "good.npz"
    np.savez(good, x_train=rng.standard_normal((10, 20)), y_train=np.sign(rng.standard_normal(10)))
    raw["data"].update(path=str(good), P=11)
    with pytest.raises(ConfigError, match=r"data.P = 11: the source has 10"):
        resolve_point(raw)


def test_langevin_noise_has_its_amplitude(models_file):
    """One step from w = 0: the Langevin step minus the GD step is sqrt(2 T lr) xi; the
    standard deviation of its 1280 entries is sqrt(2 T lr) within 5 % (resolves a
    missing factor 2 or lr: 41 % and much more)."""
    base = user_point(models_file, optimizer={"kind": "gd", "lr": 0.01})
    hot = user_point(models_file, optimizer={"kind": "langevin", "temperature": 0.5, "lr": 0.01})
    steps = []
    for raw in (base, hot):
        point = resolve_point(raw)
        *_, dynamics = user_model_setup(point, None)
        w0 = {"w": torch.zeros(64, 20, dtype=torch.float64)}
        state = dynamics.initial_state(w0, list(range(64)))
        steps.append(dynamics.step(state)[0].parameters["w"])
    noise = (steps[1] - steps[0]).flatten()
    assert abs(float(noise.std()) / math.sqrt(2 * 0.5 * 0.01) - 1) < 0.05
