"""Alpha-trick networks: batched replicas vs loops, and the wall time of one phase-diagram cell.

The step measured is one minibatch-SGD step of the FC-5L GELU network of the paper
(h = 128, B = 16) on MNIST-size inputs (1 x 28 x 28), each replica with its own training
set of P = 1024 real MNIST-parity digits (data.per_replica), float32:

- batched native: the 16 replicas advance together in one call of the compiled step
  (dynamics.networks.NativeFCNStep, dynamics/fcn_kernels.c: replica by replica, the
  batch of 16 in the lanes of 512-bit vectors, forward, backward and fused updates while
  the replica's weights stay in cache), where the kernels build (C compiler, AVX2 or
  AVX-512);
- batched hand-written: the same in torch (dynamics.networks.FCNStep: batched matmuls,
  fused update, backward on the samples that violate the margin only);
- batched generic: the same, with the generic step (vmapped forward, one autograd
  backward), the engine of every network without a hand-written step;
- loop / loop generic: the torch engines on one replica at a time, 16 times;
- eager: one replica as a plain torch module with autograd and torch.optim.SGD (the
  usual way of writing it), on the same batch shapes.

Steps are timed from initialisation (after 5 warm-up steps), where nearly every batch
sample violates the margin and the backward is full, and again from step --late-start
of the same replicas (most of a run to zero loss: few violating samples). The achieved
GFLOP/s of the early batched step (forward + full backward) is set against matmuls of
the same shapes, and a large square one, in this process (torch and numpy), and against
the step's floor on torch's kernels: its own operations (products, then activations)
each timed alone on tensors hot in cache, summed.

The MNAS CNN (width --cnn-width, same data and batch size) is measured likewise with the
generic engine (it has no hand-written step), as it runs (one replica per vmapped call on
the CPU) and with all replicas in one vmapped call, for steps and for evaluation. The
cell is one grid point of the paper-scale MNIST phase diagram
(workflow/studies/phase_diagram_mnist.yaml) run by the network runner from start to zero
training loss, records and checks included.

    python benchmarks/bench_networks.py [--threads 1] [--steps 100] [--rounds 5] [--cpu-time]
        [--late-start 1000] [--no-cnn] [--no-cell]

Set OPENBLAS_NUM_THREADS (read when numpy loads) to the thread count for numpy's matmuls,
and SGDNOISE_NATIVE_ARCH=x86-64-v3 to time the AVX2 build of the compiled step (8 samples
per vector) on an AVX-512 machine.
--cpu-time times with the process's CPU clock instead of the wall clock: with one thread
it is insensitive to other jobs sharing the cores (with two it counts both threads).
Every figure is the minimum and the median over --rounds interleaved rounds.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import time
from collections.abc import Callable
from functools import partial
from unittest.mock import patch

import numpy as np
import torch
import yaml

from sgdnoise.config import PointConfig, resolve_point
from sgdnoise.data import make_dataset
from sgdnoise.dynamics.native import build_failure, fcn_kernels
from sgdnoise.dynamics.networks import (
    NetworkDynamics,
    NetworkProblem,
    NetworkState,
    choose_engine,
    make_network_dynamics,
)
from sgdnoise.models import networks
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

CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
clock = CLOCK["wall"]


def paper_point(
    alpha: float, temperature: float, replicas: int = REPLICAS, model: dict | None = None
) -> PointConfig:
    """A grid point of the paper-scale MNIST phase diagram (its study's base).

    ``model`` replaces the study's model section (alpha is set on it too).
    """
    with open(STUDY) as handle:
        study = next(iter(yaml.safe_load(handle)["studies"].values()))
    base = copy.deepcopy(study["base"])
    if model is not None:
        base["model"] = dict(model)
    base["model"]["alpha"] = alpha
    base["optimizer"]["temperature"] = temperature
    base["run"]["replicas"] = replicas
    return resolve_point(base)


def engines(config: PointConfig):
    """Problem, dynamics by engine (native where it builds, hand_written, generic) and
    initial parameters, CPU, float32."""
    device, dtype = torch.device("cpu"), torch.float32
    datasets = [make_dataset(config.data, r) for r in range(config.run.replicas)]
    network = make_network(config.model, datasets[0].input_shape)
    loss = MarginLoss(config.loss.kind, config.loss.kappa)
    problem = NetworkProblem(samples_of(datasets, False, device, dtype), loss)
    chunk = max(1, EVALUATION_BATCH // config.run.replicas)
    native = choose_engine(network, config.optimizer.batch_size, device, dtype) == "native"
    names = ("native", "hand_written", "generic") if native else ("hand_written", "generic")
    dynamics = {
        name: make_network_dynamics(
            network, problem, config.optimizer, config.run.seed, device, chunk, name
        )
        for name in names
    }
    return problem, dynamics, initial_network_parameters(network, config.run, device, dtype)


def timed_steps(dynamics: NetworkDynamics, state: NetworkState, steps: int) -> float:
    """Seconds per step of ``state``'s replicas together (the state is advanced)."""
    start = clock()
    for _ in range(steps):
        state, _ = dynamics.step(state)
    return (clock() - start) / steps


def seconds_per_step(
    dynamics: NetworkDynamics, initial: dict, replica_ids: list[int], steps: int
) -> float:
    """Seconds of one step of the given replicas together, from w0 (after 5 warm-up steps)."""
    state = dynamics.init({k: v[replica_ids] for k, v in initial.items()}, replica_ids)
    for _ in range(5):
        state, _ = dynamics.step(state)
    return timed_steps(dynamics, state, steps)


def loop_seconds_per_step(dynamics: NetworkDynamics, initial: dict, steps: int) -> float:
    """Seconds per step of one replica alone, averaged over 4 replicas of ``steps // 4``."""
    count = max(1, steps // 4)
    return float(np.mean([seconds_per_step(dynamics, initial, [r], count) for r in range(4)]))


def eager_seconds_per_step(config: PointConfig, problem: NetworkProblem, steps: int) -> float:
    """One replica as a plain module + autograd + torch.optim.SGD, same batch size."""
    network = make_network(config.model, tuple(problem.train.x.shape[2:]))
    optimizer = torch.optim.SGD(network.parameters(), lr=config.optimizer.lr)
    x, y = problem.train.x[0], problem.train.y[0]
    batch = config.optimizer.batch_size
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        initial = torch.cat([network(chunk) for chunk in x.split(256)])
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


def fcn_flops_per_replica_step(config: PointConfig, input_size: int) -> float:
    """Floating-point operations of one FCN replica-step with a full backward.

    Forward 2 B (d h + (L - 1) h^2 + h); the backward as much again for dW (and the
    readout), plus 2 B (L - 1) h^2 for dL/da of the hidden layers (not of the input).
    Elementwise work (activations, update) is left out.
    """
    width, depth, batch = config.model.width, config.model.depth, config.optimizer.batch_size
    weights = input_size * width + (depth - 1) * width**2 + width
    return 2 * batch * (2 * weights + (depth - 1) * width**2)


def matmul_gflops(repeats: int) -> dict[str, float]:
    """GFLOP/s of float32 matmuls in this process: the FCN's layer-1 forward as a batch of
    16 (16 x 784) @ (784 x 128) products, and one 512^3 product (the core's practical peak)."""
    x, weight = torch.randn(REPLICAS, 16, 784), torch.randn(REPLICAS, 128, 784)
    square = torch.randn(512, 512)
    x_np, weight_np, square_np = x.numpy(), weight.numpy(), square.numpy()
    cases: dict[str, tuple[Callable[[], object], float]] = {
        "torch bmm (16, 16x784 @ 784x128)": (
            lambda: torch.bmm(x, weight.mT),
            2.0 * REPLICAS * 16 * 784 * 128,
        ),
        "numpy matmul (16, 16x784 @ 784x128)": (
            lambda: np.matmul(x_np, weight_np.transpose(0, 2, 1)),
            2.0 * REPLICAS * 16 * 784 * 128,
        ),
        "torch 512^3": (lambda: square @ square, 2.0 * 512**3),
        "numpy 512^3": (lambda: square_np @ square_np, 2.0 * 512**3),
    }
    return {
        name: flops / seconds_per_call(product, repeats) / 1e9
        for name, (product, flops) in cases.items()
    }


def seconds_per_call(operation: Callable[[], object], repeats: int, rounds: int = 1) -> float:
    """Seconds of one call of ``operation``: after a warm-up call, the best over ``rounds``
    of the mean over ``repeats`` calls."""
    operation()
    best = math.inf
    for _ in range(rounds):
        start = clock()
        for _ in range(repeats):
            operation()
        best = min(best, (clock() - start) / repeats)
    return best


def step_floor_seconds(config: PointConfig, repeats: int) -> dict[str, float]:
    """Seconds of the hand-written step's own operations, each timed alone, per 16-replica step.

    The batched products FCNStep issues from initialisation (every batch row violating
    the margin), with its layouts: the forward ``bmm(a, W.mT)`` of every layer and the
    readout, the backward ``bmm(dz, W)`` of the hidden layers but the first, and the
    fused updates ``W.baddbmm_(dz.mT, a)``; then its activations (gelu, and gelu's
    pullback on the way back). Each is repeated on the same tensors (hot in cache) and
    its best time kept, so the sums are a floor under the step with torch's kernels:
    what it would cost with no gaps, gathers, bookkeeping or cache misses between them.
    """
    width, depth, batch = config.model.width, config.model.depth, config.optimizer.batch_size
    activation = make_network(config.model, (1, 28, 28)).act
    fan_ins = [784] + [width] * (depth - 1)
    z = torch.randn(REPLICAS, batch, width)
    cases: dict[str, tuple[str, Callable[[], object]]] = {}
    for layer, fan_in in enumerate(fan_ins):
        a, weight = torch.randn(REPLICAS, batch, fan_in), torch.randn(REPLICAS, width, fan_in)
        cases[f"forward {layer}"] = ("products", partial(torch.bmm, a, weight.mT))
        if layer > 0:
            cases[f"backward {layer}"] = ("products", partial(torch.bmm, z, weight))
        update = partial(weight.baddbmm_, z.mT, a, alpha=-1e-9)
        cases[f"update {layer}"] = ("products", update)
        cases[f"gelu {layer}"] = ("activations", partial(activation.base, z))
        cases[f"pullback {layer}"] = ("activations", partial(activation.base_pullback, z, z))
    readout, force = torch.randn(REPLICAS, 1, width), torch.randn(REPLICAS, batch, 1)
    cases["readout forward"] = ("products", partial(torch.bmm, readout, z.mT))
    cases["readout backward"] = ("products", partial(torch.bmm, force, readout))
    cases["readout update"] = ("products", partial(readout.baddbmm_, force.mT, z, alpha=-1e-9))
    totals = {"products": 0.0, "activations": 0.0}
    for kind, operation in cases.values():
        totals[kind] += seconds_per_call(operation, repeats, rounds=3)
    return totals


def native_kernels() -> str:
    """Which compiled kernels this process built (the vector width and -march), or why not."""
    kernels = fcn_kernels()
    if kernels is None:
        return f"none ({build_failure()})"
    target = os.environ.get("SGDNOISE_NATIVE_ARCH", "native")
    return f"{kernels.lanes} samples per vector (-march={target})"


def summary(values: list[float]) -> tuple[float, float]:
    return float(np.min(values)), float(np.median(values))


def print_table(title: str, seconds: dict[str, list[float]], reference: str) -> None:
    """ms per replica-step (min, median) and the speed-up of ``reference`` over each."""
    print(f"\n{title}")
    print(f"| engine | ms per replica-step, min | median | {reference} is faster by (median) |")
    print("|---|---|---|---|")
    reference_median = summary(seconds[reference])[1]
    for name, values in seconds.items():
        low, median = summary(values)
        print(f"| {name} | {1e3 * low:.3f} | {1e3 * median:.3f} | "
              f"{median / reference_median:.2f}x |")  # fmt: skip


def measure_fcn(args: argparse.Namespace) -> None:
    config = paper_point(1.0, 2.0**-8)
    problem, dynamics, initial = engines(config)
    ids = list(range(REPLICAS))
    batched = {
        "native": "batched native (compiled, replica by replica)",
        "hand_written": "batched hand-written (torch)",
        "generic": "batched generic",
    }
    batched = {engine: name for engine, name in batched.items() if engine in dynamics}
    reference = next(iter(batched.values()))
    seconds: dict[str, list[float]] = {name: [] for name in batched.values()}
    seconds.update({"loop": [], "loop generic": [], "eager (plain torch, one model)": []})
    late: dict[str, list[float]] = {name: [] for name in batched.values()}
    matmuls: dict[str, list[float]] = {}
    late_state = dynamics["hand_written"].init({k: v[ids] for k, v in initial.items()}, ids)
    moved = []
    for _ in range(args.late_start):
        late_state, info = dynamics["hand_written"].step(late_state)
        moved.append(info.moved.float().mean().item())
    everyone = torch.ones(REPLICAS, dtype=torch.bool)
    for _ in range(args.rounds):  # interleaved, so load from other jobs hits all alike
        for engine, name in batched.items():
            seconds[name].append(
                seconds_per_step(dynamics[engine], initial, ids, args.steps) / REPLICAS
            )
            late_seconds = timed_steps(dynamics[engine], late_state.subset(everyone), args.steps)
            late[name].append(late_seconds / REPLICAS)
        hand_written, generic = dynamics["hand_written"], dynamics["generic"]
        seconds["loop"].append(loop_seconds_per_step(hand_written, initial, args.steps))
        seconds["loop generic"].append(loop_seconds_per_step(generic, initial, args.steps))
        seconds["eager (plain torch, one model)"].append(
            eager_seconds_per_step(config, problem, args.steps)
        )
        for name, rate in matmul_gflops(20).items():
            matmuls.setdefault(name, []).append(rate)

    print(
        f"FC-5L GELU h=128, B=16, P=1024 MNIST parity per replica, {REPLICAS} replicas, "
        f"float32, {args.threads} thread(s), {'CPU' if args.cpu_time else 'wall'} time, "
        f"{args.rounds} rounds of {args.steps} steps; load average {os.getloadavg()}; "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')} (numpy); native "
        f"kernels: {native_kernels()}"
    )
    print_table("From initialisation (5 warm-up steps; full backward):", seconds, reference)
    print_table(
        f"From step {args.late_start} of the same 16 replicas (the fraction of replicas whose "
        f"batch moved them, averaged over the steps before: {np.mean(moved):.2f}):",
        late,
        reference,
    )
    flops = fcn_flops_per_replica_step(config, 784)
    batched_low, batched_median = summary(seconds[reference])
    print(
        f"\n{reference} from initialisation: {flops / 1e6:.2f} MFLOP per replica-step "
        f"(forward + full backward) = {flops / batched_low / 1e9:.1f} GFLOP/s (min time), "
        f"{flops / batched_median / 1e9:.1f} GFLOP/s (median). Same-process matmuls (GFLOP/s, "
        "max and median over rounds):"
    )
    for name, rates in matmuls.items():
        print(f"  {name}: {np.max(rates):.1f}, {np.median(rates):.1f}")
    floor = step_floor_seconds(config, 50)
    floor_total = sum(floor.values())
    print(
        f"\nFloor of the hand-written step on torch's kernels (its operations each timed alone, "
        f"hot in cache, best of 3 x 50): products {1e3 * floor['products'] / REPLICAS:.3f} + "
        f"activations {1e3 * floor['activations'] / REPLICAS:.3f} = "
        f"{1e3 * floor_total / REPLICAS:.3f} ms per replica-step "
        f"({flops * REPLICAS / floor['products'] / 1e9:.1f} GFLOP/s in the products); "
        f"{reference} (min) is {batched_low * REPLICAS / floor_total:.2f}x this floor."
    )


def measure_cnn(args: argparse.Namespace) -> None:
    """The generic engine on the MNAS CNN: as it runs (one replica per vmapped call on the
    CPU, models.networks.replicas_per_call) and with all 16 replicas in one vmapped call,
    for the training step and for the evaluation of the replicas' training outputs."""
    model = {"kind": "cnn", "width": args.cnn_width, "activation": "gelu"}
    config = paper_point(1.0, 2.0**-8, model=model)
    problem, dynamics, initial = engines(config)
    generic = dynamics["generic"]
    network = make_network(config.model, tuple(problem.train.x.shape[2:]))
    ids = list(range(REPLICAS))
    stacked, replica_ids = {k: v[ids] for k, v in initial.items()}, torch.tensor(ids)
    all_in_one_call = patch.object(networks, "replicas_per_call", lambda network, device: None)
    seconds: dict[str, list[float]] = {
        "batched generic": [],
        "batched generic, all replicas in one vmapped call": [],
        "loop generic": [],
        "eager": [],
    }
    evaluation: dict[str, list[float]] = {"one replica per call": [], "all in one call": []}

    def evaluation_seconds() -> float:
        start = clock()
        problem.train.outputs(network, stacked, replica_ids, EVALUATION_BATCH // REPLICAS)
        return clock() - start

    for _ in range(args.rounds):
        seconds["batched generic"].append(
            seconds_per_step(generic, initial, ids, args.cnn_steps) / REPLICAS
        )
        evaluation["one replica per call"].append(evaluation_seconds())
        with all_in_one_call:
            seconds["batched generic, all replicas in one vmapped call"].append(
                seconds_per_step(generic, initial, ids, args.cnn_steps) / REPLICAS
            )
            evaluation["all in one call"].append(evaluation_seconds())
        seconds["loop generic"].append(loop_seconds_per_step(generic, initial, 4 * args.cnn_steps))
        seconds["eager"].append(eager_seconds_per_step(config, problem, args.cnn_steps))
    print_table(
        f"MNAS CNN h={args.cnn_width} GELU, B=16, MNIST 1x28x28, {REPLICAS} replicas, "
        f"{args.rounds} rounds of {args.cnn_steps} steps (generic engine only):",
        seconds,
        "batched generic",
    )
    print(
        f"Outputs of the {REPLICAS} replicas on their {problem.train.count} training samples, "
        "s (min, median): "
        + ", ".join(f"{name} {np.min(v):.2f}, {np.median(v):.2f}" for name, v in evaluation.items())
    )


def measure_cell(args: argparse.Namespace) -> None:
    cell = paper_point(args.cell_alpha, 2.0**args.cell_log2_temperature)
    start, cpu_start = time.perf_counter(), time.process_time()
    run = train_network_point(cell)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    statuses = [str(s) for s in run["replica_status"].values]
    steps = run["steps_taken"].values
    print(
        f"\ncell alpha={args.cell_alpha:g}, T=2^{args.cell_log2_temperature:g} "
        f"(lr={cell.optimizer.lr:g}), {REPLICAS} replicas, P_test={cell.data.P_test}: "
        f"{wall:.1f} s wall, {cpu:.1f} s CPU; steps to zero loss: median "
        f"{np.median(steps):.0f}, max {steps.max()}; statuses "
        f"{ {s: statuses.count(s) for s in sorted(set(statuses))} }; "
        f"{1e3 * cpu / steps.sum():.3f} ms CPU per replica-step taken (records and checks "
        f"included); test error {float(run['test_error'].isel(record=-1).mean()):.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=100, help="timed steps per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--late-start", type=int, default=1000, help="step of the late timing")
    parser.add_argument("--cnn-width", type=int, default=32)
    parser.add_argument("--cnn-steps", type=int, default=3)
    parser.add_argument("--no-cnn", action="store_true", help="skip the CNN")
    parser.add_argument("--cell-alpha", type=float, default=1.0)
    parser.add_argument("--cell-log2-temperature", type=float, default=-8.0)
    parser.add_argument("--no-cell", action="store_true", help="skip the phase-diagram cell")
    parser.add_argument("--cpu-time", action="store_true", help="time steps in CPU seconds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global clock
    clock = CLOCK["cpu" if args.cpu_time else "wall"]
    measure_fcn(args)
    if not args.no_cnn:
        measure_cnn(args)
    if not args.no_cell:
        measure_cell(args)


if __name__ == "__main__":
    main()
