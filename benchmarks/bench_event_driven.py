"""Paper B's perceptron points: the step engine against the event-driven engine, side by side.

Same point, same process, one after the other: train_point with run.engine steps
(idle-step skipping, stages.idle_skipping: the step engine's trajectory draw for draw,
O(B N) per step, zero-loss checks every P / B steps) and with run.engine events
(stages.event_driven: the same chain in law, O(P N) per weight update, nothing per idle
step, zero loss seen without checks). Everything else is train_point's (data,
recording), so the difference is the engine.

Points: hinge at margin 1/alpha, alpha = 32768, per-replica training sets, stop at
exactly zero loss, B = 2, temperature lr / B; SEEDS replicas (seeds) batched in one
run; chi = 1, d = 64, lr = 2^-5 at P = 1024 and 4096, and chi = 0, d = 16, lr = 2^-3 at
P = 2048. Few records (count 4) and a small test set, so that recording stays small
beside training. Printed per point: wall seconds per replica of each engine, the ratio,
and the median steps to zero loss (t* / lr) of each. The two engines make different
draws: their steps agree in law, not replica by replica.

    python benchmarks/bench_event_driven.py [--threads 1] [--seeds 5] [--repeats 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sgdnoise.config import resolve_point
from sgdnoise.config.point import PointConfig
from sgdnoise.stages.train import train_point

POINTS = [  # (chi, d, P, lr)
    (1.0, 64, 1024, 2.0**-5),
    (1.0, 64, 4096, 2.0**-5),
    (0.0, 16, 2048, 2.0**-3),
]


def paper_point(chi: float, d: int, P: int, lr: float, seeds: int) -> PointConfig:
    """Paper B's perceptron point with B = 2 (T = lr / B), one replica per seed."""
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
                "P_test": 1024,
            },
            "optimizer": {"kind": "minibatch_sgd", "batch_size": 2, "lr": lr},
            "run": {
                "replicas": seeds,
                "stop": "zero_loss",
                "tolerance": 0.0,
                "max_time": 1.0e9,
                "max_steps": 10**9,
                "record": {"count": 4, "weights": False},
            },
        }
    )


def timed(point: PointConfig, engine: str) -> tuple[float, np.ndarray]:
    """Wall seconds of one run with run.engine ``engine``, and its steps to zero loss."""
    point = point.replace(run=point.run.replace(engine=engine))
    start = time.perf_counter()
    run = train_point(point)
    seconds = time.perf_counter() - start
    assert set(run["replica_status"].values) == {"completed"}, "a seed did not reach zero loss"
    return seconds, run["steps_to_zero_loss"].values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1, help="runs per engine (best kept)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"B = 2, alpha = 32768, hinge, {args.seeds} seeds per run, {args.threads} thread(s)")
    print(
        "| chi | d | P | lr | steps: s per replica | events: s per replica "
        "| steps / events | median steps to zero loss (steps, events) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for chi, d, P, lr in POINTS:
        point = paper_point(chi, d, P, lr, args.seeds)
        slow = min((timed(point, "steps") for _ in range(args.repeats)), key=lambda r: r[0])
        fast = min((timed(point, "events") for _ in range(args.repeats)), key=lambda r: r[0])
        print(
            f"| {chi:g} | {d} | {P} | 2^{np.log2(lr):.0f} | {slow[0] / args.seeds:.3f} "
            f"| {fast[0] / args.seeds:.3f} | {slow[0] / fast[0]:.1f}x "
            f"| {np.median(slow[1]):.3g}, {np.median(fast[1]):.3g} |"
        )


if __name__ == "__main__":
    main()
