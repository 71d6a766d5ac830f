"""The in-memory form of a data set, shared by every task."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """Training and test samples of one task, labels y = +-1.

    Attributes:
        x_train: inputs, shape (P, *input_shape); perceptron tasks have input_shape (N,).
        y_train: labels +-1, shape (P,).
        x_test, y_test: held-out samples (zero rows where the task has no teacher).
        teacher: the direction that generates the labels where there is one
            (Gaussian-mixture centre v with |v|^2 = N; e_1 for depleted_sign), else None.
        description: provenance of the samples (source files, standardisation).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    teacher: np.ndarray | None = None
    description: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def has_test(self) -> bool:
        return self.x_test.shape[0] > 0
