"""One-time observables of the perceptron: pure functions of the weights, per replica.

Conventions (docs/physics.md A2, A7, B1, B4):
- train_loss: loss PER SAMPLE, (1/P) sum_mu v(h_mu); paper A's total loss is P times it.
- train_error: fraction of training samples misclassified, h_mu < -tolerance.
- violated_fraction: fraction with h_mu < kappa - tolerance (constraints not satisfied).
  The tolerance (run.error_tolerance) matters: at a square-hinge SAT solution about 0.3 P
  stabilities sit just below kappa (h ~ -1e-8 at kappa = 0).
- test_error: fraction of test samples with y F <= 0 (F = 0 counts as an error).
- signal u_par = u . e and noise |u_perp|^2 / (N - 1), u = w - w(0), e the unit teacher.
- weight_change: |w - w(0)| / |w(0)|.
A replica whose stabilities are not all finite (a diverged run) has NaN errors and
fractions, never 0: a NaN stability compares False with every threshold.
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
        "train_error": fraction_below(h, -tolerance),
        "violated_fraction": fraction_below(h, problem.loss.kappa - tolerance),
    }


def fraction_below(h: torch.Tensor, threshold: float, inclusive: bool = False) -> torch.Tensor:
    """Fraction of samples with h < threshold (h <= threshold if ``inclusive``), shape (R,).

    NaN for a replica with any non-finite stability (diverged), never a count of 0.
    """
    below = (h <= threshold) if inclusive else (h < threshold)
    fraction = below.double().mean(-1)
    return torch.where(torch.isfinite(h).all(-1), fraction, torch.nan)


def test_error(
    test_problem: PerceptronProblem,
    weights: torch.Tensor,
    reference: torch.Tensor | None,
    replica_ids: torch.Tensor,
) -> torch.Tensor:
    """Fraction of held-out samples with y F <= 0, shape (R,)."""
    h = stabilities_of(test_problem, weights, reference, replica_ids)
    return fraction_below(h, 0.0, inclusive=True)


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
