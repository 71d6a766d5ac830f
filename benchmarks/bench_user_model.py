"""A user's module (model.kind torch): batched replicas vs a loop, and the response's cost.

The module is the small CNN of the worked example (workflow/studies/fashion_cnn.py,
channels 4: 2202 parameters) on 10-class Fashion-MNIST (P = 512, cross-entropy, ridge),
minibatch SGD with batch size B, float32. Measured side by side in one process, with the
process's CPU clock (one torch thread: insensitive to other jobs on the other core):

- batched: one step of R replicas together (dynamics.user_model: vmapped forward, one
  autograd backward);
- loop: the same module, one replica at a time, as a plain torch training step
  (forward, loss.backward(), torch.optim.SGD), R times;
- response: one replayed step with M tangents (the step plus M Hessian-vector products
  by forward-over-reverse differentiation), reported per tangent in units of a training
  step: (replay step - training step) / (M x training step).

    python benchmarks/bench_user_model.py [--replicas 8] [--batch 16] [--steps 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from sgdnoise.config import resolve_point
from sgdnoise.models.user import initial_user_parameters
from sgdnoise.stages.train_user_model import user_model_setup

FACTORY = "workflow/studies/fashion_cnn.py"


def point(replicas: int, batch: int):
    return resolve_point(
        {
            "model": {
                "kind": "torch",
                "factory": f"{FACTORY}:small_cnn",
                "constraint": "ridge",
                "ridge": 0.1,
            },
            "loss": {"kind": "cross_entropy"},
            "data": {"kind": "arrays", "factory": f"{FACTORY}:fashion_mnist", "P": 512},
            "optimizer": {"kind": "minibatch_sgd", "lr": 0.1, "batch_size": batch},
            "run": {"replicas": replicas, "dtype": "float32"},
        }
    )


def cpu_seconds(function, steps: int) -> float:
    """CPU seconds per call of ``function`` (after one warm-up call)."""
    function()
    started = time.process_time()
    for _ in range(steps):
        function()
    return (time.process_time() - started) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replicas", type=int, default=8)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = point(args.replicas, args.batch)
    device, dtype, _, module, loss, train, _, dynamics = user_model_setup(config, None)
    initial = initial_user_parameters(config.model, config.run, device, dtype)
    state = dynamics.initial_state(initial, list(range(args.replicas)))
    inputs, _ = dynamics.draw(state)
    size = sum(value[0].numel() for value in initial.values())

    models = [copy.deepcopy(module) for _ in range(args.replicas)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1, weight_decay=0.1) for m in models]
    x, y = train.batch(state.replica_ids, inputs.selection.indices)

    def loop_step() -> None:
        for r, (model, optimizer) in enumerate(zip(models, optimizers, strict=True)):
            optimizer.zero_grad()
            outputs = model(x[r])
            torch.nn.functional.cross_entropy(outputs, y[r].long()).backward()
            optimizer.step()

    def batched_step() -> None:
        dynamics.update(state, inputs)

    def replay_step(count: int):
        tangents = torch.randn(args.replicas, count, size, dtype=dtype)

        def step() -> None:
            dynamics.update(state, inputs)
            dynamics.push_tangents(state, inputs, tangents, tangents)

        return step

    rows = {"batched": [], "loop": [], "replay M=1": [], "replay M=3": []}
    for _ in range(args.rounds):
        rows["batched"].append(cpu_seconds(batched_step, args.steps))
        rows["loop"].append(cpu_seconds(loop_step, args.steps))
        rows["replay M=1"].append(cpu_seconds(replay_step(1), args.steps))
        rows["replay M=3"].append(cpu_seconds(replay_step(3), args.steps))
    best = {name: min(values) for name, values in rows.items()}
    print(
        f"small CNN ({size} parameters), R = {args.replicas}, B = {args.batch}, float32, "
        "one thread, CPU ms per step (min over rounds):"
    )
    for name, value in best.items():
        print(
            f"  {name:12s} {1e3 * value:8.2f} ms   ({1e3 * value / args.replicas:.3f} per replica)"
        )
    print(f"  batched vs loop: {best['loop'] / best['batched']:.2f}x")
    for count in (1, 3):
        extra = (best[f"replay M={count}"] - best["batched"]) / (count * best["batched"])
        print(f"  response, M = {count}: {extra:.2f} training steps per tangent per step")


if __name__ == "__main__":
    main()
