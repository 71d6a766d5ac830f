"""The training dynamics of a user's module (model.kind torch), replicas batched.

Replica r holds parameters w (every trainable tensor of the module, stacked with the
replica axis first). With l_mu(w) = loss(f(w, x_mu), y_mu) the loss of sample mu
(models.losses.OutputLoss) and s_mu^k the selection of step k (dynamics.selection: all
samples for gd and langevin, Bernoulli(b) for sgd, the persistent chain for
persistent_sgd, B distinct samples for minibatch_sgd), one step is

    g   = scale sum_mu s_mu^k grad_w l_mu(w) + lambda w - H      scale: 1, 1/b or 1/B
    w' = w - lr g + sqrt(2 T lr) xi                              xi ~ N(0, 1): langevin

the perceptron's convention (docs/physics.md A3): the loss is SUMMED over the selected
samples (minibatch SGD averages over its batch, T = lr / B); lambda is the ridge, H an
external field (the response measurement) and time is t = lr x steps. Train with the
mean loss over P by dividing lr by P.

All randomness is counter-based per replica (dynamics.random: selection and Langevin
noise keyed by (seed, replica id, step)), so a replica follows the same trajectory alone
or among others, in any order, and a resumed run continues the same one.

The replicas' outputs come from one ``torch.func.vmap`` over ``functional_call`` of the
module; reverse-mode autograd of the SUM of the replicas' losses gives each replica its
own gradient (the replicas share no parameter). ``push_tangents`` pushes tangents
through the same step: dw' = dw - lr (Hess dw + lambda dw - zeta), with the
Hessian-vector products by forward-over-reverse differentiation (``torch.func.jvp`` of
``torch.func.grad``): the exact linear response of the trajectory to a field H switched
on along zeta (the gradient gains -H, docs/physics.md A4).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from torch.func import grad, jvp, vmap

from sgdnoise.config.point import OptimizerConfig
from sgdnoise.dynamics.networks import Samples
from sgdnoise.dynamics.random import ReplicaStream
from sgdnoise.dynamics.selection import Selection, make_selection
from sgdnoise.models.losses import OutputLoss
from sgdnoise.models.user import module_function

Parameters = dict[str, Tensor]


@dataclass(frozen=True)
class UserModelState:
    """The replicas still training: stacked parameters (R first), the persistent-SGD
    chain (or None), their global replica ids and the steps taken."""

    parameters: Parameters
    selection: Tensor | None
    replica_ids: Tensor
    step: int

    def subset(self, keep: Tensor) -> UserModelState:
        return replace(
            self,
            parameters={name: value[keep] for name, value in self.parameters.items()},
            selection=None if self.selection is None else self.selection[keep],
            replica_ids=self.replica_ids[keep],
        )


@dataclass(frozen=True)
class StepInputs:
    """The random inputs of one step: the selection and the Langevin noise (scaled), or None."""

    selection: Selection
    noise: Parameters | None


@dataclass(frozen=True)
class StepReport:
    """What a step saw, per replica, at the parameters BEFORE it.

    full_loss: mean l_mu over every training sample when the step evaluated them all
    (gd, langevin, sgd, persistent_sgd), else None; moved: the update changed w;
    finite: the losses the step evaluated were finite.
    """

    full_loss: Tensor | None
    moved: Tensor
    finite: Tensor


class UserModelDynamics:
    """draw, update, step and tangent_step of one resolved optimizer (module docstring)."""

    def __init__(
        self,
        module: nn.Module,
        train: Samples,
        loss: OutputLoss,
        optimizer: OptimizerConfig,
        ridge: float,
        seed: int,
        device: torch.device,
    ) -> None:
        self.module, self.train, self.loss = module, train, loss
        self.lr, self.ridge = optimizer.lr, ridge
        self.selection_process = make_selection(optimizer, train.count, seed, device)
        self.function = module_function(module)
        self.shapes = {
            name: tuple(p.shape) for name, p in module.named_parameters() if p.requires_grad
        }
        self.noise_stream = None
        if optimizer.kind == "langevin":
            size = sum(math.prod(shape) for shape in self.shapes.values())
            dtype = train.x.dtype
            self.noise_stream = ReplicaStream(seed, "langevin", (size,), "normal", dtype, device)
            self.noise_amplitude = math.sqrt(2.0 * optimizer.temperature * optimizer.lr)

    def initial_state(self, parameters: Parameters, replica_ids: list[int]) -> UserModelState:
        ids = torch.as_tensor(replica_ids, dtype=torch.long, device=self.train.x.device)
        chain = self.selection_process.initial_state(replica_ids)
        copied = {name: value.clone() for name, value in parameters.items()}
        return UserModelState(copied, chain, ids, 0)

    def draw(self, state: UserModelState) -> tuple[StepInputs, Tensor | None]:
        """The step's random inputs, and the selection chain after it."""
        ids = state.replica_ids.tolist()
        selection, chain = self.selection_process.draw(state.step, ids, state.selection)
        noise = None
        if self.noise_stream is not None:
            flat = self.noise_stream.draw(state.step, ids) * self.noise_amplitude
            noise = self.unflatten(flat)
        return StepInputs(selection, noise), chain

    def unflatten(self, flat: Tensor) -> Parameters:
        """(R, n_parameters) -> the parameters' shapes, (R, *shape) each."""
        pieces = flat.split([math.prod(shape) for shape in self.shapes.values()], dim=-1)
        return {
            name: piece.reshape(flat.shape[0], *shape)
            for (name, shape), piece in zip(self.shapes.items(), pieces, strict=True)
        }

    def _selected(
        self, replica_ids: Tensor, selection: Selection
    ) -> tuple[Tensor, Tensor, bool, Tensor]:
        """Inputs and labels of the samples a step sees, whether they are per replica, and
        their weights in the step's loss (R, n): the selection s_mu times its scale."""
        if selection.indices is not None:
            x, y = self.train.batch(replica_ids, selection.indices)
            per_replica = True
        elif self.train.per_replica:
            x, y, per_replica = self.train.x[replica_ids], self.train.y[replica_ids], True
        else:
            x, y, per_replica = self.train.x, self.train.y, False
        if selection.mask is not None:
            return x, y, per_replica, selection.mask.to(x.dtype) * selection.scale
        shape = (len(replica_ids), y.shape[-1])
        return x, y, per_replica, torch.full(shape, selection.scale, dtype=x.dtype, device=x.device)

    def _step_losses(
        self, parameters: Parameters, replica_ids: Tensor, selection: Selection
    ) -> tuple[Tensor, Tensor]:
        """(per-sample losses l_mu (R, n) of the samples seen, their selection weights (R, n))."""
        x, y, per_replica, weights = self._selected(replica_ids, selection)
        outputs = vmap(self.function, in_dims=(0, 0 if per_replica else None))(parameters, x)
        losses = self.loss.value(outputs, y if per_replica else y.expand(outputs.shape[0], -1))
        return losses, weights

    def update(
        self, state: UserModelState, inputs: StepInputs, field: Parameters | None = None
    ) -> tuple[Parameters, StepReport]:
        """w' of every replica (new tensors) and the step's report."""
        leaves = {
            name: value.detach().requires_grad_(True) for name, value in state.parameters.items()
        }
        with torch.enable_grad():
            losses, weights = self._step_losses(leaves, state.replica_ids, inputs.selection)
            total = (weights * losses).sum()
            gradients = torch.autograd.grad(total, list(leaves.values()), allow_unused=True)
        losses = losses.detach()
        # a ridge or Langevin noise moves every replica; else a replica moved iff its gradient
        # is not zero (the hinge's exact zero-loss stop needs the last moving step)
        always_moves = bool(self.ridge) or inputs.noise is not None
        moved = torch.full((len(state.replica_ids),), always_moves, device=losses.device)
        new = {}
        for (name, value), gradient in zip(state.parameters.items(), gradients, strict=True):
            force = torch.zeros_like(value) if gradient is None else gradient
            if not always_moves:
                moved |= (force != 0).flatten(1).any(-1)
            if self.ridge:
                force = force + self.ridge * value
            if field is not None:
                force = force - field[name]
            step = -self.lr * force
            if inputs.noise is not None:
                step = step + inputs.noise[name]
            new[name] = value + step
        full = inputs.selection.indices is None
        report = StepReport(
            full_loss=losses.mean(-1) if full else None,
            moved=moved,
            finite=torch.isfinite(losses).all(-1),
        )
        return new, report

    def step(self, state: UserModelState) -> tuple[UserModelState, StepReport]:
        inputs, chain = self.draw(state)
        parameters, report = self.update(state, inputs)
        return UserModelState(parameters, chain, state.replica_ids, state.step + 1), report

    def push_tangents(
        self, state: UserModelState, inputs: StepInputs, tangents: Tensor, fields: Tensor
    ) -> Tensor:
        """dw' = dw - lr (Hess dw + lambda dw - zeta) through the step ``inputs`` makes.

        ``tangents`` dw and ``fields`` zeta (zero before the field is on) are flat, shape
        (R, M, n): M tangents per replica over the n trainable parameters. The step's
        Langevin noise and selection enter only through the Hessian's samples and weights.
        """
        replicas, count, size = tangents.shape
        pieces = self.unflatten(tangents.reshape(replicas * count, size))
        tangent_parameters = {
            name: value.reshape(replicas, count, *value.shape[1:]) for name, value in pieces.items()
        }
        products = self.hessian_products(state, inputs.selection, tangent_parameters)
        flat_products = torch.cat([value.flatten(2) for value in products.values()], dim=2)
        force = flat_products - fields
        if self.ridge:
            force = force + self.ridge * tangents
        return tangents - self.lr * force

    def hessian_products(
        self, state: UserModelState, selection: Selection, tangents: Parameters
    ) -> Parameters:
        """Hess_w L_step(w) dw for every replica and tangent (R, M, *shape per name).

        L_step is the step's selected, scaled loss (module docstring); one
        forward-over-reverse pass per tangent (jvp of grad), vmapped over the tangents,
        then over the replicas.
        """
        x, y, per_replica, weights = self._selected(state.replica_ids, selection)

        def replica_loss(parameters: Parameters, x_r: Tensor, y_r: Tensor, w_r: Tensor) -> Tensor:
            return (w_r * self.loss.value(self.function(parameters, x_r), y_r)).sum()

        gradient_of = grad(replica_loss)

        def products_of_replica(
            parameters: Parameters, x_r: Tensor, y_r: Tensor, w_r: Tensor, tangents_r: Parameters
        ) -> Parameters:
            def product(tangent: Parameters) -> Parameters:
                return jvp(lambda p: gradient_of(p, x_r, y_r, w_r), (parameters,), (tangent,))[1]

            return vmap(product)(tangents_r)

        data_dims = 0 if per_replica else None
        return vmap(products_of_replica, in_dims=(0, data_dims, data_dims, 0, 0))(
            state.parameters, x, y, weights, tangents
        )
