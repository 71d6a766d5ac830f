"""Perceptron engine: batched replicas vs a loop, and achieved FLOP/s vs the machine's matmul.

One SGD step (N = 1000, P = 2000, b = 0.1, R = 64 replicas) does two matrix products of
R x N x P multiply-adds each (stabilities h = W A^T, gradient g = (s v'(h)) A): 4 R N P
floating-point operations. Everything is measured side by side in this process.

    python benchmarks/bench_engine.py [--threads 2] [--repeats 30]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from sgdnoise.config import resolve_point
from sgdnoise.data import make_dataset
from sgdnoise.dynamics.perceptron import make_perceptron_dynamics
from sgdnoise.stages.train import build_problems, initial_weights

N, P, B_FRACTION, REPLICAS = 1000, 2000, 0.1, 64


def seconds_per_call(function, repeats: int) -> float:
    """Median wall seconds of one call (after a warm-up call)."""
    function()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples))


def engine(dtype: torch.dtype, replicas: int):
    point = resolve_point(
        {
            "data": {"N": N, "P": P},
            "optimizer": {"kind": "sgd", "b": B_FRACTION, "lr": 0.05},
            "run": {
                "replicas": REPLICAS,
                "dtype": "float32" if dtype == torch.float32 else "float64",
            },
        }
    )
    problem, _, _ = build_problems(point, [make_dataset(point.data)], "cpu", dtype)
    weights = initial_weights(point, N, "cpu", dtype)
    dynamics = make_perceptron_dynamics(problem, point.optimizer, 0, "cpu")
    return dynamics, weights


def measure(dtype: torch.dtype, repeats: int) -> dict[str, float]:
    dynamics, weights = engine(dtype, REPLICAS)
    state = dynamics.init(weights, list(range(REPLICAS)))

    def batched_step():
        nonlocal state
        state, _ = dynamics.step(state)

    singles = [dynamics.init(weights[r : r + 1].clone(), [r]) for r in range(REPLICAS)]

    def loop_step():
        for r in range(REPLICAS):
            singles[r], _ = dynamics.step(singles[r])

    batched = seconds_per_call(batched_step, repeats)
    loop = seconds_per_call(loop_step, max(3, repeats // 5))
    a = torch.randn(REPLICAS, N, dtype=dtype)
    x = torch.randn(P, N, dtype=dtype)
    matmul_torch = seconds_per_call(lambda: x @ a.T, repeats)
    a_np, x_np = a.numpy(), x.numpy()
    matmul_numpy = seconds_per_call(lambda: x_np @ a_np.T, repeats)
    flops_step = 4 * REPLICAS * N * P
    flops_matmul = 2 * REPLICAS * N * P
    return {
        "batched_replica_steps_per_s": REPLICAS / batched,
        "loop_replica_steps_per_s": REPLICAS / loop,
        "batched_over_loop": loop / batched,
        "step_gflops": flops_step / batched / 1e9,
        "torch_matmul_gflops": flops_matmul / matmul_torch / 1e9,
        "numpy_matmul_gflops": flops_matmul / matmul_numpy / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, numpy {np.__version__}, threads {args.threads}")
    print(f"one SGD step: N={N}, P={P}, b={B_FRACTION}, R={REPLICAS}")
    for dtype in (torch.float32, torch.float64):
        r = measure(dtype, args.repeats)
        print(f"\n[{str(dtype).replace('torch.', '')}]")
        print(f"  batched: {r['batched_replica_steps_per_s']:10.0f} replica-steps/s")
        print(f"  loop:    {r['loop_replica_steps_per_s']:10.0f} replica-steps/s")
        print(f"  batched / loop = {r['batched_over_loop']:.1f}x")
        print(
            f"  step: {r['step_gflops']:.1f} GFLOP/s; matmul of equal shape: torch "
            f"{r['torch_matmul_gflops']:.1f}, numpy {r['numpy_matmul_gflops']:.1f} GFLOP/s"
        )
        print(
            f"  step / torch matmul = {r['step_gflops'] / r['torch_matmul_gflops']:.0%}, "
            f"step / numpy matmul = {r['step_gflops'] / r['numpy_matmul_gflops']:.0%}"
        )


if __name__ == "__main__":
    main()
