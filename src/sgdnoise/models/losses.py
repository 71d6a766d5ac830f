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
