"""Training dynamics of the perceptron (docs/physics.md A2-A3, B1), replicas batched.

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

from sgdnoise.config.point import OptimizerConfig
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
    """A simulator as a bundle of functions over PerceptronState (see module docstring).

    init(weights, replica_ids, reference) -> state; draw(state) -> (inputs, chain);
    update(weights, field, inputs, state) -> (weights', info);
    step(state, field) -> (state', info); linearize(weights, inputs, state) ->
    (weights', info, push) with push(dw, zeta) the forward tangent map of the step.
    """

    init: Callable[..., PerceptronState]
    draw: Callable[[PerceptronState], tuple[StepInputs, torch.Tensor | None]]
    update: Callable[..., tuple[torch.Tensor, StepInfo]]
    step: Callable[..., tuple[PerceptronState, StepInfo]]
    linearize: Callable[..., tuple[torch.Tensor, StepInfo, Callable]]


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


def sphere_multiplier(weights: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """c, the root near 1 of |c w + d|^2 = N (N = weights.shape[-1]), shape (R,).

    A negative discriminant (a step too large for the sphere) gives NaN, which the runner
    records as a divergence.
    """
    N = weights.shape[-1]
    wd = (weights * displacement).sum(-1)
    ww = (weights * weights).sum(-1)
    dd = (displacement * displacement).sum(-1)
    return (-wd + torch.sqrt(wd * wd - ww * (dd - N))) / ww


def project(patterns: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """Stabilities of vectors (R, ..., N) on the step's patterns: (R, ..., K).

    Per-replica patterns (R, K, N): one batched matrix product in the layout measured
    fastest (2x einsum's for one vector per replica, 2.2x for several; see
    benchmarks/RESULTS.md), the product memory-bound on the patterns.
    """
    if patterns.dim() == 2:
        return vectors @ patterns.T
    flat = vectors.reshape(vectors.shape[0], -1, vectors.shape[-1])  # (R, M, N)
    if flat.shape[1] == 1:
        stabilities = torch.bmm(flat, patterns.transpose(1, 2))
    else:
        stabilities = torch.bmm(patterns, flat.transpose(1, 2)).transpose(1, 2)
    return stabilities.reshape(*vectors.shape[:-1], patterns.shape[1])


def combine(patterns: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """sum_mu coefficient_mu pattern_mu: (R, ..., K) -> (R, ..., N)."""
    if patterns.dim() == 2:
        return coefficients @ patterns
    flat = coefficients.reshape(coefficients.shape[0], -1, coefficients.shape[-1])
    return torch.bmm(flat, patterns).reshape(*coefficients.shape[:-1], patterns.shape[-1])


def make_perceptron_dynamics(
    problem: PerceptronProblem, optimizer: OptimizerConfig, seed: int, device: torch.device
) -> Dynamics:
    """The (init, draw, update, step, linearize) functions of a resolved ``optimizer:``."""
    lr = optimizer.lr
    selection_process = make_selection(optimizer, problem.P, seed, device)
    dtype = problem.patterns.dtype
    langevin = optimizer.kind == "langevin"
    noise_amplitude = math.sqrt(2.0 * optimizer.temperature * lr) if langevin else 0.0
    noise_stream = (
        ReplicaStream(seed, "langevin", (problem.N,), "normal", dtype, device) if langevin else None
    )
    sphere = problem.constraint == "sphere"
    multiplier = sphere and problem.sphere_update == "multiplier"

    def init(weights, replica_ids, reference=None) -> PerceptronState:
        ids = torch.as_tensor(replica_ids, dtype=torch.long, device=device)
        return PerceptronState(weights, reference, None, ids, 0)

    def draw(state: PerceptronState) -> tuple[StepInputs, torch.Tensor | None]:
        ids = state.replica_ids.tolist()
        selection, chain = selection_process.draw(state.step, ids, state.selection)
        noise = noise_stream.draw(state.step, ids) * noise_amplitude if langevin else None
        return StepInputs(selection, noise), chain

    def step_patterns(replica_ids: torch.Tensor, selection: Selection) -> torch.Tensor:
        """Patterns a step touches: (P, N) shared, (R, P, N) per replica, (R, B, N) minibatch."""
        patterns = problem.patterns_of(replica_ids)
        if selection.indices is None:
            return patterns
        if patterns.dim() == 2:
            return patterns[selection.indices]
        rows = torch.arange(patterns.shape[0], device=device).unsqueeze(-1)
        return patterns[rows, selection.indices]

    def forward(weights, field, inputs: StepInputs, state: PerceptronState):
        """New weights, step info and the intermediates the linearisation needs."""
        selection = inputs.selection
        patterns = step_patterns(state.replica_ids, selection)
        shifted = weights if state.reference is None else weights - state.reference
        h = project(patterns, shifted)
        coefficient = problem.loss.derivative(h)
        if selection.mask is not None:
            coefficient = coefficient * selection.mask
        gradient = selection.scale * combine(patterns, coefficient)
        if problem.ridge:
            gradient = gradient + problem.ridge * weights
        if field is not None:
            gradient = gradient - field
        displacement = -lr * gradient
        if inputs.noise is not None:
            displacement = displacement + inputs.noise
        if not sphere:
            new_weights = weights + displacement
        elif multiplier:
            new_weights = sphere_multiplier(weights, displacement).unsqueeze(-1) * weights
            new_weights = new_weights + displacement
        else:
            moved = weights + displacement
            new_weights = math.sqrt(problem.N) * moved / moved.norm(dim=-1, keepdim=True)
        loss = problem.loss.value(h).mean(-1) if selection.indices is None else None
        info = StepInfo(loss, (coefficient != 0).any(-1))
        return new_weights, info, (patterns, h, displacement)

    def update(weights, field, inputs: StepInputs, state: PerceptronState):
        """The map (w, H) -> w' of one step with its random inputs fixed."""
        new_weights, info, _ = forward(weights, field, inputs, state)
        return new_weights, info

    def linearize(weights, inputs: StepInputs, state: PerceptronState):
        """New weights, info, and push(dw, zeta) -> dw': the step's Jacobian-vector product.

        dw and zeta have shape (R, M, N) (M tangents per replica). Exact: the derivative
        of ``update`` at field 0 (checked against torch.func.jvp in the tests), computed
        with the same two matrix products per tangent as the step itself.
        """
        new_weights, info, (patterns, h, displacement) = forward(weights, None, inputs, state)
        curvature = problem.loss.curvature(h)
        if inputs.selection.mask is not None:
            curvature = curvature * inputs.selection.mask
        c = sphere_multiplier(weights, displacement) if multiplier else None

        def push(weight_tangents: torch.Tensor, field_tangents: torch.Tensor) -> torch.Tensor:
            response = curvature.unsqueeze(1) * project(patterns, weight_tangents)
            gradient = inputs.selection.scale * combine(patterns, response) - field_tangents
            if problem.ridge:
                gradient = gradient + problem.ridge * weight_tangents
            moved = -lr * gradient  # tangent of the displacement
            if not sphere:
                return weight_tangents + moved
            w, d = weights.unsqueeze(1), displacement.unsqueeze(1)
            if multiplier:
                k = c.view(-1, 1, 1)
                numerator = (
                    k * k * (w * weight_tangents).sum(-1, keepdim=True)
                    + k
                    * (
                        (weight_tangents * d).sum(-1, keepdim=True)
                        + (w * moved).sum(-1, keepdim=True)
                    )
                    + (d * moved).sum(-1, keepdim=True)
                )
                denominator = k * (w * w).sum(-1, keepdim=True) + (w * d).sum(-1, keepdim=True)
                return -(numerator / denominator) * w + k * weight_tangents + moved
            v, dv = w + d, weight_tangents + moved
            norm = v.norm(dim=-1, keepdim=True)
            radial = (v * dv).sum(-1, keepdim=True) / norm**2
            return math.sqrt(problem.N) * (dv - radial * v) / norm

        return new_weights, info, push

    def step(state: PerceptronState, field=None) -> tuple[PerceptronState, StepInfo]:
        inputs, chain = draw(state)
        new_weights, info = update(state.weights, field, inputs, state)
        return replace(state, weights=new_weights, selection=chain, step=state.step + 1), info

    return Dynamics(init, draw, update, step, linearize)
