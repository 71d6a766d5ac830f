"""A user's own model and data for sgdnoise (model.kind torch, data.kind arrays).

The study workflow/studies/fashion_cnn.yaml names these two functions; any module on the
Python path, or any .py file (a path relative to the working directory), works the same.

- ``small_cnn``: a small convolutional network for 28 x 28 grey images, 10 outputs
  (one per class, for the cross-entropy loss), smooth activations (the exact response
  differentiates the update twice).
- ``fashion_mnist``: the 10-class Fashion-MNIST images as arrays, in units of the pixel
  standard deviation: x_train / y_train the 60000 training images, x_test / y_test the
  10000 test images (installed by the README's commands, Debian package
  dataset-fashion-mnist).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from sgdnoise.data.images import load_pool, standardise


def small_cnn(channels: int = 4, classes: int = 10) -> nn.Module:
    """conv 5x5 stride 2 (channels), conv 5x5 stride 2 (2 channels), linear to ``classes``."""
    return nn.Sequential(
        nn.Conv2d(1, channels, kernel_size=5, stride=2),  # 28 -> 12
        nn.Tanh(),
        nn.Conv2d(channels, 2 * channels, kernel_size=5, stride=2),  # 12 -> 4
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(2 * channels * 4 * 4, classes),
    )


def fashion_mnist() -> dict[str, np.ndarray]:
    """Fashion-MNIST with its 10 class labels, split as distributed (60000 / 10000)."""
    pool = load_pool("fashion_mnist_parity", None)
    pixels = standardise("fashion_mnist_parity", pool.pixels)
    classes = pool.classes
    return {
        "x_train": pixels[:60000],
        "y_train": classes[:60000],
        "x_test": pixels[60000:],
        "y_test": classes[60000:],
    }
