"""Forward-mode tangents through one step: the exact linear response (docs/physics.md A4).

The update of a step with its random inputs fixed is a map (w, H) -> w'. A field H
switched on at t_w along a probe direction zeta is followed exactly by the tangent
(dw, zeta): dw(t_w) = 0 and, every later step, dw' = J_w dw + J_H zeta, the
Jacobian-vector product of the SAME update (same selection, same Langevin noise, the
sphere's multiplier included).

Two implementations of the same derivative: ``jvp_reference`` differentiates
``Dynamics.update`` with torch.func.jvp (the definition), ``step_with_tangents`` uses the
step's own linearisation (``Dynamics.linearize``: two matrix products per tangent, all
tangents of a replica at once). The tests require them to agree to rounding; the runner
uses the second, measured ~10x faster than jvp in eager mode on CPU.
"""

from __future__ import annotations

import torch
from torch.func import jvp

from sgdnoise.dynamics.perceptron import Dynamics, PerceptronState, StepInputs


def step_with_tangents(
    dynamics: Dynamics,
    state: PerceptronState,
    inputs: StepInputs,
    weight_tangents: torch.Tensor,
    field_tangents: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """New weights (R, N) and pushed-forward tangents (R, M, N) of one step.

    ``weight_tangents`` dw and ``field_tangents`` zeta have shape (R, M, N): M tangents
    per replica; a tangent whose field is not yet switched on carries zeta = 0.
    """
    new_weights, _, push = dynamics.linearize(state.weights, inputs, state)
    return new_weights, push(weight_tangents, field_tangents)


def jvp_reference(
    dynamics: Dynamics,
    state: PerceptronState,
    inputs: StepInputs,
    weight_tangent: torch.Tensor,
    field_tangent: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """New weights and ONE pushed tangent (R, N), by torch.func.jvp of the update."""

    def update(weights: torch.Tensor, field: torch.Tensor) -> torch.Tensor:
        return dynamics.update(weights, field, inputs, state)[0]

    field = torch.zeros_like(state.weights)
    return jvp(update, (state.weights, field), (weight_tangent, field_tangent))
