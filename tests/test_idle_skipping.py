"""The idle-step-skipping runner makes the step-by-step engine's trajectory, faster.

Minibatch SGD of the unconstrained perceptron changes the weights only on steps whose
batch holds a violated sample; stages.idle_skipping jumps over the others. Same batches,
same updates: the artifacts must agree with the engine's (final weights to rounding,
stopping times and statuses exactly), with the hinge and the square hinge, shared and
per-replica data, zero-loss stops found at sparse checks, and replicas out of budget.
"""

from __future__ import annotations

import numpy as np
import pytest

from sgdnoise.config import PointConfig, resolve_point
from sgdnoise.stages import idle_skipping
from sgdnoise.stages.train import train_point

pytestmark = pytest.mark.usefixtures("one_thread")


def _point(loss: dict, temperature: float, per_replica: bool, max_steps: int) -> PointConfig:
    return resolve_point(
        {
            "model": {"kind": "perceptron", "constraint": "none", "alpha": 64.0},
            "loss": loss,
            "data": {
                "kind": "depleted_sign",
                "N": 12,
                "P": 150,
                "chi": 1.0,
                "per_replica": per_replica,
                "P_test": 200,
            },
            "optimizer": {"kind": "minibatch_sgd", "batch_size": 3, "temperature": temperature},
            "run": {
                "replicas": 4,
                "stop": "zero_loss",
                "tolerance": 0.0,
                "check_every": 37,
                "engine": "steps",  # the draw-for-draw trajectory (events is exact in law)
                "max_time": 1.0e6,
                "max_steps": max_steps,
                "record": {"count": 12},
            },
        }
    )


def _step_by_step(point: dict, monkeypatch) -> object:
    with monkeypatch.context() as patch:
        patch.setattr(idle_skipping, "applies", lambda config: False)
        return train_point(point)


@pytest.mark.parametrize(
    ("loss", "temperature", "per_replica", "max_steps"),
    [
        ({"kind": "hinge", "kappa": None}, 0.02, True, 200_000),  # noise-dominated
        ({"kind": "hinge", "kappa": None}, 2e-3, False, 200_000),  # small T, shared data
        ({"kind": "hinge", "kappa": None}, 2e-3, True, 900),  # budget exhausted
        ({"kind": "square_hinge", "kappa": None}, 5.0, True, 200_000),  # overshoots to zero
    ],
    ids=["hinge-noisy", "hinge-cold-shared", "hinge-budget", "square-hinge"],
)
def test_skipping_idle_steps_is_the_engine_trajectory(
    monkeypatch, loss, temperature, per_replica, max_steps
):
    point = _point(loss, temperature, per_replica, max_steps)
    assert idle_skipping.applies(point)
    fast = train_point(point)
    slow = _step_by_step(point, monkeypatch)
    np.testing.assert_array_equal(fast["replica_status"].values, slow["replica_status"].values)
    np.testing.assert_array_equal(fast["steps_taken"].values, slow["steps_taken"].values)
    np.testing.assert_array_equal(fast["t_star"].values, slow["t_star"].values)
    for name in ("final_weights", "signal", "noise", "weight_change", "train_loss"):
        np.testing.assert_allclose(fast[name].values, slow[name].values, rtol=1e-12, atol=1e-14)
    if max_steps < 1000:
        assert set(fast["replica_status"].values) == {"budget_exhausted"}
    else:
        assert set(fast["replica_status"].values) == {"completed"}


def test_a_run_resumed_at_a_window_boundary_is_the_uninterrupted_run(tmp_path):
    """The checkpoint offered at a window boundary resumes to the same artifact."""
    point = _point({"kind": "hinge", "kappa": None}, 0.02, True, 200_000)
    uninterrupted = train_point(point)
    checkpoint = tmp_path / "run.ckpt"
    point = point.replace(run=point.run.replace(checkpoint_seconds=1e-9))  # every boundary
    calls = {"n": 0}

    def interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 20:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    original = idle_skipping._advance
    idle_skipping._advance = interrupt
    try:
        with pytest.raises(KeyboardInterrupt):
            train_point(point, checkpoint=checkpoint)
    finally:
        idle_skipping._advance = original
    assert checkpoint.exists()
    resumed = train_point(point, checkpoint=checkpoint)
    np.testing.assert_array_equal(
        resumed["final_weights"].values, uninterrupted["final_weights"].values
    )
    np.testing.assert_array_equal(resumed["t_star"].values, uninterrupted["t_star"].values)
    np.testing.assert_array_equal(resumed["signal"].values, uninterrupted["signal"].values)
