"""Networks of docs/physics.md B2 in mean-field parametrisation, and the alpha-trick predictor.

Every weight is drawn from N(0, 1) and there are no biases; the scale of each layer
lives in the forward pass, so the parameters of all layers are O(1) numbers:

- ``fcn``: L hidden layers of width h, z_l = act(W_l z_{l-1} / sqrt(fan_in)), output
  f = w . z_L / h (mean field: divided by h, not sqrt(h)), so f(w0, x) = O(1 / sqrt(h)).
- ``cnn`` (MNAS-like, width h): stem conv(4h, 5x5, stride 2), depthwise 5x5,
  conv(2h, 1x1); inverted-residual blocks (out channels, kernel, stride) = (h, 5, 2),
  (h, 5, 1), (3h, 5, 2), (3h, 5, 1) (expand x3 by a 1x1 conv, depthwise k x k stride s,
  1x1 linear projection; (out + input) / sqrt(2) when the shapes match); conv(20h, 1x1);
  global average pool; readout w . g / (20h). A k x k conv from C_in channels is scaled
  by 1 / (k sqrt(C_in)), a depthwise one by 1 / k; padding k // 2.
- ``perceptron`` (the alpha-trick perceptron of paper B): f = w . x / sqrt(d).

The activation (relu or gelu) is normalised to unit second moment under N(0, 1):
sqrt(2) relu, and gelu / sqrt(E[gelu(z)^2]) with the moment computed by quadrature.

Networks map a batch of inputs (batch, *input_shape) to one real output per sample,
shape (batch,). They keep no state besides their parameters and use only functional
operations, so ``torch.func.functional_call`` + ``torch.func.vmap`` evaluate many
replicas with stacked parameters at once (``replica_outputs``).

The trained predictor is F(w, x) = alpha (f(w, x) - f(w0, x)) (docs/physics.md B1), given by
``alpha_predictor``; it is exactly 0 at w = w0.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from sgdnoise.config.point import ModelConfig

ACTIVATIONS = ("relu", "gelu")
NETWORK_KINDS = ("fcn", "cnn", "perceptron")
CNN_BLOCKS = ((1, 5, 2), (1, 5, 1), (3, 5, 2), (3, 5, 1))
"""Inverted-residual blocks of the cnn: (out channels / h, kernel size, stride)."""
EXPANSION = 3


@functools.cache
def gelu_second_moment() -> float:
    """E[gelu(z)^2] for z ~ N(0, 1), gelu(z) = z Phi(z), by adaptive quadrature."""
    # imported here: scipy.integrate costs 0.6 s at import, paid by every job otherwise
    from scipy.integrate import quad
    from scipy.special import ndtr

    def integrand(z: float) -> float:
        return (z * ndtr(z)) ** 2 * math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)

    value, _ = quad(integrand, -np.inf, np.inf, epsabs=1e-14, epsrel=1e-14)
    return value


def activation_scale(activation: str) -> float:
    """The factor c with E[(c act(z))^2] = 1 for z ~ N(0, 1)."""
    if activation == "relu":
        return math.sqrt(2.0)
    if activation == "gelu":
        return 1.0 / math.sqrt(gelu_second_moment())
    raise ValueError(f"activation {activation!r} unknown; choose one of {ACTIVATIONS}")


class NormalisedActivation(nn.Module):
    """act(z) scaled to unit second moment under z ~ N(0, 1) (gelu: the exact erf form)."""

    def __init__(self, activation: str) -> None:
        super().__init__()
        self.scale = activation_scale(activation)
        self.base = F.relu if activation == "relu" else F.gelu

    def forward(self, z: Tensor) -> Tensor:
        return self.scale * self.base(z)

    def base_pullback(self, z: Tensor, cotangent: Tensor) -> Tensor:
        """cotangent * d base(z) / dz elementwise, base = relu or gelu WITHOUT the scale.

        The chain rule through the activation for hand-written backward passes
        (dynamics.networks), with autograd's kernels (relu'(0) = 0, gelu' of the erf
        form); the caller multiplies by ``scale``.
        """
        if self.base is F.relu:
            return torch.ops.aten.threshold_backward(cotangent, z, 0)
        return torch.ops.aten.gelu_backward(cotangent, z)


def _weight(*shape: int) -> nn.Parameter:
    """A parameter of the given shape; its N(0, 1) values are drawn by ``make_network``."""
    return nn.Parameter(torch.empty(*shape))


class MeanFieldFCN(nn.Module):
    """Fully connected network of depth L and width h in mean-field scaling.

    z_0 = x flattened (dimension d); z_l = act(W_l z_{l-1} / sqrt(fan_in)) for
    l = 1..L; f = w . z_L / h.
    """

    def __init__(self, input_size: int, width: int, depth: int, activation: str) -> None:
        super().__init__()
        self.width = width
        self.act = NormalisedActivation(activation)
        fan_ins = [input_size] + [width] * (depth - 1)
        self.hidden = nn.ParameterList([_weight(width, fan_in) for fan_in in fan_ins])
        self.readout = _weight(width)

    @property
    def hidden_names(self) -> list[str]:
        """The parameter names of W_1 .. W_L (as in named_parameters and functional_call)."""
        return [f"hidden.{layer}" for layer in range(len(self.hidden))]

    def forward(self, x: Tensor) -> Tensor:
        z = x.flatten(1)
        for weight in self.hidden:
            z = self.act(F.linear(z, weight) / math.sqrt(weight.shape[1]))
        return z @ self.readout / self.width


class Perceptron(nn.Module):
    """f = w . x / sqrt(d) on flattened inputs of dimension d."""

    def __init__(self, input_size: int) -> None:
        super().__init__()
        self.weight = _weight(input_size)

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.weight / math.sqrt(self.weight.shape[0])


class ScaledConv(nn.Module):
    """2d convolution without bias, weight N(0, 1) divided by k sqrt(C_in / groups).

    Padding k // 2 keeps the spatial size at stride 1 (odd k). groups = C_in is the
    depthwise convolution, scaled by 1 / k.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1
    ) -> None:
        super().__init__()
        self.weight = _weight(out_channels, in_channels // groups, kernel, kernel)
        self.scale = 1.0 / (kernel * math.sqrt(in_channels // groups))
        self.stride = stride
        self.padding = kernel // 2
        self.groups = groups

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight * self.scale
        return F.conv2d(x, weight, None, self.stride, self.padding, 1, self.groups)


class InvertedResidual(nn.Module):
    """1x1 expansion (x3) + act, depthwise k x k stride s + act, 1x1 linear projection.

    When input and output shapes match (same channels, stride 1) the output is
    (projection + input) / sqrt(2), which keeps the second moment.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int, stride: int, act: nn.Module
    ) -> None:
        super().__init__()
        mid_channels = EXPANSION * in_channels
        self.act = act
        self.expand = ScaledConv(in_channels, mid_channels, 1)
        self.depthwise = ScaledConv(mid_channels, mid_channels, kernel, stride, mid_channels)
        self.project = ScaledConv(mid_channels, out_channels, 1)
        self.residual = in_channels == out_channels and stride == 1

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.act(self.depthwise(self.act(self.expand(x)))))
        if self.residual:
            return (out + x) / math.sqrt(2.0)
        return out


class MeanFieldCNN(nn.Module):
    """The MNAS-like convolutional network of docs/physics.md B2 with width h."""

    def __init__(self, in_channels: int, width: int, activation: str) -> None:
        super().__init__()
        act = NormalisedActivation(activation)
        self.act = act
        self.stem = ScaledConv(in_channels, 4 * width, 5, stride=2)
        self.stem_depthwise = ScaledConv(4 * width, 4 * width, 5, groups=4 * width)
        self.stem_pointwise = ScaledConv(4 * width, 2 * width, 1)
        blocks = []
        channels = 2 * width
        for multiple, kernel, stride in CNN_BLOCKS:
            blocks.append(InvertedResidual(channels, multiple * width, kernel, stride, act))
            channels = multiple * width
        self.blocks = nn.Sequential(*blocks)
        self.head = ScaledConv(channels, 20 * width, 1)
        self.readout = _weight(20 * width)

    def forward(self, x: Tensor) -> Tensor:
        z = self.act(self.stem(x))
        z = self.act(self.stem_depthwise(z))
        z = self.act(self.stem_pointwise(z))
        z = self.act(self.head(self.blocks(z)))
        pooled = z.mean(dim=(-2, -1))
        return pooled @ self.readout / self.readout.shape[0]


def draw_parameters(
    network: nn.Module,
    generator: torch.Generator,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    """Fresh N(0, 1) values for every parameter of ``network``, in named_parameters order.

    The values are drawn in float64 on the generator's device, then cast, so float32 and
    float64 runs with the same generator start from the same weights (up to rounding).
    dtype and device default to those of the network's parameters.
    """
    drawn = {}
    for name, parameter in network.named_parameters():
        value = torch.randn(
            parameter.shape, generator=generator, dtype=torch.float64, device=generator.device
        )
        drawn[name] = value.to(
            dtype=dtype or parameter.dtype,
            device=parameter.device if device is None else device,
        )
    return drawn


def initial_parameters(
    network: nn.Module,
    generators: Sequence[torch.Generator],
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> dict[str, Tensor]:
    """Stacked initial parameters of R replicas, shape (R, *parameter shape) each.

    Replica r is drawn from ``generators[r]`` alone (``draw_parameters``), so its
    initialisation does not depend on how many replicas are drawn together.
    """
    draws = [draw_parameters(network, generator, dtype, device) for generator in generators]
    return {name: torch.stack([draw[name] for draw in draws]) for name in draws[0]}


def make_network(
    model_config: ModelConfig,
    input_shape: tuple[int, ...],
    generator: torch.Generator | None = None,
) -> nn.Module:
    """The network a resolved ``model:`` section describes, weights N(0, 1) in float32.

    Args:
        model_config: with ``kind`` (fcn, cnn or perceptron), ``width`` (h), ``depth``
            (L, fcn) and ``activation`` (relu or gelu).
        input_shape: shape of one input; the cnn needs (C, H, W), the others flatten it.
        generator: source of the initial weights (``draw_parameters``); None uses a
            generator seeded with 0. Replicas usually take their weights from
            ``initial_parameters`` instead.

    Returns:
        A module mapping inputs (batch, *input_shape) to outputs f(w, x) of shape (batch,).
    """
    kind = model_config.kind
    input_size = math.prod(input_shape)
    if kind == "fcn":
        network: nn.Module = MeanFieldFCN(
            input_size, model_config.width, model_config.depth, model_config.activation
        )
    elif kind == "cnn":
        if len(input_shape) != 3:
            raise ValueError(f"the cnn needs inputs shaped (C, H, W), got {input_shape}")
        network = MeanFieldCNN(input_shape[0], model_config.width, model_config.activation)
    elif kind == "perceptron":
        network = Perceptron(input_size)
    else:
        raise ValueError(f"model.kind {kind!r} is not a network; choose one of {NETWORK_KINDS}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, value in draw_parameters(network, generator).items():
            network.get_parameter(name).copy_(value)
    return network


def network_function(network: nn.Module) -> Callable[[Mapping[str, Tensor], Tensor], Tensor]:
    """f(parameters, x): the output (batch,) of ``network`` with the given parameters."""

    def f(parameters: Mapping[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(network, dict(parameters), (x,))

    return f


def replicas_per_call(network: nn.Module, device: torch.device) -> int | None:
    """How many replicas one vmapped call of ``network`` holds: None for all of them.

    On the CPU a convolutional network takes one replica per call: vmap turns the
    replicas' convolutions (the depthwise ones included) into grouped convolutions,
    which oneDNN runs 1.3x (training step) to 3.6x (evaluation) slower than the same
    convolutions one replica at a time (MNAS h = 32, 16 replicas; benchmarks/RESULTS.md,
    "Networks").
    """
    convolutional = any(isinstance(module, ScaledConv) for module in network.modules())
    return 1 if convolutional and device.type == "cpu" else None


def replica_outputs(
    network: nn.Module,
    stacked_parameters: Mapping[str, Tensor],
    x: Tensor,
    x_per_replica: bool = False,
) -> Tensor:
    """Outputs f(w_r, x) of R replicas, shape (R, batch), differentiable in the parameters.

    x is shared, shape (batch, *input_shape), or with ``x_per_replica`` one batch per
    replica, shape (R, batch, *input_shape). The replicas go through vmap together, or
    in groups of ``replicas_per_call`` (the same numbers: replicas share nothing).
    """
    batched = vmap(
        network_function(network), in_dims=(0, 0 if x_per_replica else None), randomness="error"
    )
    count = next(iter(stacked_parameters.values())).shape[0]
    group = replicas_per_call(network, x.device) or count
    outputs = []
    for start in range(0, count, group):
        part = {name: value[start : start + group] for name, value in stacked_parameters.items()}
        outputs.append(batched(part, x[start : start + group] if x_per_replica else x))
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs)


def alpha_predictor(
    network: nn.Module, alpha: float
) -> Callable[[Mapping[str, Tensor], Mapping[str, Tensor], Tensor], Tensor]:
    """F(parameters, initial_parameters, x) = alpha (f(w, x) - f(w0, x)), shape (batch,).

    f(w0, x) is recomputed on the same x by the same code path, so F is exactly 0 at
    w = w0 on a deterministic backend (CPU; CUDA with deterministic algorithms). The
    function is pure: vmap it over stacked parameters, grad it with respect to w.
    """
    f = network_function(network)

    def predictor(
        parameters: Mapping[str, Tensor], initial: Mapping[str, Tensor], x: Tensor
    ) -> Tensor:
        return alpha * (f(parameters, x) - f(initial, x))

    return predictor
