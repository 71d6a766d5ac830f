"""Alpha-trick networks: batched replicas vs a loop, and the wall time of one phase-diagram cell.

The step measured is one minibatch-SGD step of the FC-5L GELU network of the paper
(h = 128, B = 16) on MNIST-size inputs (1 x 28 x 28), each replica with its own training
set of P = 1024 real MNIST-parity digits (data.per_replica):

- batched: the 16 replicas advance together (vmapped forward, one backward);
- loop: the same engine on one replica at a time, 16 times;
- eager: for reference, one replica as a plain torch module with autograd and
  torch.optim.SGD (the usual way of writing it), on the same batch shapes.

The cell is one grid point of the paper-scale MNIST phase diagram
(workflow/studies/phase_diagram_mnist.yaml) run by the network runner from start to
zero training loss, records and checks included.

    python benchmarks/bench_networks.py [--threads 2] [--steps 200] [--no-cell] [--cpu-time]

--cpu-time times with the process's CPU clock instead of the wall clock: with one thread
it is insensitive to other jobs sharing the cores (with two it counts both threads).
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
import yaml

from sgdnoise.config import resolve_point
from sgdnoise.data import make_dataset
from sgdnoise.dynamics.networks import NetworkProblem, make_network_dynamics
from sgdnoise.models.losses import MarginLoss
from sgdnoise.models.networks import make_network
from sgdnoise.stages.train_network import (
    EVALUATION_BATCH,
    initial_network_parameters,
    samples_of,
    train_network_point,
)

REPLICAS = 16
STUDY = "workflow/studies/phase_diagram_mnist.yaml"


def paper_point(alpha: float, temperature: float, replicas: int = REPLICAS) -> dict:
    """A grid point of the paper-scale MNIST phase diagram (its study's base)."""
    with open(STUDY) as handle:
        study = next(iter(yaml.safe_load(handle)["studies"].values()))
    base = copy.deepcopy(study["base"])
    base["model"]["alpha"] = alpha
    base["optimizer"]["temperature"] = temperature
    base["run"]["replicas"] = replicas
    return resolve_point(base)


def engine(config: dict):
    """Network, dynamics and initial parameters of a point, on the CPU in float32."""
    device, dtype = torch.device("cpu"), torch.float32
    datasets = [make_dataset(config.data, r) for r in range(config.run.replicas)]
    network = make_network(config.model, datasets[0].input_shape)
    loss = MarginLoss(config.loss.kind, config.loss.kappa)
    problem = NetworkProblem(samples_of(datasets, False, device, dtype), loss)
    chunk = max(1, EVALUATION_BATCH // config.run.replicas)
    dynamics = make_network_dynamics(
        network, problem, config.optimizer, config.run.seed, device, chunk
    )
    return (
        network,
        problem,
        dynamics,
        initial_network_parameters(network, config.run, device, dtype),
    )


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCK["wall"]


def seconds_per_step(dynamics, initial, replica_ids: list[int], steps: int) -> float:
    """Wall seconds of one step of the given replicas together (after 5 warm-up steps)."""
    state = dynamics.init({k: v[replica_ids] for k, v in initial.items()}, replica_ids)
    for _ in range(5):
        state, _ = dynamics.step(state)
    start = clock()
    for _ in range(steps):
        state, _ = dynamics.step(state)
    return (clock() - start) / steps


def eager_seconds_per_step(config: dict, problem: NetworkProblem, steps: int) -> float:
    """One replica as a plain module + autograd + torch.optim.SGD, same batch size."""
    network = make_network(config.model, tuple(problem.train.x.shape[2:]))
    optimizer = torch.optim.SGD(network.parameters(), lr=config.optimizer.lr)
    x, y = problem.train.x[0], problem.train.y[0]
    batch = config.optimizer.batch_size
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        initial = network(x)
    kappa = config.loss.kappa

    def step() -> None:
        index = torch.randperm(x.shape[0], generator=generator)[:batch]
        optimizer.zero_grad()
        stability = y[index] * (network(x[index]) - initial[index])
        torch.relu(kappa - stability).mean().backward()
        optimizer.step()

    for _ in range(5):
        step()
    start = clock()
    for _ in range(steps):
        step()
    return (clock() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=200, help="timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median kept)")
    parser.add_argument("--cell-alpha", type=float, default=1.0)
    parser.add_argument("--cell-log2-temperature", type=float, default=-8.0)
    parser.add_argument("--no-cell", action="store_true", help="skip the phase-diagram cell")
    parser.add_argument("--cpu-time", action="store_true", help="time steps in CPU seconds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global clock
    clock = CLOCK["cpu" if args.cpu_time else "wall"]

    config = paper_point(1.0, 2.0**-8)
    _, problem, dynamics, initial = engine(config)
    ids = list(range(REPLICAS))
    batched, looped, eager = [], [], []
    for _ in range(args.rounds):  # interleaved, so load from other jobs hits all alike
        batched.append(seconds_per_step(dynamics, initial, ids, args.steps) / REPLICAS)
        looped.append(
            np.mean([seconds_per_step(dynamics, initial, [r], args.steps // 4) for r in ids[:4]])
        )
        eager.append(eager_seconds_per_step(config, problem, args.steps))
    per_replica_step = {
        name: float(np.median(v))
        for name, v in [("batched", batched), ("loop", looped), ("eager", eager)]
    }
    print(
        f"FC-5L GELU h=128, B=16, P=1024 MNIST parity per replica, {REPLICAS} replicas, "
        f"float32, {args.threads} thread(s), {'CPU' if args.cpu_time else 'wall'} time, "
        f"median of {args.rounds} rounds"
    )
    print("| engine | ms per replica-step | replica-steps/s | batched speed-up |")
    print("|---|---|---|---|")
    for name, seconds in per_replica_step.items():
        ratio = seconds / per_replica_step["batched"]
        print(f"| {name} | {1e3 * seconds:.3f} | {1 / seconds:,.0f} | {ratio:.1f}x |")

    if not args.no_cell:
        cell = paper_point(args.cell_alpha, 2.0**args.cell_log2_temperature)
        start = time.perf_counter()
        run = train_network_point(cell)
        wall = time.perf_counter() - start
        statuses = [str(s) for s in run["replica_status"].values]
        steps = run["steps_taken"].values
        print(
            f"\ncell alpha={args.cell_alpha:g}, T=2^{args.cell_log2_temperature:g} "
            f"(lr={cell['optimizer']['lr']:g}), {REPLICAS} replicas, P_test="
            f"{cell['data']['P_test']}: {wall:.1f} s wall; steps to zero loss: median "
            f"{np.median(steps):.0f}, max {steps.max()}; statuses "
            f"{ {s: statuses.count(s) for s in sorted(set(statuses))} }; "
            f"{1e3 * wall / steps.max():.2f} ms per step of the slowest replica; "
            f"test error {float(run['test_error'].isel(record=-1).mean()):.3f}"
        )


if __name__ == "__main__":
    main()
