"""Minibatch SGD of the alpha-trick networks (docs/physics.md B1-B2), replicas batched.

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

f0 = f(w0, x_mu) is evaluated once by ``init`` on the whole training set
(``NetworkState.initial_outputs``) and gathered for each batch.

The step is split as in jax-md: ``draw`` makes the step's random input (the batch
indices, from counter-based per-replica streams keyed by (seed, replica id, step));
``update`` is the deterministic map w -> w' given them: one forward of all replicas,
``torch.func.vmap(randomness="error")`` over ``torch.func.functional_call`` on the
stacked parameters (replica axis first), then reverse-mode autograd; ``step = update o
draw``. Replica r therefore follows the same trajectory alone or among others, in any
order. ``update`` writes the new parameters into the state's own tensors (see there).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from torch.func import vmap

from sgdnoise.config.point import OptimizerConfig
from sgdnoise.dynamics.selection import MinibatchSelection, Selection
from sgdnoise.models.losses import MarginLoss
from sgdnoise.models.networks import network_function, replica_outputs

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
        if self.per_replica:  # one flat gather: faster than advanced indexing on (R, P, ...)
            indices = indices + self.count * replica_ids.unsqueeze(-1)
            x, y = self.x.flatten(0, 1), self.y.flatten()
        else:
            x, y = self.x, self.y
        flat = indices.flatten()
        batch_shape = (*indices.shape, *x.shape[1:])
        return x.index_select(0, flat).view(batch_shape), y.index_select(0, flat).view(
            indices.shape
        )

    def outputs(
        self,
        network: nn.Module,
        parameters: Mapping[str, Tensor],
        replica_ids: Tensor,
        chunk_size: int,
    ) -> Tensor:
        """f(w_r, x_mu) of every sample for the replicas ``replica_ids``, shape (R, n).

        ``parameters`` are stacked (R, *shape) in the order of ``replica_ids``. Samples
        are taken ``chunk_size`` at a time, without gradients: the same chunking and
        replicas always give the same numbers, bit for bit.
        """
        chunks = []
        with torch.no_grad():
            for start in range(0, self.count, chunk_size):
                stop = start + chunk_size
                x = self.x[replica_ids, start:stop] if self.per_replica else self.x[start:stop]
                chunks.append(replica_outputs(network, parameters, x, self.per_replica))
        return torch.cat(chunks, dim=-1)


@dataclass(frozen=True)
class NetworkProblem:
    """The training problem: the training samples and v(h) at margin kappa = 1/alpha."""

    train: Samples
    loss: MarginLoss


@dataclass(frozen=True)
class NetworkState:
    """The replicas still training.

    parameters: stacked parameters w, replica axis first, (R, *shape) per name.
    initial: the initial parameters w0 of the same replicas.
    initial_outputs: f0 = f(w0, x_mu) on the replicas' training samples, (R, P).
    replica_ids: (R,) global replica indices (which random streams and data they own).
    step: number of steps taken.
    """

    parameters: Parameters
    initial: Parameters
    initial_outputs: Tensor
    replica_ids: Tensor
    step: int

    def subset(self, keep: Tensor) -> NetworkState:
        """The state restricted to the replicas where ``keep`` (R,) is True."""
        return replace(
            self,
            parameters={name: value[keep] for name, value in self.parameters.items()},
            initial={name: value[keep] for name, value in self.initial.items()},
            initial_outputs=self.initial_outputs[keep],
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
    network: nn.Module,
    problem: NetworkProblem,
    optimizer: OptimizerConfig,
    seed: int,
    device: torch.device,
    chunk_size: int,
) -> NetworkDynamics:
    """The (init, draw, update, step) functions of minibatch SGD for a resolved optimizer.

    Args:
        network: the module whose ``functional_call`` gives f(w, x), shape (batch,).
        problem: training data and loss.
        optimizer: resolved ``optimizer:`` section of kind minibatch_sgd (lr, batch_size).
        seed: run.seed; the batch of replica r at step k depends on (seed, r, k) only.
        device: where the selection streams live (that of the data and parameters).
        chunk_size: training samples per forward call when ``init`` evaluates
            f0 = f(w0, x) on the whole training set (``Samples.outputs``).
    """
    if optimizer.kind != "minibatch_sgd":
        raise ValueError(f"networks train with minibatch_sgd, not {optimizer['kind']!r}")
    lr = optimizer.lr
    selection_process = MinibatchSelection(optimizer.batch_size, problem.train.count, seed, device)
    loss = problem.loss

    outputs_of_replicas = vmap(network_function(network), randomness="error")

    def gradients_and_stabilities(
        parameters: Parameters, x: Tensor, y: Tensor, initial_outputs: Tensor
    ) -> tuple[list[Tensor], Tensor]:
        """grad_w L_B of every replica and the batch stabilities h (R, B).

        The replicas' outputs come from one vmapped forward; reverse-mode autograd of the
        SUM of the replicas' batch losses then gives each replica its own gradient (the
        replicas share no parameter), with less overhead than vmap(grad(...)).
        """
        leaves = [value.detach().requires_grad_(True) for value in parameters.values()]
        with torch.enable_grad():
            outputs = outputs_of_replicas(dict(zip(parameters, leaves, strict=True)), x)
            stability = y * (outputs - initial_outputs)
            total = loss.value(stability).mean(-1).sum()
            gradients = torch.autograd.grad(total, leaves)
        return list(gradients), stability.detach()

    def init(parameters: Mapping[str, Tensor], replica_ids: Tensor | list[int]) -> NetworkState:
        """The state at w = w0 = ``parameters`` (copied), with f0 on the training set."""
        ids = torch.as_tensor(replica_ids, dtype=torch.long, device=device)
        initial = {name: value.clone() for name, value in parameters.items()}
        initial_outputs = problem.train.outputs(network, initial, ids, chunk_size)
        current = {name: value.clone() for name, value in parameters.items()}
        return NetworkState(current, initial, initial_outputs, ids, 0)

    def draw(state: NetworkState) -> Selection:
        selection, _ = selection_process.draw(state.step, state.replica_ids.tolist(), None)
        return selection

    def update(state: NetworkState, selection: Selection) -> tuple[Parameters, StepInfo]:
        """w' = w - lr grad L_B(w) for every replica, the batch fixed by ``selection``.

        The parameters of ``state`` are updated IN PLACE and returned: the state owns them
        (``init`` copies what it is given, ``subset`` copies rows). On the CPU, fresh
        parameter tensors every step cost more in page faults than the arithmetic.
        """
        x, y = problem.train.batch(state.replica_ids, selection.indices)
        initial_outputs = torch.gather(state.initial_outputs, 1, selection.indices)
        gradients, stability = gradients_and_stabilities(state.parameters, x, y, initial_outputs)
        for value, gradient in zip(state.parameters.values(), gradients, strict=True):
            value.add_(gradient, alpha=-lr)
        info = StepInfo(
            batch_loss=loss.value(stability).mean(-1),
            moved=(loss.derivative(stability) != 0).any(-1),
            finite=torch.isfinite(stability).all(-1),
        )
        return state.parameters, info

    def step(state: NetworkState) -> tuple[NetworkState, StepInfo]:
        parameters, info = update(state, draw(state))
        return replace(state, parameters=parameters, step=state.step + 1), info

    return NetworkDynamics(init, draw, update, step)
