"""Paper B's perceptron points: wall time per point, against the authors' code.

The issue quotes the authors' code (JAX, one process per grid point and seed) on this
machine: about 25 s for one point (chi = 1, d = 64, P = 1024, lr = 2^-5, B = 2), about
200 s at P = 4096, and no zero loss within 10 minutes at P = 16384. Their code cannot
run here (no network), so those figures are the reference. This script trains the same
points here, SEEDS seeds batched in one run (hinge at margin 1/alpha, alpha = 32768,
per-replica training sets, stop at exactly zero loss, check every P / B steps), with

- idle-step skipping (stages.idle_skipping, the runner's path for these points), and
- the step-by-step engine (the same trajectory one step at a time), where affordable,

and prints the wall seconds per point and per seed and the ratio to the reference.
Wall times include data generation and the zero-loss checks, not the Python start-up.

    python benchmarks/bench_scaling.py [--threads 1] [--seeds 5] [--sizes 1024 4096 16384]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sgdnoise.config import resolve_point
from sgdnoise.stages import idle_skipping
from sgdnoise.stages.train import train_point

REFERENCE_SECONDS = {1024: 25.0, 4096: 200.0, 16384: 600.0}  # authors' code, per seed
STEP_BY_STEP_LIMIT = 1024  # largest P also run one step at a time (it takes minutes above)


def paper_point(P: int, seeds: int, chi: float = 1.0, d: int = 64) -> dict:
    """The issue's reference point: lr = 2^-5, B = 2 (T = lr / B = 2^-6)."""
    return resolve_point(
        {
            "model": {"kind": "perceptron", "constraint": "none", "alpha": 32768.0},
            "loss": {"kind": "hinge", "kappa": None},
            "data": {
                "kind": "depleted_sign",
                "N": d,
                "P": P,
                "chi": chi,
                "per_replica": True,
                "P_test": 8192,
            },
            "optimizer": {"kind": "minibatch_sgd", "batch_size": 2, "lr": 2.0**-5},
            "run": {
                "replicas": seeds,
                "stop": "zero_loss",
                "tolerance": 0.0,
                "check_every": P // 2,
                "engine": "steps",  # this benchmark is about the step engine and skipping
                "max_time": 1.0e9,
                "max_steps": 10**9,
                "record": {"count": 20, "weights": False},
            },
        }
    )


def timed(point: dict, skipping: bool) -> tuple[float, np.ndarray]:
    """Wall seconds of one run and its stopping steps."""
    original = idle_skipping.applies
    if not skipping:
        idle_skipping.applies = lambda config: False
    try:
        start = time.perf_counter()
        run = train_point(point)
        seconds = time.perf_counter() - start
    finally:
        idle_skipping.applies = original
    assert set(run["replica_status"].values) == {"completed"}, "a seed did not reach zero loss"
    return seconds, run["steps_taken"].values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 16384])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(
        f"chi = 1, d = 64, lr = 2^-5, B = 2, {args.seeds} seeds per run, {args.threads} thread(s)"
    )
    print(
        "| P | steps to zero loss (median) | skipping: s per point | s per seed "
        "| step by step: s per seed | authors (per seed) | speed-up per seed |"
    )
    print("|---|---|---|---|---|---|---|")
    for P in args.sizes:
        point = paper_point(P, args.seeds)
        fast, steps = timed(point, skipping=True)
        slow = "-"
        if P <= STEP_BY_STEP_LIMIT:
            slow_seconds, slow_steps = timed(point, skipping=False)
            np.testing.assert_array_equal(steps, slow_steps)  # the same trajectory
            slow = f"{slow_seconds / args.seeds:.2f}"
        reference = REFERENCE_SECONDS.get(P)
        bound = ">" if P == 16384 else ""
        ratio = f"{bound}{reference / (fast / args.seeds):.0f}x" if reference else "-"
        print(
            f"| {P} | {np.median(steps):.3g} | {fast:.2f} | {fast / args.seeds:.2f} | {slow} "
            f"| {bound}{reference:.0f} s | {ratio} |"
        )


if __name__ == "__main__":
    main()
