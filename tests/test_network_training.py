"""Alpha-trick networks trained by minibatch SGD (docs/physics.md B1-B4), against exact references.

Small learnable image-shaped data (y = sign of a fixed linear teacher on 6 x 6 Gaussian
pixels) keep every run to seconds; float64 where trajectories are compared.
"""

from __future__ import annotations

import subprocess
from dataclasses import replace

import numpy as np
import pytest
import torch
import yaml
from torch.func import functional_call, jvp

from sgdnoise.config import PointConfig
from sgdnoise.data import Dataset
from sgdnoise.dynamics.networks import NetworkProblem, make_network_dynamics
from sgdnoise.dynamics.selection import MinibatchSelection
from sgdnoise.io.artifact import read_artifact
from sgdnoise.models.losses import MarginLoss
from sgdnoise.models.networks import make_network
from sgdnoise.stages.train_network import (
    EVALUATION_BATCH,
    initial_network_parameters,
    samples_of,
    train_network_point,
)
from tests.conftest import merge, network_point, teacher_images

pytestmark = pytest.mark.usefixtures("one_thread")

P, P_TEST, SIDE = 64, 200, 6


def images(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian 1 x 6 x 6 images labelled by the sign of a fixed linear teacher."""
    return teacher_images(count, seed, SIDE)


def datasets(replicas: int) -> list[Dataset]:
    """One training draw per replica, one fixed test set."""
    x_test, y_test = images(P_TEST, 1000)
    return [Dataset(*images(P, replica), x_test, y_test) for replica in range(replicas)]


def point(**changes) -> PointConfig:
    return network_point(**merge({"data": {"P": P, "P_test": P_TEST}}, changes))


def dynamics_of(config: dict, data: list[Dataset]):
    """The network, the runner's dynamics and initial parameters of a point (CPU)."""
    dtype = torch.float64 if config.run.dtype == "float64" else torch.float32
    device = torch.device("cpu")
    network = make_network(config.model, data[0].input_shape).to(dtype=dtype)
    loss = MarginLoss(config.loss.kind, config.loss.kappa)
    problem = NetworkProblem(samples_of(data, False, device, dtype), loss)
    chunk_size = max(1, EVALUATION_BATCH // config.run.replicas)
    dynamics = make_network_dynamics(
        network, problem, config.optimizer, config.run.seed, device, chunk_size
    )
    initial = initial_network_parameters(network, config.run, device, dtype)
    return network, problem, dynamics, initial, chunk_size


def trajectory(config: dict, replica_ids: list[int], steps: int) -> dict[str, torch.Tensor]:
    """Parameters of the given replicas after ``steps`` steps, trained together."""
    draws = config.run.replicas if config.data.per_replica else 1
    _, _, dynamics, initial, _ = dynamics_of(config, datasets(draws))
    state = dynamics.init({k: v[replica_ids] for k, v in initial.items()}, replica_ids)
    for _ in range(steps):
        state, _ = dynamics.step(state)
    return state.parameters


@pytest.mark.parametrize(
    ("model", "per_replica"),
    [({"kind": "fcn"}, True), ({"kind": "fcn"}, False),
     ({"kind": "cnn", "width": 1, "activation": "relu"}, True)],
    ids=["fcn", "fcn_shared_data", "cnn"],
)  # fmt: skip
def test_batched_replicas_equal_one_at_a_time(model, per_replica):
    config = point(
        model=model,
        data={"per_replica": per_replica},
        optimizer={"temperature": 2.0**-4},
        run={"replicas": 4},
    )
    together = trajectory(config, [0, 1, 2, 3], steps=40)
    for replica in (0, 3):
        alone = trajectory(config, [replica], steps=40)
        for name, value in together.items():
            torch.testing.assert_close(alone[name][0], value[replica], rtol=1e-10, atol=1e-12)
    reordered = trajectory(config, [3, 1], steps=40)
    for name, value in together.items():
        torch.testing.assert_close(reordered[name], value[[3, 1]], rtol=1e-10, atol=1e-12)
    moved = sum(
        (together[k] - trajectory(config, [0, 1, 2, 3], 0)[k]).abs().sum() for k in together
    )
    assert moved > 0


@pytest.mark.parametrize(
    ("activation", "loss", "per_replica"),
    [("gelu", "hinge", True), ("relu", "hinge", False), ("gelu", "square_hinge", True)],
)
def test_hand_written_fcn_step_follows_the_generic_one(activation, loss, per_replica):
    """FCNStep (hand-written forward, backward and fused update) against vmap + autograd,
    float64, from the same w0 and batches: after 300 steps the parameters agree to 1e-12
    of how far they moved, and the step reports agree. The run passes through steps
    where only some batch samples feel a force (the backward on the compacted rows,
    padded with g = 0), where at most half of the replicas do (the backward on copies
    of their parameters) and where none does (the forward-only step)."""
    config = point(
        model={"depth": 3, "activation": activation},
        loss={"kind": loss},
        data={"per_replica": per_replica},
        optimizer={"temperature": 2.0**-4},
        run={"replicas": 4},
    )
    network, problem, hand_written, initial, chunk = dynamics_of(config, datasets(4))
    generic = make_network_dynamics(
        network, problem, config.optimizer, config.run.seed, torch.device("cpu"), chunk,
        engine="generic",
    )  # fmt: skip
    fast, slow = hand_written.init(initial, [0, 1, 2, 3]), generic.init(initial, [0, 1, 2, 3])
    moving_replicas = []
    for _ in range(300):
        fast, fast_info = hand_written.step(fast)
        slow, slow_info = generic.step(slow)
        torch.testing.assert_close(
            fast_info.batch_loss, slow_info.batch_loss, rtol=1e-9, atol=1e-15
        )
        differ = fast_info.moved != slow_info.moved  # a sample within rounding of the margin
        assert (fast_info.batch_loss[differ] + slow_info.batch_loss[differ] < 1e-20).all()
        moving_replicas.append(int(slow_info.moved.sum()))
    assert {0, 1, 2, 3} <= set(moving_replicas), moving_replicas
    for name, value in slow.parameters.items():
        moved = (value - initial[name]).norm()
        assert moved > 0
        assert (fast.parameters[name] - value).norm() <= 1e-12 * moved, name


def test_draw_is_the_selection_process_draw():
    """The dynamics' batches, made a block of steps at a time, are those of
    MinibatchSelection.draw step by step, across a block boundary and a subset."""
    config = point(run={"replicas": 3})
    _, problem, dynamics, initial, _ = dynamics_of(config, datasets(3))
    reference = MinibatchSelection(8, P, config.run.seed, torch.device("cpu"))
    state = dynamics.init(initial, [0, 1, 2])
    for step in (0, 1, 63, 64, 65, 130):
        for ids in ([0, 1, 2], [2, 0]):
            substate = state.subset(torch.isin(state.replica_ids, torch.tensor(ids)))
            substate = replace(substate, step=step)
            expected, _ = reference.draw(step, substate.replica_ids.tolist(), None)
            assert torch.equal(dynamics.draw(substate).indices, expected.indices)


def test_runner_replica_is_the_same_among_more_replicas():
    few = train_network_point(point(run={"replicas": 2}), datasets(2))
    many = train_network_point(point(run={"replicas": 5}), datasets(5))
    assert set(few["replica_status"].values) == {"completed"}
    np.testing.assert_array_equal(few["steps_taken"].values, many["steps_taken"].values[:2])
    np.testing.assert_allclose(
        few["test_error"].values, many["test_error"].values[:2], rtol=0, atol=1e-12
    )
    assert many["steps_taken"].values[2] != many["steps_taken"].values[3]


def test_predictor_is_exactly_zero_at_initialisation():
    """F = alpha (f - f0) = 0 at w0: every sample is an error (F = 0 counts) and
    the hinge loss per sample is exactly 1/alpha, in float32 as in float64."""
    for dtype in ("float32", "float64"):
        config = point(model={"alpha": 8.0}, run={"dtype": dtype})
        first = train_network_point(config, datasets(3)).isel(record=0)
        assert (first["test_error"].values == 1.0).all()
        assert (first["train_error"].values == 1.0).all()
        np.testing.assert_array_equal(first["train_loss"].values, np.float64(1 / 8.0))
        assert (first["weight_change"].values == 0.0).all()


@pytest.mark.parametrize("check_every", [1, 13])
def test_zero_loss_stop_is_exact(check_every):
    """t* is the first step after which the FULL training loss is zero, measured by a
    reference loop that evaluates it after every step, whatever the check interval."""
    config = point(run={"check_every": check_every})
    data = datasets(3)
    run = train_network_point(config, data)
    network, problem, dynamics, initial, chunk = dynamics_of(config, data)
    state = dynamics.init(initial, [0, 1, 2])
    first_zero = np.full(3, -1)
    for step in range(int(run["steps_taken"].max()) + 1):
        outputs = problem.train.outputs(network, state.parameters, state.replica_ids, chunk)
        stability = problem.train.y * (outputs - state.initial_outputs)
        at_zero = (problem.loss.value(stability).mean(-1) == 0).numpy()
        first_zero[(first_zero < 0) & at_zero] = step
        state, _ = dynamics.step(state)
    assert (run["replica_status"].values == "completed").all()
    np.testing.assert_array_equal(run["steps_to_zero_loss"].values, first_zero)
    detected = run["steps_taken"].values  # the check that saw it: within two intervals
    assert ((detected >= first_zero) & (detected <= first_zero + 2 * check_every + 1)).all()
    lr = config.optimizer.lr
    np.testing.assert_allclose(run["t_star"].values, lr * first_zero, rtol=1e-12)
    assert (run["train_loss"].isel(record=-1).values == 0).all()


def linearisation_error(config: dict) -> tuple[np.ndarray, np.ndarray]:
    """Relative weight change and |f - f0 - J0 (w - w0)| / |f - f0| on the training set,
    per replica, after training to zero loss with the dynamics directly."""
    data = datasets(config.run.replicas)
    network, problem, dynamics, initial, _ = dynamics_of(config, data)
    state = dynamics.init(initial, list(range(config.run.replicas)))
    for _ in range(1500):  # both regimes reach zero loss in < 800 steps
        state, _ = dynamics.step(state)
    relative_change, error = [], []
    for r in range(config.run.replicas):
        w0 = {k: v[r] for k, v in initial.items()}
        w = {k: v[r] for k, v in state.parameters.items()}
        change = {k: w[k] - w0[k] for k in w0}
        x = problem.train.x[r]

        def f(parameters, x=x):
            return functional_call(network, parameters, (x,))

        f0, linear = jvp(f, (w0,), (change,))
        moved = f(w) - f0
        relative_change.append(
            np.sqrt(sum(c.pow(2).sum().item() for c in change.values()))
            / np.sqrt(sum(v.pow(2).sum().item() for v in w0.values()))
        )
        error.append(((moved - linear).norm() / moved.norm()).item())
    return np.array(relative_change), np.array(error)


def test_large_alpha_is_lazy_small_alpha_learns_features():
    """alpha = 2^10: the trained network is its linearisation around w0 (to 5%) and the
    weights move by < 1%; alpha = 2^-5: the weights move by O(1) and the linearisation
    fails (the margin 1/alpha = 32 is far beyond what the initial kernel reaches)."""
    lazy_change, lazy_error = linearisation_error(point(model={"alpha": 2.0**10}))
    rich_change, rich_error = linearisation_error(point(model={"alpha": 2.0**-5}))
    assert lazy_change.max() < 0.01 and lazy_error.max() < 0.05, (lazy_change, lazy_error)
    assert rich_change.min() > 0.5 and rich_error.min() > 0.5, (rich_change, rich_error)
    lazy = train_network_point(point(model={"alpha": 2.0**10}), datasets(3))
    rich = train_network_point(point(model={"alpha": 2.0**-5}), datasets(3))
    assert lazy["kernel_change"].max() < 0.05 < 1.0 < rich["kernel_change"].min()
    np.testing.assert_allclose(lazy["weight_change"].isel(record=-1), lazy_change, rtol=1e-9)


def test_divergence_is_recorded_not_raised():
    """At T = 64 (lr = 8192) the float32 weights overflow within a few steps."""
    config = point(optimizer={"temperature": 64.0}, run={"dtype": "float32"})
    run = train_network_point(config, datasets(3))
    assert run.attrs["status"] == "diverged"
    assert set(run["replica_status"].values) == {"diverged"}
    assert np.isnan(run["test_error"].isel(record=-1).values).all()
    assert np.isnan(run["t_star"].values).all()


def test_command_line_trains_a_real_mnist_point(tmp_path, sgdnoise_command):
    """`sgdnoise point` dispatches fcn points to the network runner (real MNIST digits)."""
    config = point(
        data={"P": 128, "P_test": 256},
        optimizer={"batch_size": 16, "temperature": 2.0**-6},
        model={"alpha": 64.0},
        run={"replicas": 2, "dtype": "float32", "max_steps": 200},
    )
    path = tmp_path / "point.yaml"
    path.write_text(yaml.safe_dump(config.to_mapping()))
    out = tmp_path / "run.nc"
    subprocess.run(
        [*sgdnoise_command, "--threads", "1", "point", str(path), "--out", str(out), "--quiet"],
        check=True,
    )
    run = read_artifact(out, "run")
    assert run.sizes["replica"] == 2 and run["test_error"].attrs["units"] == "1"
    assert (run["test_error"].isel(record=-1) < 0.35).all()  # parity of MNIST digits is learnt
    assert run["kernel_change"].attrs["long_name"].startswith("relative tangent-kernel")
