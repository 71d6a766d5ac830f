"""Synthetic tasks of docs/physics.md A1 and B3: random patterns, Gaussian mixture, depleted sign.

Every generator is a pure function of its parameters and a numpy Generator, so the
same spec and seed always give the same bytes.
"""

from __future__ import annotations

import numpy as np

from sgdnoise.data.dataset import Dataset


def random_patterns(N: int, P: int, rng: np.random.Generator) -> Dataset:
    """The storage problem: x_mu ~ N(0, I_N), y_mu = +-1 uniformly, no teacher, no test set."""
    x = rng.standard_normal((P, N))
    y = rng.choice(np.array([-1.0, 1.0]), size=P)
    empty = np.zeros((0, N))
    return Dataset(x, y, empty, np.zeros(0), None, {"task": "random_patterns"})


def gaussian_mixture(
    N: int, P: int, P_test: int, delta: float, rng: np.random.Generator
) -> Dataset:
    """Two Gaussian clouds: x = y v / sqrt(N) + sqrt(Delta) z, centre v with |v|^2 = N."""
    centre = rng.standard_normal(N)
    centre *= np.sqrt(N) / np.linalg.norm(centre)

    def draw(count: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.choice(np.array([-1.0, 1.0]), size=count)
        z = rng.standard_normal((count, N))
        return y[:, None] * centre[None, :] / np.sqrt(N) + np.sqrt(delta) * z, y

    x_train, y_train = draw(P)
    x_test, y_test = draw(P_test)
    return Dataset(x_train, y_train, x_test, y_test, centre, {"task": "gaussian_mixture"})


def depleted_coordinate(count: int, chi: float, rng: np.random.Generator) -> np.ndarray:
    """Samples of x_1 with density ~ |x_1|^chi exp(-x_1^2 / 2).

    x_1 = s sqrt(2 G), s = +-1, G ~ Gamma((chi + 1) / 2, 1): the change of variables
    g = x^2 / 2 maps the density to g^((chi - 1)/2) e^-g, a Gamma law.
    """
    sign = rng.choice(np.array([-1.0, 1.0]), size=count)
    return sign * np.sqrt(2.0 * rng.gamma((chi + 1.0) / 2.0, 1.0, size=count))


def depleted_sign(N: int, P: int, P_test: int, chi: float, rng: np.random.Generator) -> Dataset:
    """Paper B's perceptron task: y = sign(x_1), x_1 depleted near the boundary, rest N(0, 1)."""

    def draw(count: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((count, N))
        x[:, 0] = depleted_coordinate(count, chi, rng)
        return x, np.where(x[:, 0] >= 0, 1.0, -1.0)

    x_train, y_train = draw(P)
    x_test, y_test = draw(P_test)
    teacher = np.zeros(N)
    teacher[0] = 1.0
    return Dataset(x_train, y_train, x_test, y_test, teacher, {"task": "depleted_sign", "chi": chi})
