"""Products with per-replica patterns: torch.einsum against the engine's batched-matmul
layouts (sgdnoise.dynamics.perceptron.project and combine).

With data.per_replica every replica has its own patterns (R, K, N) and a step is R
matrix-vector products, memory-bound on the patterns. Printed side by side, in one
process: milliseconds per call and the ratio einsum / chosen layout, for the stabilities
of one vector per replica (the training step: (R, N)) and of several (the tangents of the
exact response: (R, M, N)), and for the gradient sum_mu c_mu x_mu ((R, K) -> (R, N)).

    python benchmarks/bench_per_replica.py [--threads 1] [--replicas 8] [--samples 1500]
"""

from __future__ import annotations

import argparse
import time

import torch

from sgdnoise.dynamics.perceptron import combine, project


def milliseconds(function, repeats: int = 20) -> float:
    function()
    start = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - start) / repeats * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--samples", type=int, default=1500)
    parser.add_argument("--features", type=int, default=500)
    parser.add_argument("--vectors", type=int, default=3, help="vectors per replica (tangents)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    R, K, N, M = args.replicas, args.samples, args.features, args.vectors
    patterns = torch.randn(R, K, N, dtype=torch.float64)
    one, several = (
        torch.randn(R, N, dtype=torch.float64),
        torch.randn(R, M, N, dtype=torch.float64),
    )
    coefficients = torch.randn(R, K, dtype=torch.float64)
    cases = {
        "stabilities, 1 vector": (
            lambda: torch.einsum("rkn,r...n->r...k", patterns, one),
            lambda: project(patterns, one),
        ),
        f"stabilities, {M} vectors": (
            lambda: torch.einsum("rkn,r...n->r...k", patterns, several),
            lambda: project(patterns, several),
        ),
        "gradient sum_mu c_mu x_mu": (
            lambda: torch.einsum("rkn,r...k->r...n", patterns, coefficients),
            lambda: combine(patterns, coefficients),
        ),
    }
    print(f"R = {R}, K = {K}, N = {N}, float64, {args.threads} thread(s); ms per call")
    print(f"{'product':28s} {'einsum':>8s} {'chosen':>8s} {'ratio':>6s}")
    for name, (einsum, chosen) in cases.items():
        torch.testing.assert_close(einsum(), chosen())
        slow, fast = milliseconds(einsum), milliseconds(chosen)
        print(f"{name:28s} {slow:8.2f} {fast:8.2f} {slow / fast:5.1f}x")


if __name__ == "__main__":
    main()
