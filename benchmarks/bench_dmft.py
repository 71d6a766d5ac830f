"""Time the DMFT solver: seconds per fixed-point iteration and per solve.

Setting of the reference figures (issue "DMFT solver"; docs/physics.md A8): perceptron on the
sphere (multiplier form), square hinge at kappa = 0, random patterns at P/N = 3,
lr = 0.1, 1e4 paths, SGD with b = 0.3 and GD, T = 250, 500, 1000 steps. An independent
numpy implementation on one core took ~0.45 s per iteration and ~7 s per solve (SGD,
T = 250) and ~1.9 s per iteration and ~55 s per solve (GD, T = 250); the target for
T = 1000 SGD is under 10 minutes on 2 cores.

Run (``--threads`` sets torch's threads, which the solver uses as coarse-grained workers
of the memory kernel; numpy's BLAS stays single-threaded: its many small products
stall when threads wait for a busy shared core):

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_dmft.py --threads 2

Prints one line per case: steps, optimizer, iterations, status, wall seconds per
iteration (wall of the single-replica solve / iterations) and per solve, the process CPU
seconds of the solve and the pair (all threads; on a machine shared with other jobs the wall time is
inflated by waiting, the CPU time much less), the ratios reference / measured (wall)
where there is a reference, and the wall seconds and iterations of the same-init replica
pair that solve_dmft adds for the replica distance (theory.replica_pair; not in the
reference, whose solver had no pair). The first iterations run on a quarter of the paths
(fixed_point.COARSE_*), so seconds per iteration average cheap and full iterations. The
load average of the machine is printed with each case. ``--cases sgd:250,gd:250`` selects cases;
``--max-iterations`` caps a solve (it then reports its per-iteration time and the status
not_converged). ``--sampling`` chooses how the field u is sampled (fixed_point.SAMPLING: auto,
the default, is response for gd and cholesky otherwise; response is
gaussian_sampling.response_field, cholesky u = chol(C) z); ``--mixed-forces``
caps the number of forces each path mixes (fixed_point.MIXED_FORCES).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import torch

from sgdnoise.config import resolve_point
from sgdnoise.stages.dmft import solve_dmft
from sgdnoise.theory import fixed_point

REFERENCE_SECONDS = {  # (kind, steps): (per iteration, per solve), one core
    ("sgd", 250): (0.45, 7.0),
    ("gd", 250): (1.9, 55.0),
}
DEFAULT_CASES = "sgd:250,gd:250,sgd:500,gd:500,sgd:1000,gd:1000"


def benchmark_point(kind: str, steps: int) -> dict:
    """The reference setting at T = steps (lr = 0.1)."""
    lr = 0.1
    optimizer = {"kind": kind, "lr": lr, "b": 0.3 if kind == "sgd" else 1.0}
    return resolve_point(
        {
            "optimizer": optimizer,
            "model": {"constraint": "sphere"},
            "loss": {"kappa": 0.0},
            "data": {"kind": "random_patterns", "P_over_N": 3.0, "N": 1000},
            "run": {"max_time": steps * lr, "response": {"waiting_times": [steps * lr / 2]}},
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--paths", type=int, default=10_000)
    parser.add_argument("--cases", default=DEFAULT_CASES)
    parser.add_argument("--max-iterations", type=int, default=100)
    parser.add_argument("--tolerance", type=float, default=1e-6)
    parser.add_argument("--sampling", choices=["auto", "response", "cholesky"], default="auto")
    parser.add_argument("--mixed-forces", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fixed_point.SAMPLING = args.sampling
    fixed_point.MIXED_FORCES = args.mixed_forces
    print(
        f"threads {args.threads}, paths {args.paths}, tolerance {args.tolerance}, "
        f"sampling {args.sampling}, mixed forces {args.mixed_forces or 'all'}"
    )
    print(
        f"{'case':>10} {'iter':>5} {'status':>14} {'s/iter':>8} {'s/solve':>9} "
        f"{'cpu s':>9} {'ref/measured':>18} {'pair s':>7} {'pair it':>7}"
    )
    for case in args.cases.split(","):
        kind, steps = case.split(":")
        point = benchmark_point(kind, int(steps))
        started, cpu_started = time.perf_counter(), time.process_time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ds = solve_dmft(
                point,
                paths=args.paths,
                max_iterations=args.max_iterations,
                tolerance=args.tolerance,
            )
        pair_seconds = float(ds.attrs["replica_pair_seconds"])
        wall = time.perf_counter() - started - pair_seconds
        cpu = time.process_time() - cpu_started
        iterations = int(ds.attrs["iterations"])
        per_iteration = wall / max(iterations, 1)
        reference = REFERENCE_SECONDS.get((kind, int(steps)))
        ratio = (
            f"{reference[0] / per_iteration:5.1f}x, {reference[1] / wall:5.1f}x"
            if reference
            else "-"
        )
        print(
            f"{case:>10} {iterations:5d} {ds.attrs['status']:>14} {per_iteration:8.2f} "
            f"{wall:9.1f} {cpu:9.1f} {ratio:>18} {pair_seconds:7.1f} "
            f"{ds.attrs['replica_pair_iterations']:7d}   load {os.getloadavg()[0]:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
