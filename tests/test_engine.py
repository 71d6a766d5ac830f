"""The replica engine: batched == one at a time, counter-based randomness, exact identities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sgdnoise.data import make_dataset
from sgdnoise.dynamics.perceptron import make_perceptron_dynamics
from sgdnoise.stages.generate_data import build_datasets, data_spec, data_spec_id
from sgdnoise.stages.train import build_problems, initial_weights, train_point


def _trajectory(point: dict, replica_ids: list[int], steps: int) -> torch.Tensor:
    """Weights after ``steps`` steps of the given replicas, run together."""
    problem, _, _ = build_problems(point, [make_dataset(point.data)], "cpu", torch.float64)
    start = initial_weights(point, problem.N, "cpu", torch.float64)[replica_ids]
    dynamics = make_perceptron_dynamics(problem, point.optimizer, point.run.seed, "cpu")
    state = dynamics.init(start, replica_ids)
    for _ in range(steps):
        state, _ = dynamics.step(state)
    return state.weights


@pytest.mark.parametrize(
    "optimizer",
    [
        {"kind": "sgd", "b": 0.3},
        {"kind": "persistent_sgd", "b": 0.3, "tau": 1.0},
        {"kind": "langevin", "temperature": 0.3},
        {"kind": "minibatch_sgd", "batch_size": 5, "lr": 0.05},
    ],
    ids=lambda o: o["kind"],
)
def test_batched_replicas_equal_one_at_a_time(small_point, optimizer):
    point = small_point(optimizer=optimizer, run={"replicas": 5})
    together = _trajectory(point, [0, 1, 2, 3, 4], steps=150)
    for replica in [0, 3, 4]:
        alone = _trajectory(point, [replica], steps=150)
        torch.testing.assert_close(alone[0], together[replica], rtol=1e-12, atol=1e-12)
    reordered = _trajectory(point, [4, 0], steps=150)
    torch.testing.assert_close(reordered, together[[4, 0]], rtol=1e-12, atol=1e-12)


def test_runner_replica_is_the_same_among_more_replicas(small_point):
    few = train_point(small_point(run={"replicas": 2}))
    many = train_point(small_point(run={"replicas": 6}))
    np.testing.assert_allclose(
        few["final_weights"].values, many["final_weights"].values[:2], rtol=1e-12, atol=1e-12
    )
    assert not np.allclose(many["final_weights"].values[2], many["final_weights"].values[3])


def test_persistent_sgd_at_tau_lr_over_b_is_sgd_draw_for_draw(small_point):
    sgd = train_point(small_point(optimizer={"kind": "sgd", "b": 0.25}))
    persistent = train_point(
        small_point(optimizer={"kind": "persistent_sgd", "b": 0.25, "tau": 0.05 / 0.25})
    )
    np.testing.assert_array_equal(sgd["final_weights"].values, persistent["final_weights"].values)


def test_batch_fraction_one_is_gd(small_point):
    gd = train_point(small_point(optimizer={"kind": "gd"}))
    for optimizer in ({"kind": "sgd", "b": 1.0}, {"kind": "persistent_sgd", "b": 1.0, "tau": 1.0}):
        full = train_point(small_point(optimizer=optimizer))
        np.testing.assert_array_equal(gd["final_weights"].values, full["final_weights"].values)


def test_same_init_pairs_share_the_start_and_nothing_else(small_point):
    run = train_point(small_point(run={"pairing": "same_init", "replicas": 4}))
    initial = run["initial_weights"].values
    np.testing.assert_array_equal(initial[0], initial[1])
    np.testing.assert_array_equal(initial[2], initial[3])
    assert not np.allclose(initial[0], initial[2])
    final = run["final_weights"].values
    assert np.abs(final[0] - final[1]).max() > 1e-3


def test_same_init_pairs_share_their_data_draw_and_only_they_change_data_ids(small_point):
    paired = small_point(data={"per_replica": True}, run={"pairing": "same_init", "replicas": 4})
    datasets = build_datasets(paired)
    np.testing.assert_array_equal(datasets[0].x_train, datasets[1].x_train)
    np.testing.assert_array_equal(datasets[2].y_train, datasets[3].y_train)
    assert not np.allclose(datasets[0].x_train, datasets[2].x_train)
    independent = small_point(data={"per_replica": True}, run={"replicas": 4})
    own_draws = build_datasets(independent)
    assert not np.allclose(own_draws[0].x_train, own_draws[1].x_train)
    assert data_spec_id(paired) != data_spec_id(independent)
    # every other combination keeps its spec, so its cached data keep their ids
    assert "pairing" not in data_spec(independent)
    shared = small_point(run={"pairing": "same_init", "replicas": 4})
    assert data_spec(shared) == data_spec(small_point(run={"replicas": 4}))


@pytest.mark.parametrize("init", ["random", "gd_minimum"])
def test_same_init_pairs_on_per_replica_data_differ_only_by_selection_noise(small_point, init):
    """docs/physics.md A6 with data.per_replica: GD pairs end at d = 0 exactly, SGD pairs apart."""

    def run_pairs(optimizer: dict) -> tuple[np.ndarray, np.ndarray]:
        run = train_point(
            small_point(
                data={"per_replica": True},
                optimizer=optimizer,
                run={"pairing": "same_init", "replicas": 4, "init": init, "gd_init_time": 20.0},
            )
        )
        initial, final = run["initial_weights"].values, run["final_weights"].values
        np.testing.assert_array_equal(initial[0::2], initial[1::2])  # one w(0) per pair
        assert not np.allclose(initial[0], initial[2])
        N = final.shape[1]
        between_pairs = ((final[0] - final[2]) ** 2).sum() / N
        return ((final[0::2] - final[1::2]) ** 2).sum(-1) / N, between_pairs

    gd, _ = run_pairs({"kind": "gd"})
    np.testing.assert_array_equal(gd, 0.0)
    sgd, between_pairs = run_pairs({"kind": "sgd", "b": 0.3})
    assert (sgd > 0).all()
    assert (sgd < 0.1 * between_pairs).all()


def test_sphere_constraint_is_kept(small_point):
    for update in ("multiplier", "projection"):
        run = train_point(
            small_point(model={"sphere_update": update}, run={"record": {"count": 5}})
        )
        norms = (run["weights"] ** 2).sum("feature") / run.sizes["feature"]
        np.testing.assert_allclose(norms.values, 1.0, rtol=1e-12)


def test_same_config_and_seed_give_identical_data(small_point):
    point = small_point()
    first, second = make_dataset(point.data), make_dataset(point.data)
    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.y_train, second.y_train)
    assert train_point(point).attrs["data_sha256"] == train_point(point).attrs["data_sha256"]
    other = make_dataset(small_point(data={"seed": 4}).data)
    assert not np.array_equal(first.x_train, other.x_train)


def test_divergence_is_recorded_not_raised(small_point):
    point = small_point(
        model={"constraint": "none"},
        optimizer={"kind": "gd", "lr": 50.0},
        run={"max_time": 5000.0},
    )
    run = train_point(point)
    assert run.attrs["status"] == "diverged"
    assert set(run["replica_status"].values) == {"diverged"}
