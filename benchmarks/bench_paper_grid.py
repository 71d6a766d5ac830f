"""The cost of paper B's perceptron grid (workflow/studies/perceptron_scaling.yaml), measured.

Trains cells of the preset, exactly as its jobs would (its base config: P_test = 32768,
30 records, float64, stop at exactly zero loss; run.engine auto picks the event-driven
engine), one seed per cell, one thread, and prints the process CPU seconds of each and
its steps to zero loss. Then projects the whole grid (1080 points x the preset's seeds):
per (chi, d, P) measured, the cost against log2 T is interpolated linearly between the
measured temperatures and summed over the grid's 18; d and P between measured values
are interpolated linearly in log2 d, log2 P on log cost. The projection is a sum of
CPU seconds; on c cores the wall time is about that / c (the points are independent).

    python benchmarks/bench_paper_grid.py [--chi 0 1 3] [--d 16 128]
        [--P 1024 4096 16384] [--log2-T -19 -11 -2]
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from sgdnoise.config import resolve_point
from sgdnoise.config.grid import set_path
from sgdnoise.stages.train import train_point

PRESET = Path(__file__).resolve().parents[1] / "workflow" / "studies" / "perceptron_scaling.yaml"


def preset_study() -> dict:
    """The preset's one study (base and grid)."""
    return next(iter(yaml.safe_load(PRESET.read_text())["studies"].values()))


def cell_seconds(
    study: dict, chi: float, d: int, P: int, temperature: float
) -> tuple[float, float]:
    """CPU seconds and steps to zero loss of one seed of the cell (chi, d, P, T)."""
    raw = yaml.safe_load(yaml.safe_dump(study["base"]))
    for path, value in {
        "data.chi": chi,
        "data.N": d,
        "data.P": P,
        "optimizer.temperature": temperature,
        "run.replicas": 1,
    }.items():
        set_path(raw, path, value)
    point = resolve_point(raw)
    start = time.process_time()
    run = train_point(point)
    seconds = time.process_time() - start
    assert set(run["replica_status"].values) == {"completed"}, (chi, d, P, temperature)
    return seconds, float(run["steps_to_zero_loss"].values[0])


def interpolate(measured: dict[float, float], at: float) -> float:
    """Linear interpolation of log cost in ``at`` (log2 of d, P or T) between the measured
    keys, held constant beyond them."""
    keys = sorted(measured)
    return float(np.exp(np.interp(at, keys, [math.log(measured[k]) for k in keys])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chi", type=float, nargs="+", default=[0.0, 1.0, 3.0])
    parser.add_argument("--d", type=int, nargs="+", default=[16, 128])
    parser.add_argument("--P", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--log2-T", type=int, nargs="+", default=[-19, -11, -2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    study = preset_study()
    grid, seeds = study["grid"], study["base"]["run"]["replicas"]
    cell_seconds(study, 3.0, 16, 1024, 2.0**-2)  # warm: imports, compiled engine loaded

    measured: dict[tuple[float, int, int], dict[float, float]] = {}
    print("| chi | d | P | T | CPU s per seed | steps to zero loss |")
    print("|---|---|---|---|---|---|")
    for chi, d, P, log2_t in itertools.product(args.chi, args.d, args.P, args.log2_T):
        seconds, steps = cell_seconds(study, chi, d, P, 2.0**log2_t)
        measured.setdefault((chi, d, P), {})[log2_t] = seconds
        print(f"| {chi:g} | {d} | {P} | 2^{log2_t} | {seconds:.2f} | {steps:.3g} |", flush=True)

    print(f"\nProjection for the whole preset grid ({seeds} seeds per point), CPU hours:")
    total = 0.0
    for chi in [chi for chi in grid["data.chi"] if chi in args.chi]:
        # per measured (d, P): one seed summed over the grid's temperatures
        over_t = {
            (d, P): sum(
                interpolate(measured[chi, d, P], math.log2(t))
                for t in grid["optimizer.temperature"]
            )
            for d, P in itertools.product(args.d, args.P)
        }
        chi_total = 0.0
        for d, P in itertools.product(grid["data.N"], grid["data.P"]):
            at_p = {
                math.log2(dm): interpolate(
                    {math.log2(Pm): over_t[dm, Pm] for Pm in args.P}, math.log2(P)
                )
                for dm in args.d
            }
            chi_total += seeds * interpolate(at_p, math.log2(d))
        total += chi_total
        print(f"  chi = {chi:g}: {chi_total / 3600:.2f} h")
    print(f"  all: {total / 3600:.2f} h of CPU, {total / 3600 / 2:.2f} h on 2 cores")


if __name__ == "__main__":
    main()
