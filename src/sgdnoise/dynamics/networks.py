"""Minibatch SGD of the alpha-trick networks (PHYSICS.md B1-B2), replicas batched.

Replica r at step k (time t = lr k), with w0 its initial parameters:

    batch  = B distinct training samples (Floyd's algorithm, stream (seed, r, k))
    h_mu   = y_mu (f(w, x_mu) - f(w0, x_mu))          stability; margin kappa = 1/alpha
    L_B(w) = (1/B) sum_{mu in batch} v(h_mu)           v(h) = (kappa - h) theta(kappa - h)
    w'     = w - lr grad_w L_B(w)

With the hinge, v(h) = (1/alpha) max(0, 1 - y F) for the predictor F = alpha (f - f0):
the paper's loss. Its gradient is -y grad f(w, x) / B per violating sample (h < kappa),
independent of alpha; alpha only sets the margin. The temperature is
T = lr / (h B) (h the width). A step whose batch holds no violating sample leaves w
unchanged (``StepInfo.moved`` is False): this is what makes the zero-loss stopping time
exact (stages.recording.stopping_time).

The step is split as in jax-md: ``draw`` makes the step's random input (the batch
indices, from counter-based per-replica streams keyed by (seed, replica id, step));
``update`` is the pure map w -> w' given them, vmapped over the replica axis of the
stacked parameters with ``torch.func.vmap(randomness="error")`` over
``torch.func.functional_call``; ``step = update o draw``. Replica r therefore follows
the same trajectory alone or among others, in any order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from torch.func import grad, vmap

from sgdnoise.dynamics.selection import MinibatchSelection, Selection
from sgdnoise.models.losses import MarginLoss
from sgdnoise.models.networks import network_function

Parameters = dict[str, Tensor]


@dataclass(frozen=True)
class Samples:
    """Labelled samples as device tensors, shared by the replicas or one draw each.

    x: inputs, (n, *input_shape) shared, or (R_total, n, *input_shape) per replica
        (row = global replica id).
    y: labels +-1, (n,) or (R_total, n), in the dtype of the inputs.
    """

    x: Tensor
    y: Tensor
    per_replica: bool

    @property
    def count(self) -> int:
        return self.y.shape[-1]

    def batch(self, replica_ids: Tensor, indices: Tensor) -> tuple[Tensor, Tensor]:
        """Inputs (R, B, *input_shape) and labels (R, B) of the samples ``indices`` (R, B)."""
        if self.per_replica:
            rows = replica_ids.unsqueeze(-1)
            return self.x[rows, indices], self.y[rows, indices]
        return self.x[indices], self.y[indices]


@dataclass(frozen=True)
class NetworkProblem:
    """The training problem: the training samples and v(h) at margin kappa = 1/alpha."""

    train: Samples
    loss: MarginLoss


@dataclass(frozen=True)
class NetworkState:
    """The replicas still training.

    parameters: stacked parameters w, replica axis first, (R, *shape) per name.
    initial: the initial parameters w0 of the same replicas (f0 = f(w0, x)).
    replica_ids: (R,) global replica indices (which random streams and data they own).
    step: number of steps taken.
    """

    parameters: Parameters
    initial: Parameters
    replica_ids: Tensor
    step: int

    def subset(self, keep: Tensor) -> NetworkState:
        """The state restricted to the replicas where ``keep`` (R,) is True."""
        return replace(
            self,
            parameters={name: value[keep] for name, value in self.parameters.items()},
            initial={name: value[keep] for name, value in self.initial.items()},
            replica_ids=self.replica_ids[keep],
        )


@dataclass(frozen=True)
class StepInfo:
    """By-products of a step, per replica, at the parameters BEFORE the update.

    batch_loss: mean of v(h) over the batch (dimensionless).
    moved: a batch sample had v'(h) != 0, so the update changed the parameters.
    finite: every batch stability was finite (False flags a divergence).
    """

    batch_loss: Tensor
    moved: Tensor
    finite: Tensor


@dataclass(frozen=True)
class NetworkDynamics:
    """A simulator as a bundle of functions over NetworkState (see module docstring)."""

    init: Callable[[Mapping[str, Tensor], Tensor | list[int]], NetworkState]
    draw: Callable[[NetworkState], Selection]
    update: Callable[[NetworkState, Selection], tuple[Parameters, StepInfo]]
    step: Callable[[NetworkState], tuple[NetworkState, StepInfo]]


def make_network_dynamics(
    network: nn.Module, problem: NetworkProblem, optimizer: dict, seed: int, device: torch.device
) -> NetworkDynamics:
    """The (init, draw, update, step) functions of minibatch SGD for a resolved optimizer.

    Args:
        network: the module whose ``functional_call`` gives f(w, x), shape (batch,).
        problem: training data and loss.
        optimizer: resolved ``optimizer:`` section of kind minibatch_sgd (lr, batch_size).
        seed: run.seed; the batch of replica r at step k depends on (seed, r, k) only.
        device: where the selection streams live (that of the data and parameters).
    """
    if optimizer["kind"] != "minibatch_sgd":
        raise ValueError(f"networks train with minibatch_sgd, not {optimizer['kind']!r}")
    lr = optimizer["lr"]
    selection_process = MinibatchSelection(
        optimizer["batch_size"], problem.train.count, seed, device
    )
    f = network_function(network)
    loss = problem.loss

    def batch_loss(
        parameters: Parameters, initial: Parameters, x: Tensor, y: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Mean batch loss of one replica and its stabilities h (B,) as auxiliary output."""
        stability = y * (f(parameters, x) - f(initial, x))
        return loss.value(stability).mean(), stability

    gradient_of_replicas = vmap(grad(batch_loss, has_aux=True), randomness="error")

    def init(parameters: Mapping[str, Tensor], replica_ids: Tensor | list[int]) -> NetworkState:
        ids = torch.as_tensor(replica_ids, dtype=torch.long, device=device)
        parameters = {name: value.clone() for name, value in parameters.items()}
        initial = {name: value.clone() for name, value in parameters.items()}
        return NetworkState(parameters, initial, ids, 0)

    def draw(state: NetworkState) -> Selection:
        selection, _ = selection_process.draw(state.step, state.replica_ids.tolist(), None)
        return selection

    def update(state: NetworkState, selection: Selection) -> tuple[Parameters, StepInfo]:
        """w' = w - lr grad L_B(w) for every replica, the batch fixed by ``selection``."""
        x, y = problem.train.batch(state.replica_ids, selection.indices)
        gradients, stability = gradient_of_replicas(state.parameters, state.initial, x, y)
        parameters = {
            name: value - lr * gradients[name] for name, value in state.parameters.items()
        }
        info = StepInfo(
            batch_loss=loss.value(stability).mean(-1),
            moved=(loss.derivative(stability) != 0).any(-1),
            finite=torch.isfinite(stability).all(-1),
        )
        return parameters, info

    def step(state: NetworkState) -> tuple[NetworkState, StepInfo]:
        parameters, info = update(state, draw(state))
        return replace(state, parameters=parameters, step=state.step + 1), info

    return NetworkDynamics(init, draw, update, step)
