"""Data sets: synthetic tasks (docs/physics.md A1, B3), real images (B3), a user's arrays.

`make_dataset(data_config, replica)` is the one entry point: the same spec, seed and
replica always give identical samples. With ``per_replica: false`` every replica gets
the shared draw (replica is ignored).
"""

from __future__ import annotations

import numpy as np

from sgdnoise.config.point import DataConfig
from sgdnoise.data.dataset import Dataset
from sgdnoise.data.synthetic import depleted_sign, gaussian_mixture, random_patterns

IMAGE_TASKS = ("mnist_parity", "fashion_mnist_parity", "cifar_animals")


def data_rng(data_config: DataConfig, replica: int | None = None) -> np.random.Generator:
    """The generator of one draw: seeded by data.seed and, per replica, by the replica index."""
    entropy = [data_config.seed, 0x5D47A]
    if data_config.per_replica and replica is not None:
        entropy.append(replica + 1)
    return np.random.default_rng(entropy)


def make_dataset(data_config: DataConfig, replica: int | None = None) -> Dataset:
    """Build the data set a resolved ``data:`` section describes."""
    kind = data_config.kind
    rng = data_rng(data_config, replica)
    N, P, P_test = data_config.N, data_config.P, data_config.P_test
    if kind == "random_patterns":
        return random_patterns(N, P, rng)
    if kind == "gaussian_mixture":
        return gaussian_mixture(N, P, P_test, data_config.delta, rng)
    if kind == "depleted_sign":
        return depleted_sign(N, P, P_test, data_config.chi, rng)
    if kind in IMAGE_TASKS:
        from sgdnoise.data.images import image_dataset

        return image_dataset(kind, P, P_test, rng, data_config.path)
    if kind == "arrays":
        from sgdnoise.data.arrays import arrays_dataset

        return arrays_dataset(data_config, rng)
    raise ValueError(f"data.kind {kind!r} has no generator")


__all__ = ["Dataset", "IMAGE_TASKS", "make_dataset"]
