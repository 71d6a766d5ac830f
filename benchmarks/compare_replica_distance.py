"""The replica distance d(t) of same-init pairs, simulation beside the DMFT's replica pair.

Point: the DMFT benchmark's (bench_dmft.py: sphere, square hinge at kappa = 0, random
patterns P/N = 3, lr = 0.1, SGD b = 0.3, random start), T steps. The simulation trains
``--pairs`` same-init pairs at ``--N`` (per-replica data, float64) and prints the mean d
over pairs with its standard error at 11 times; the DMFT (``--paths`` x ``--seeds``,
solver seed 3) prints d with its standard error over solver seeds at the same times, the
pair's status, iterations and seconds, and each seed's d. ``--sampling`` sets
fixed_point.SAMPLING for the solve and the pair (auto: Cholesky for sgd).

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python \\
        benchmarks/compare_replica_distance.py --steps 250 --N 1000 --paths 4000
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from sgdnoise.config import resolve_point
from sgdnoise.stages.dmft import solve_dmft
from sgdnoise.stages.train import train_point
from sgdnoise.theory import fixed_point


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=250)
    parser.add_argument("--N", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--paths", type=int, default=4000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--sampling", choices=["auto", "response", "cholesky"], default="auto")
    args = parser.parse_args()
    lr = 0.1
    point = resolve_point(
        {
            "optimizer": {"kind": "sgd", "lr": lr, "b": 0.3},
            "model": {"constraint": "sphere"},
            "loss": {"kappa": 0.0},
            "data": {"kind": "random_patterns", "P_over_N": 3.0, "N": args.N, "per_replica": True},
            "run": {
                "max_time": args.steps * lr,
                "replicas": 2 * args.pairs,
                "pairing": "same_init",
                "dtype": "float64",
                "record": {"times": "linear", "count": 11},
            },
        }
    )
    started = time.perf_counter()
    simulation = train_point(point)
    weights = simulation.weights.values
    distance = np.sum((weights[0::2] - weights[1::2]) ** 2, axis=-1) / args.N
    steps = simulation.step.values
    print(f"times {np.round(steps * lr, 2)}")
    print(
        f"simulation N = {args.N}, {args.pairs} pairs ({time.perf_counter() - started:.0f} s):"
        f"\n  d {np.round(distance.mean(0), 4)}"
        f"\n  +- {np.round(distance.std(0, ddof=1) / np.sqrt(args.pairs), 4)}"
    )
    fixed_point.SAMPLING = args.sampling
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        theory = solve_dmft(point, paths=args.paths, solver_seeds=args.seeds, seed=3)
    at = theory.sel(step=steps)
    print(
        f"DMFT {args.paths} paths x {args.seeds} seeds, sampling {args.sampling}: pair "
        f"{theory.attrs['replica_pair_status']}, {theory.attrs['replica_pair_iterations']} "
        f"iterations, {theory.attrs['replica_pair_seconds']:.0f} s "
        f"(all {time.perf_counter() - started:.0f} s):"
        f"\n  d {np.round(at.replica_distance.values, 4)}"
        f"\n  +- {np.round(at.replica_distance_stderr.values, 4)}"
    )
    for seed, values in enumerate(at.seed_replica_distance.values):
        print(f"  seed {seed}: {np.round(values, 4)}")


if __name__ == "__main__":
    main()
