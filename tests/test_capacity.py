"""GD on random patterns: zero loss well below Gardner's capacity P/N = 2, not above it."""

from __future__ import annotations

import pytest

from sgdnoise.stages.train import train_point


@pytest.mark.parametrize(("ratio", "satisfiable"), [(1.2, True), (1.4, True), (2.8, False)])
def test_gd_reaches_zero_loss_only_below_the_jamming_line(small_point, ratio, satisfiable):
    point = small_point(
        data={"N": 300, "P_over_N": ratio},
        optimizer={"kind": "gd", "lr": 0.05},
        run={"replicas": 2, "max_time": 400.0, "stop": "zero_loss", "tolerance": 1e-12},
    )
    run = train_point(point)
    final_loss = run["train_loss"].isel(record=-1).values
    if satisfiable:
        assert run.attrs["status"] == "completed"
        assert (final_loss < 1e-12).all()
        # docs/physics.md A7b: total loss 1e-10 at t ~ 105 (P/N = 1.2), ~156 (1.4) for N = 300
        assert run["t_star"].max() < 300
    else:
        assert run.attrs["status"] == "budget_exhausted"
        assert (final_loss * point.data.P > 1.0).all()  # total loss ~4.4 in A7b
