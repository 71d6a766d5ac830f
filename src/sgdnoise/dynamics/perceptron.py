"""Training dynamics of the perceptron (PHYSICS.md A2-A3, B1), replicas batched.

One step, for every replica still training, with selection s^k and field H:

    h_mu  = (w - w0) . y_mu x_mu / sqrt(N)                 stabilities (w0 = 0 unless alpha-trick)
    g     = scale * sum_mu s_mu v'(h_mu) y_mu x_mu / sqrt(N)   scale = 1, 1/b (mean) or 1/B
    d     = -lr (g + lambda w - H) [+ sqrt(2 T lr) xi]      displacement (xi ~ N(0, I): langevin)
    w'    = w + d                                           constraint none / ridge
    w'    = c w + d, c the root near 1 of |w'|^2 = N        sphere, multiplier form (default)
    w'    = sqrt(N) (w + d) / |w + d|                       sphere, projection

Time is t = lr x steps. The step is split as in jax-md: ``draw`` makes the step's random
inputs (selection, Langevin noise) from counter-based per-replica streams; ``update`` is
the pure, differentiable map (w, H) -> w' given those inputs (the exact response
propagates tangents through it with torch.func.jvp); ``step = update o draw``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from sgdnoise.dynamics.random import ReplicaStream
from sgdnoise.dynamics.selection import Selection, make_selection
from sgdnoise.models.losses import MarginLoss


@dataclass(frozen=True)
class PerceptronProblem:
    """The training problem as device tensors.

    ``patterns`` holds y_mu x_mu / sqrt(N): shape (P, N) when the replicas share the
    data, (replicas, P, N) when each replica has its own draw (indexed by replica id).
    """

    patterns: torch.Tensor
    per_replica: bool
    loss: MarginLoss
    constraint: str
    ridge: float
    sphere_update: str

    @property
    def N(self) -> int:
        return self.patterns.shape[-1]

    @property
    def P(self) -> int:
        return self.patterns.shape[-2]

    def patterns_of(self, replica_ids: torch.Tensor) -> torch.Tensor:
        """Patterns seen by the given replicas: (P, N) shared or (R, P, N)."""
        if not self.per_replica:
            return self.patterns
        if replica_ids.numel() == self.patterns.shape[0]:
            return self.patterns
        return self.patterns[replica_ids]


@dataclass(frozen=True)
class PerceptronState:
    """The state of the replicas still training.

    weights (R, N); reference w0 (R, N) or None (alpha-trick only); selection the
    Markov chain's last selection (R, P) or None; replica_ids (R,) global replica
    indices (which random streams they own); step the number of steps taken.
    """

    weights: torch.Tensor
    reference: torch.Tensor | None
    selection: torch.Tensor | None
    replica_ids: torch.Tensor
    step: int

    def subset(self, keep: torch.Tensor) -> PerceptronState:
        """The state restricted to the replicas where ``keep`` is True."""

        def take(tensor: torch.Tensor | None) -> torch.Tensor | None:
            return None if tensor is None else tensor[keep]

        return replace(
            self,
            weights=self.weights[keep],
            reference=take(self.reference),
            selection=take(self.selection),
            replica_ids=self.replica_ids[keep],
        )


@dataclass(frozen=True)
class StepInputs:
    """Random inputs of one step: the selection and the Langevin noise (or None)."""

    selection: Selection
    noise: torch.Tensor | None


@dataclass(frozen=True)
class StepInfo:
    """By-products of a step, per replica, at the weights BEFORE the update.

    loss: training loss per sample (mean over all P samples of v(h)) when the step
    computed every stability (full-batch and Bernoulli/Markov selection), else None.
    moved: whether the update changed the weights' loss force (a selected sample
    had v'(h) != 0).
    """

    loss: torch.Tensor | None
    moved: torch.Tensor


@dataclass(frozen=True)
class Dynamics:
    """A simulator as a bundle of functions over PerceptronState (see module docstring)."""

    init: Callable[..., PerceptronState]
    draw: Callable[[PerceptronState], tuple[StepInputs, torch.Tensor | None]]
    update: Callable[..., tuple[torch.Tensor, StepInfo]]
    step: Callable[..., tuple[PerceptronState, StepInfo]]


def stabilities(problem: PerceptronProblem, state: PerceptronState) -> torch.Tensor:
    """h_mu = (w - w0) . y_mu x_mu / sqrt(N) for every replica and sample, shape (R, P)."""
    return stabilities_of(problem, state.weights, state.reference, state.replica_ids)


def stabilities_of(
    problem: PerceptronProblem,
    weights: torch.Tensor,
    reference: torch.Tensor | None,
    replica_ids: torch.Tensor,
) -> torch.Tensor:
    """Stabilities of explicit weights (see `stabilities`), shape (R, P)."""
    displacement = weights if reference is None else weights - reference
    patterns = problem.patterns_of(replica_ids)
    if patterns.dim() == 2:
        return displacement @ patterns.T
    return torch.bmm(patterns, displacement.unsqueeze(-1)).squeeze(-1)


def sphere_multiplier_step(weights: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """w' = c w + d with c the root near 1 of |c w + d|^2 = N (N = weights.shape[-1]).

    A negative discriminant (a step too large for the sphere) gives NaN, which the runner
    records as a divergence.
    """
    N = weights.shape[-1]
    wd = (weights * displacement).sum(-1)
    ww = (weights * weights).sum(-1)
    dd = (displacement * displacement).sum(-1)
    c = (-wd + torch.sqrt(wd * wd - ww * (dd - N))) / ww
    return c.unsqueeze(-1) * weights + displacement


def make_perceptron_dynamics(
    problem: PerceptronProblem, optimizer: dict, seed: int, device: torch.device
) -> Dynamics:
    """The (init, draw, update, step) functions of a resolved ``optimizer:`` section."""
    lr = optimizer["lr"]
    selection_process = make_selection(optimizer, problem.P, seed, device)
    dtype = problem.patterns.dtype
    langevin = optimizer["kind"] == "langevin"
    noise_amplitude = math.sqrt(2.0 * optimizer["temperature"] * lr) if langevin else 0.0
    noise_stream = (
        ReplicaStream(seed, "langevin", (problem.N,), "normal", dtype, device) if langevin else None
    )

    def init(weights, replica_ids, reference=None) -> PerceptronState:
        ids = torch.as_tensor(replica_ids, dtype=torch.long, device=device)
        return PerceptronState(weights, reference, None, ids, 0)

    def draw(state: PerceptronState) -> tuple[StepInputs, torch.Tensor | None]:
        ids = state.replica_ids.tolist()
        selection, chain = selection_process.draw(state.step, ids, state.selection)
        noise = noise_stream.draw(state.step, ids) * noise_amplitude if langevin else None
        return StepInputs(selection, noise), chain

    def force(weights, reference, replica_ids, selection: Selection):
        """Summed loss gradient g (R, N), the loss per sample (or None) and `moved`."""
        displacement = weights if reference is None else weights - reference
        if selection.indices is not None:
            patterns = problem.patterns_of(replica_ids)
            if patterns.dim() == 2:
                batch = patterns[selection.indices]
            else:
                rows = torch.arange(patterns.shape[0], device=device).unsqueeze(-1)
                batch = patterns[rows, selection.indices]
            h = torch.einsum("rbn,rn->rb", batch, displacement)
            coefficient = problem.loss.derivative(h)
            gradient = torch.einsum("rb,rbn->rn", coefficient, batch)
            return gradient, None, (coefficient != 0).any(-1)
        h = stabilities_of(problem, weights, reference, replica_ids)
        coefficient = problem.loss.derivative(h)
        if selection.mask is not None:
            coefficient = coefficient * selection.mask
        patterns = problem.patterns_of(replica_ids)
        if patterns.dim() == 2:
            gradient = coefficient @ patterns
        else:
            gradient = torch.bmm(coefficient.unsqueeze(1), patterns).squeeze(1)
        loss = problem.loss.value(h).mean(-1)
        return gradient, loss, (coefficient != 0).any(-1)

    def update(weights, field, inputs: StepInputs, state: PerceptronState):
        """The map (w, H) -> w' of one step with its random inputs fixed."""
        gradient, loss, moved = force(weights, state.reference, state.replica_ids, inputs.selection)
        gradient = inputs.selection.scale * gradient
        if problem.ridge:
            gradient = gradient + problem.ridge * weights
        if field is not None:
            gradient = gradient - field
        displacement = -lr * gradient
        if inputs.noise is not None:
            displacement = displacement + inputs.noise
        if problem.constraint != "sphere":
            new_weights = weights + displacement
        elif problem.sphere_update == "multiplier":
            new_weights = sphere_multiplier_step(weights, displacement)
        else:
            moved_weights = weights + displacement
            norm = moved_weights.norm(dim=-1, keepdim=True)
            new_weights = math.sqrt(problem.N) * moved_weights / norm
        return new_weights, StepInfo(loss, moved)

    def step(state: PerceptronState, field=None) -> tuple[PerceptronState, StepInfo]:
        inputs, chain = draw(state)
        new_weights, info = update(state.weights, field, inputs, state)
        return replace(state, weights=new_weights, selection=chain, step=state.step + 1), info

    return Dynamics(init, draw, update, step)
