"""Cost of the exact response: a run replayed with M forward tangents vs the plain run.

Same grid point (N = 1000, P/N = 3, SGD b = 0.3, R = 8, 1000 steps), measured side by side:
the plain training run, and the correlation_response replay with 1 and 4 tangents (all
switched on at t_w = 0 so every step carries them). Target: <= 2x the plain run per tangent.

    python benchmarks/bench_response.py [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from sgdnoise.config import resolve_point
from sgdnoise.stages.correlation_response import measure_two_time
from sgdnoise.stages.generate_data import build_datasets
from sgdnoise.stages.train import train_point


def point(tangents: int) -> dict:
    return resolve_point(
        {
            "data": {"N": 1000, "P_over_N": 3.0},
            "optimizer": {"kind": "sgd", "b": 0.3, "lr": 0.05},
            "run": {
                "replicas": 8,
                "max_time": 50.0,
                "record": {"count": 2, "weights": False},
                "response": {"waiting_times": [0.0], "probes": tangents, "lag_count": 11},
            },
        }
    )


def seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = point(1)
    datasets = build_datasets(base)
    train_point(base, datasets)  # warm-up
    plain = min(seconds(lambda: train_point(base, datasets)) for _ in range(2))
    print(f"plain run (1000 steps, R = 8, N = 1000, P = 3000): {plain:.2f} s")
    for tangents in (1, 4):
        config = point(tangents)
        recorded = train_point(config, datasets)
        replay = min(seconds(lambda r=recorded: measure_two_time(r, datasets)) for _ in range(2))
        extra = (replay - plain) / (tangents * plain)
        print(
            f"replay with {tangents} tangent(s): {replay:.2f} s = {replay / plain:.2f}x the run;"
            f" cost per tangent = {1 + extra:.2f}x the run"
        )


if __name__ == "__main__":
    main()
