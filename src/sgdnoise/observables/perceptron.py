"""One-time observables of the perceptron: pure functions of the weights, per replica.

Conventions (PHYSICS.md A2, A7, B1, B4):
- train_loss: loss PER SAMPLE, (1/P) sum_mu v(h_mu); paper A's total loss is P times it.
- train_error: fraction of training samples misclassified, h_mu < -tolerance.
- violated_fraction: fraction with h_mu < kappa - tolerance (constraints not satisfied).
  The tolerance (run.error_tolerance) matters: at a square-hinge SAT solution about 0.3 P
  stabilities sit just below kappa (h ~ -1e-8 at kappa = 0).
- test_error: fraction of test samples with y F <= 0 (F = 0 counts as an error).
- signal u_par = u . e and noise |u_perp|^2 / (N - 1), u = w - w(0), e the unit teacher.
- weight_change: |w - w(0)| / |w(0)|.
"""

from __future__ import annotations

import torch

from sgdnoise.dynamics.perceptron import PerceptronProblem, stabilities_of


def margin_observables(
    problem: PerceptronProblem,
    weights: torch.Tensor,
    reference: torch.Tensor | None,
    replica_ids: torch.Tensor,
    tolerance: float,
) -> dict[str, torch.Tensor]:
    """train_loss, train_error and violated_fraction of each replica, shape (R,)."""
    h = stabilities_of(problem, weights, reference, replica_ids)
    return {
        "train_loss": problem.loss.value(h).mean(-1),
        "train_error": (h < -tolerance).double().mean(-1),
        "violated_fraction": (h < problem.loss.kappa - tolerance).double().mean(-1),
    }


def test_error(
    test_problem: PerceptronProblem,
    weights: torch.Tensor,
    reference: torch.Tensor | None,
    replica_ids: torch.Tensor,
) -> torch.Tensor:
    """Fraction of held-out samples with y F <= 0, shape (R,)."""
    h = stabilities_of(test_problem, weights, reference, replica_ids)
    return (h <= 0).double().mean(-1)


def teacher_decomposition(
    weights: torch.Tensor, initial_weights: torch.Tensor, teacher: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Signal u . e and noise |u_perp|^2 / (N - 1) of u = w - w(0) along the teacher e."""
    direction = teacher / teacher.norm()
    change = weights - initial_weights
    signal = change @ direction
    noise = ((change * change).sum(-1) - signal * signal) / (weights.shape[-1] - 1)
    return {"signal": signal, "noise": noise}


def weight_change(weights: torch.Tensor, initial_weights: torch.Tensor) -> torch.Tensor:
    """Relative weight change |w - w(0)| / |w(0)|, shape (R,)."""
    return (weights - initial_weights).norm(dim=-1) / initial_weights.norm(dim=-1)
