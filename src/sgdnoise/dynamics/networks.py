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
``update`` is the deterministic map w -> w' given them; ``step = update o draw``.
Replica r therefore follows the same trajectory alone or among others, in any order
(up to floating-point rounding). ``update`` writes the new parameters into the state's
own tensors (see there). Three implementations of the update, the same map
(``make_network_dynamics(engine=...)``, recorded in each run as ``step_engine``):

- generic, any network: a forward of the replicas through ``torch.func.vmap(randomness=
  "error")`` over ``torch.func.functional_call`` on the stacked parameters (replica
  axis first; all replicas in one call, or a convolutional network's one at a time on
  the CPU: ``models.networks.replicas_per_call``), then reverse-mode autograd;
- ``FCNStep``, the MeanFieldFCN: forward and backward written out in batched matmuls,
  the update fused into them, the backward restricted to the samples (and replicas)
  that feel a force; several times faster on a CPU core than the generic step;
- ``NativeFCNStep``, the MeanFieldFCN on a CPU with AVX-512 or AVX2 in float32 (B, h
  and d multiples of 16): FCNStep's update compiled (``fcn_kernels.c``, built on first use
  by ``dynamics.native``), replica by replica with the batch in the vector lanes; ~1.8x
  FCNStep with AVX-512, ~1.4x with AVX2 (benchmarks/RESULTS.md, "Networks").

``engine="auto"`` (the default) takes the first of native, hand-written and generic that
runs here (``choose_engine``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from sgdnoise.config.point import OptimizerConfig
from sgdnoise.dynamics.native import LANES, FCNKernels, StepConfig, build_failure, fcn_kernels
from sgdnoise.dynamics.selection import MinibatchSelection, Selection
from sgdnoise.models.losses import MarginLoss
from sgdnoise.models.networks import MeanFieldFCN, replica_outputs

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

    def flat_inputs(self) -> Tensor:
        """The inputs as rows of d = prod(input_shape) values, (R_total * n or n, d): the
        samples of global replica r's own set are rows r n .. r n + n - 1."""
        return self.x.reshape(-1, math.prod(self.x.shape[2 if self.per_replica else 1 :]))

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
        replicas always give the same numbers, bit for bit. A MeanFieldFCN that fits
        the compiled kernels (``native_fcn_fits``) is evaluated by them instead, replica
        by replica, 16 samples at a time.
        """
        kernels = (
            fcn_kernels() if native_fcn_fits(network, LANES, self.x.device, self.x.dtype) else None
        )
        if kernels is not None:
            return kernels.outputs(
                native_config(network),
                [parameters[name].detach() for name in network.hidden_names],
                parameters["readout"].detach(),
                self.flat_inputs(),
                self.count,
                self.per_replica,
                replica_ids.contiguous(),
                0,
                self.count,
            )
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
    engine: str
    """The update's implementation: "native", "hand_written" or "generic"."""


class FCNStep:
    """The minibatch-SGD update of MeanFieldFCN replicas, forward and backward by hand.

    With u_0 = x (flattened), a_0 = x, s_l = 1 / sqrt(fan_in of layer l), the activation
    c act (act = relu or gelu, c its normalisation), per replica (B batch rows, replica
    axis first):

        z_l = s_l a_{l-1} W_l^T,  u_l = act(z_l),  a_l = c u_l  (l = 1..L),  f = a_L w / h
        g_mu = dL_B / df_mu = y_mu v'(h_mu) / B      (-y_mu / B where h_mu < kappa: hinge)
        dL/dw = a_L^T g / h,                     dL/du_L = c g w^T / h
        dL/dz_l = dL/du_l * act'(z_l),          dL/dW_l = s_l (dL/dz_l)^T a_{l-1},
        dL/du_{l-1} = c s_l (dL/dz_l) W_l

    the same gradient as autograd of the vmapped network (the generic path), in batched
    matmuls (``torch.bmm`` / ``baddbmm``) without autograd's bookkeeping. Only u_l is
    stored: the scalar factors c, s_l, 1/h multiply the (smaller) matmul outputs or,
    with -lr, enter the updates' ``alpha``, so the activations cost act and act' alone
    (``torch.bmm`` then ``mul_``: ``baddbmm`` with beta = 0 was slower). Each update
    W <- W - lr dL/dW is fused into the matmul that makes dL/dW (``baddbmm_`` on the
    parameter itself), after dL/du_{l-1} has used the old W_l.

    Only samples with g_mu != 0 enter the backward. On the CPU the batch rows are
    reordered so that these come first and the backward runs on the first n of them,
    n = the largest count among the replicas (rows past a replica's own count carry
    g = 0, which adds exact zeros): late in training, when few samples violate the
    margin, the backward costs a fraction of the forward, and a step where no replica
    has one stops after the forward. When at most half of the replicas have one, the
    backward runs on those alone, updating copies of their parameters that are then
    written back (``index_copy_``): the in-place update of all replicas would read and
    write every replica's weights, which late in training costs more than the
    arithmetic. On other devices the backward runs on all B rows of every replica (the
    counts would cost a host synchronisation per step).
    """

    def __init__(self, network: MeanFieldFCN, loss: MarginLoss, lr: float) -> None:
        self.loss, self.lr = loss, lr
        self.activation = network.act
        self.readout_scale = 1.0 / network.width
        self.hidden_names = network.hidden_names
        self.hidden_scales = [1.0 / math.sqrt(weight.shape[1]) for weight in network.hidden]

    def input_scale(self, layer: int) -> float:
        """The factor turning the stored input of ``layer`` (x, or u) into a_{layer - 1}."""
        return 1.0 if layer == 0 else self.activation.scale

    def __call__(
        self, parameters: Parameters, x: Tensor, y: Tensor, initial_outputs: Tensor
    ) -> Tensor:
        """Update ``parameters`` (stacked, R first) in place; return the stabilities h (R, B).

        x: the batch inputs (R, B, *input_shape); y: labels (R, B); initial_outputs:
        f0 = f(w0, x) of the batch (R, B).
        """
        weights = [parameters[name] for name in self.hidden_names]
        weights.append(parameters["readout"].unsqueeze(1))  # (R, 1, h): a view, updated in place
        batch_size = y.shape[-1]
        stored, outputs = self.forward(weights, x.flatten(2))
        stability = y * (outputs - initial_outputs)
        force = self.loss.derivative(stability).mul_(y).div_(batch_size)  # g = dL_B / df
        if x.device.type != "cpu":
            self.backward(weights, force, stored)
            return stability
        active = force != 0
        counts = active.sum(-1)
        rows = int(counts.max())
        if rows == 0:
            return stability
        movers = counts.nonzero().squeeze(-1)
        if 2 * len(movers) <= len(counts):  # update copies of the moving replicas' rows
            active, force = active[movers], force[movers]
            stored = [value[movers] for value in stored]
        if rows < batch_size:
            order = torch.argsort(~active, dim=-1, stable=True)[:, :rows]
            force = force.gather(1, order)
            replica_start = batch_size * torch.arange(len(order), device=order.device)
            flat_order = (order + replica_start.unsqueeze(-1)).flatten()
            stored = [_rows(value, flat_order) for value in stored]
        if len(force) == len(counts):
            self.backward(weights, force, stored)
        else:
            moving_weights = [weight[movers] for weight in weights]
            self.backward(moving_weights, force, stored)
            for weight, updated in zip(weights, moving_weights, strict=True):
                weight.index_copy_(0, movers, updated)
        return stability

    def forward(self, weights: list[Tensor], x: Tensor) -> tuple[list[Tensor], Tensor]:
        """f (R, B) of the flattened inputs x (R, B, d), and what the backward needs.

        The stored tensors are, in order, x, u_1 .. u_L (layer inputs and the readout's)
        then z_1 .. z_L, each (R, B, width of that layer).
        """
        layer_inputs, preactivations = [], []
        unscaled = x
        for layer, weight in enumerate(weights[:-1]):
            layer_inputs.append(unscaled)
            factor = self.hidden_scales[layer] * self.input_scale(layer)
            preactivation = torch.bmm(unscaled, weight.mT).mul_(factor)
            preactivations.append(preactivation)
            unscaled = self.activation.base(preactivation)
        layer_inputs.append(unscaled)
        alpha = self.activation.scale * self.readout_scale
        outputs = torch.bmm(weights[-1], unscaled.mT).mul_(alpha)
        return layer_inputs + preactivations, outputs.squeeze(1)

    def backward(self, weights: list[Tensor], force: Tensor, stored: list[Tensor]) -> None:
        """W <- W - lr dL/dW in place for ``weights`` (W_1 .. W_L, then w as (R, 1, h)).

        force: g (R, n) of the n batch rows ``stored`` holds (``forward``'s tensors, or
        the same rows of them).
        """
        depth, scale = len(weights) - 1, self.activation.scale
        layer_inputs, preactivations = stored[: depth + 1], stored[depth + 1 :]
        force = force.unsqueeze(-1)  # (R, n, 1)
        readout, alpha = weights[-1], scale * self.readout_scale
        cotangent = torch.bmm(force, readout).mul_(alpha)  # dL/du_L
        readout.baddbmm_(force.mT, layer_inputs[-1], alpha=-self.lr * alpha)
        for layer in reversed(range(depth)):
            weight, factor = weights[layer], self.hidden_scales[layer]
            preactivation_cotangent = self.activation.base_pullback(
                preactivations[layer], cotangent
            )
            if layer > 0:
                cotangent = torch.bmm(preactivation_cotangent, weight).mul_(factor * scale)
            weight.baddbmm_(
                preactivation_cotangent.mT,
                layer_inputs[layer],
                alpha=-self.lr * factor * self.input_scale(layer),
            )


class NativeFCNStep:
    """FCNStep's update, replica by replica in compiled code (dynamics.native), CPU float32.

    The same map as FCNStep, the same order of operations and scalar factors, in one C
    call per step (``fcn_kernels.c``): for each replica in turn the batch is gathered,
    passed forward, and, if a sample feels a force, passed backward with the fused
    updates, all on vectors of 16 (AVX-512) or 8 (AVX2) samples while that replica's
    weights stay in the core's
    cache. The C code's gelu (erf to 1.5e-7) and sums differ from torch's in the last
    bits: the trajectory is FCNStep's up to float32 rounding. Chosen by
    ``make_network_dynamics`` where ``native_fcn_fits`` and the kernels build.
    """

    def __init__(
        self, network: MeanFieldFCN, loss: MarginLoss, lr: float, kernels: FCNKernels
    ) -> None:
        self.kernels = kernels
        self.hidden_names = network.hidden_names
        self.config = native_config(network, loss, lr)

    def __call__(
        self,
        parameters: Parameters,
        samples: Samples,
        replica_ids: Tensor,
        indices: Tensor,
        initial_outputs: Tensor,
    ) -> StepInfo:
        """Update ``parameters`` (stacked, R first) in place; what the step saw before it.

        samples: the training set; replica_ids (R,): the replicas' global ids; indices
        (R, B): their batch; initial_outputs (R, P): their f0 on their training set.
        """
        self.config.batch = indices.shape[-1]
        batch_loss, moved, finite = self.kernels.step(
            self.config,
            [parameters[name] for name in self.hidden_names],
            parameters["readout"],
            samples.flat_inputs(),
            samples.y.reshape(-1),
            samples.per_replica,
            replica_ids,
            indices.contiguous(),
            initial_outputs,
        )
        return StepInfo(batch_loss, moved, finite)


def native_config(
    network: MeanFieldFCN, loss: MarginLoss | None = None, lr: float = 0.0
) -> StepConfig:
    """The C kernels' description of ``network`` (and of the step's loss and lr)."""
    input_size, width = network.hidden[0].shape[1], network.width
    return StepConfig(
        depth=len(network.hidden),
        batch=0,
        input_size=input_size,
        width=width,
        relu=int(network.act.base is torch.nn.functional.relu),
        square_hinge=int(loss is not None and loss.kind == "square_hinge"),
        kappa=0.0 if loss is None else loss.kappa,
        lr=lr,
        activation_scale=network.act.scale,
        input_scale=1.0 / math.sqrt(input_size),
        hidden_scale=1.0 / math.sqrt(width),
    )


ENGINES = ("auto", "native", "hand_written", "generic")


def choose_engine(
    network: nn.Module, batch_size: int, device: torch.device, dtype: torch.dtype
) -> str:
    """The fastest update that runs here: native, else hand_written (an FCN), else generic."""
    if native_fcn_fits(network, batch_size, device, dtype) and fcn_kernels() is not None:
        return "native"
    return "hand_written" if isinstance(network, MeanFieldFCN) else "generic"


def native_fcn_fits(
    network: nn.Module, batch_size: int, device: torch.device, dtype: torch.dtype
) -> bool:
    """Whether NativeFCNStep can run this MeanFieldFCN (before the kernels are built).

    CPU, float32, B a multiple of 16, the width and the input size multiples of 16.
    """
    if not isinstance(network, MeanFieldFCN) or device.type != "cpu" or dtype != torch.float32:
        return False
    sizes = (batch_size, network.width, network.hidden[0].shape[1])
    return all(size % LANES == 0 for size in sizes)


def _rows(value: Tensor, flat_order: Tensor) -> Tensor:
    """Rows ``flat_order`` (indices into the flattened (R * B) rows) of a (R, B, n) tensor.

    The result has shape (R, m, n) with m = len(flat_order) / R: row i of replica r is
    row flat_order[r m + i] of the flattened tensor (one contiguous copy per row).
    """
    rows = value.flatten(0, 1).index_select(0, flat_order)
    return rows.view(value.shape[0], -1, value.shape[-1])


def make_network_dynamics(
    network: nn.Module,
    problem: NetworkProblem,
    optimizer: OptimizerConfig,
    seed: int,
    device: torch.device,
    chunk_size: int,
    engine: str = "auto",
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
        engine: which implementation of the update (all follow the same trajectory up
            to floating-point rounding): "native" (NativeFCNStep, compiled kernels),
            "hand_written" (FCNStep, torch), "generic" (vmap + autograd, any network), or
            "auto": the first of these that runs here (``choose_engine``).
    """
    if optimizer.kind != "minibatch_sgd":
        raise ValueError(f"networks train with minibatch_sgd, not {optimizer.kind!r}")
    lr = optimizer.lr
    selection_process = MinibatchSelection(optimizer.batch_size, problem.train.count, seed, device)
    block_steps = selection_process.stream.block_steps
    loss = problem.loss

    def generic_step(
        parameters: Parameters, x: Tensor, y: Tensor, initial_outputs: Tensor
    ) -> Tensor:
        """w <- w - lr grad_w L_B in place for every replica; the batch stabilities h (R, B).

        The replicas' outputs come from a vmapped forward (``replica_outputs``: all
        replicas in one call, or a convolutional network's one at a time on the CPU);
        reverse-mode autograd of the SUM of the replicas' batch losses then gives each
        replica its own gradient (the replicas share no parameter), with less overhead
        than vmap(grad(...)).
        """
        leaves = [value.detach().requires_grad_(True) for value in parameters.values()]
        with torch.enable_grad():
            stacked = dict(zip(parameters, leaves, strict=True))
            outputs = replica_outputs(network, stacked, x, x_per_replica=True)
            stability = y * (outputs - initial_outputs)
            total = loss.value(stability).mean(-1).sum()
            gradients = torch.autograd.grad(total, leaves)
        for value, gradient in zip(parameters.values(), gradients, strict=True):
            value.add_(gradient, alpha=-lr)
        return stability.detach()

    dtype = problem.train.x.dtype
    if engine == "auto":
        engine = choose_engine(network, optimizer.batch_size, device, dtype)
    if engine == "native":
        if not native_fcn_fits(network, optimizer.batch_size, device, dtype):
            raise ValueError(
                "the native FCN step cannot run here: it needs a MeanFieldFCN on the CPU in "
                f"float32 with B, h and d multiples of {LANES}"
            )
        kernels = fcn_kernels()
        if kernels is None:
            raise ValueError(f"the native FCN step cannot run here: {build_failure()}")
        sgd_step = NativeFCNStep(network, loss, lr, kernels)
    elif engine == "hand_written" and isinstance(network, MeanFieldFCN):
        sgd_step = FCNStep(network, loss, lr)
    elif engine in ("generic", "hand_written"):
        engine, sgd_step = "generic", generic_step
    else:
        raise ValueError(f"engine {engine!r} unknown; choose one of {ENGINES}")

    def init(parameters: Mapping[str, Tensor], replica_ids: Tensor | list[int]) -> NetworkState:
        """The state at w = w0 = ``parameters`` (copied), with f0 on the training set."""
        ids = torch.as_tensor(replica_ids, dtype=torch.long, device=device)
        initial = {name: value.clone() for name, value in parameters.items()}
        initial_outputs = problem.train.outputs(network, initial, ids, chunk_size)
        current = {name: value.clone() for name, value in parameters.items()}
        return NetworkState(current, initial, initial_outputs, ids, 0)

    batches: dict[tuple[int, tuple[int, ...]], Tensor] = {}

    def draw(state: NetworkState) -> Selection:
        """The batch of every replica at step ``state.step``: MinibatchSelection.draw's.

        The batches of a whole block of steps of the selection stream are made at once
        (``draw_range``, the same numbers) and kept until a step leaves the block or the
        replicas change: Floyd's algorithm costs the same for one step as for a block.
        """
        block, offset = divmod(state.step, block_steps)
        key = (block, tuple(state.replica_ids.tolist()))
        if key not in batches:
            batches.clear()
            start = block * block_steps
            batches[key] = selection_process.draw_range(start, start + block_steps, list(key[1]))
        return Selection(indices=batches[key][:, offset], scale=1.0 / optimizer.batch_size)

    def update(state: NetworkState, selection: Selection) -> tuple[Parameters, StepInfo]:
        """w' = w - lr grad L_B(w) for every replica, the batch fixed by ``selection``.

        The parameters of ``state`` are updated IN PLACE and returned: the state owns them
        (``init`` copies what it is given, ``subset`` copies rows). On the CPU, fresh
        parameter tensors every step cost more in page faults than the arithmetic.
        """
        if isinstance(sgd_step, NativeFCNStep):  # gathers the batch and reports in C
            indices, initial = selection.indices, state.initial_outputs
            info = sgd_step(state.parameters, problem.train, state.replica_ids, indices, initial)
            return state.parameters, info
        initial_outputs = torch.gather(state.initial_outputs, 1, selection.indices)
        x, y = problem.train.batch(state.replica_ids, selection.indices)
        stability = sgd_step(state.parameters, x, y, initial_outputs)
        info = StepInfo(
            batch_loss=loss.value(stability).mean(-1),
            moved=(loss.derivative(stability) != 0).any(-1),
            finite=torch.isfinite(stability).all(-1),
        )
        return state.parameters, info

    def step(state: NetworkState) -> tuple[NetworkState, StepInfo]:
        parameters, info = update(state, draw(state))
        return replace(state, parameters=parameters, step=state.step + 1), info

    return NetworkDynamics(init, draw, update, step, engine)
