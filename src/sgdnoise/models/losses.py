"""Losses of one sample as functions of its stability h (docs/physics.md A2, B1).

square_hinge ("soft sphere"):  v(h) = (kappa - h)^2 theta(kappa - h) / 2
                               v'(h) = -(kappa - h) theta(kappa - h)
                               v''(h) = theta(kappa - h)
hinge:                         v(h) = (kappa - h) theta(kappa - h)
                               v'(h) = -theta(kappa - h),  v''(h) = 0 (almost everywhere)

theta(0) = 0: a sample exactly at the margin carries no loss and no force. The
alpha-trick loss of paper B, (1/alpha) max(0, 1 - alpha y (f - f0)), is the hinge at
margin kappa = 1/alpha on h = y (f - f0).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MarginLoss:
    """v(h) and v'(h) of a margin loss; ``kind`` is square_hinge or hinge, ``kappa`` the margin."""

    kind: str
    kappa: float

    def value(self, stability: torch.Tensor) -> torch.Tensor:
        """v(h), elementwise (dimensionless)."""
        gap = torch.relu(self.kappa - stability)
        return 0.5 * gap * gap if self.kind == "square_hinge" else gap

    def derivative(self, stability: torch.Tensor) -> torch.Tensor:
        """v'(h), elementwise: minus the force pushing h towards the margin."""
        gap = torch.relu(self.kappa - stability)
        return -gap if self.kind == "square_hinge" else -(gap > 0).to(stability.dtype)

    def curvature(self, stability: torch.Tensor) -> torch.Tensor:
        """v''(h), elementwise: theta(kappa - h) for the square hinge, 0 for the hinge."""
        if self.kind == "hinge":
            return torch.zeros_like(stability)
        return (self.kappa - stability > 0).to(stability.dtype)


@dataclass(frozen=True)
class OutputLoss:
    """The loss of one sample as a function of a model's output f and its label y.

    For model.kind torch (docs/design.md, "Your own model and data"):

    Outputs are (..., n) for a one-output model and (..., n, C) for C outputs, labels
    (..., n) (``models.user.module_function`` drops a trailing output axis of size 1).

    - hinge, square_hinge: v(h) of the stability h = y f (one output, labels +-1);
    - cross_entropy: -log softmax(f)_y (one output per class, labels 0..C-1);
    - mse: |f - t|^2 / 2, with t the one-hot vector of class y when f has one output per
      class, else t = y (one output, real targets).

    The classification error of a sample is sign(f) != y (margin losses: f = 0 counts as
    an error, as for the perceptron), argmax f != y (cross_entropy and class-index mse);
    a real-valued target has none (NaN).
    """

    kind: str
    kappa: float

    def value(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss per sample, shape labels.shape (dimensionless)."""
        if self.kind in ("hinge", "square_hinge"):
            return MarginLoss(self.kind, self.kappa).value(labels * outputs)
        if self.kind == "cross_entropy":
            log_probabilities = torch.log_softmax(outputs, dim=-1)
            return -log_probabilities.gather(-1, labels.long().unsqueeze(-1)).squeeze(-1)
        if outputs.dim() > labels.dim() and outputs.shape[-1] > 1:  # mse on class indices
            targets = torch.nn.functional.one_hot(labels.long(), outputs.shape[-1])
            return 0.5 * ((outputs - targets.to(outputs.dtype)) ** 2).sum(-1)
        return 0.5 * (outputs - labels) ** 2

    def errors(self, outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """1 where a sample is misclassified, else 0 (NaN for real-valued targets)."""
        if self.kind in ("hinge", "square_hinge"):
            return (labels * outputs <= 0).to(outputs.dtype)
        if outputs.dim() > labels.dim() and outputs.shape[-1] > 1:
            return (outputs.argmax(-1) != labels.long()).to(outputs.dtype)
        return torch.full_like(labels, float("nan"), dtype=outputs.dtype)
