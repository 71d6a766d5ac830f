"""Networks of docs/physics.md B2: shapes, unit activations, mean-field scale, vmap, alpha-trick."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.polynomial.hermite_e import hermegauss

from sgdnoise.config import ModelConfig
from sgdnoise.models import (
    NormalisedActivation,
    alpha_predictor,
    initial_parameters,
    make_network,
    network_function,
    networks,
    replica_outputs,
)
from sgdnoise.models.networks import ScaledConv


def config(kind: str, width: int = 4, depth: int = 3, activation: str = "relu") -> ModelConfig:
    """A model section as make_network receives it (built directly: kinds the schema refuses
    reach make_network's own checks)."""
    return ModelConfig(
        kind=kind,
        factory=None,
        options={},
        constraint="none",
        sphere_update="multiplier",
        ridge=0.0,
        depth=depth,
        width=width,
        activation=activation,
        alpha=None,
    )


def generators(count: int, seed: int = 0) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed * 1000 + r) for r in range(count)]


@pytest.mark.parametrize(
    ("kind", "input_shape"),
    [("fcn", (1, 28, 28)), ("fcn", (10,)), ("cnn", (1, 28, 28)), ("cnn", (3, 32, 32)),
     ("perceptron", (3, 8, 8))],
)  # fmt: skip
def test_one_output_per_sample(kind: str, input_shape: tuple[int, ...]) -> None:
    network = make_network(config(kind, width=2), input_shape)
    out = network(torch.randn(5, *input_shape))
    assert out.shape == (5,) and torch.isfinite(out).all()


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_activation_has_unit_second_moment(activation: str) -> None:
    nodes, weights = hermegauss(200)  # E[g(z)] = sum w g(z_i) / sqrt(2 pi), z ~ N(0, 1)
    act = NormalisedActivation(activation)
    values = act(torch.from_numpy(nodes)).numpy()
    assert np.sum(weights * values**2) / math.sqrt(2 * math.pi) == pytest.approx(1.0, abs=1e-6)
    if activation == "gelu":  # closed form: E[(z Phi(z))^2] = 1/3 + 1/(2 pi sqrt(3))
        assert act.scale**-2 == pytest.approx(1 / 3 + 1 / (2 * math.pi * math.sqrt(3)), rel=1e-12)


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_activation_pullback_is_the_derivative_of_the_base(activation: str) -> None:
    """base_pullback(z, g) = g act'(z) (unscaled): autograd's, and the quadrature of
    E[act'(z)] for gelu (Phi(z) + z phi(z) has mean 1/2 + E[z phi(z)] = 1/2)."""
    act = NormalisedActivation(activation)
    z = torch.linspace(-4.0, 4.0, 81, dtype=torch.float64).requires_grad_(True)
    cotangent = torch.cos(3.0 * z.detach())
    (expected,) = torch.autograd.grad(act.base(z), z, cotangent)
    torch.testing.assert_close(act.base_pullback(z.detach(), cotangent), expected)
    nodes, weights = hermegauss(200)
    ones = torch.ones(len(nodes), dtype=torch.float64)
    slopes = act.base_pullback(torch.from_numpy(nodes), ones).numpy()
    mean_slope = np.sum(weights * slopes) / math.sqrt(2 * math.pi)
    assert mean_slope == pytest.approx(0.5, abs=1e-3 if activation == "relu" else 1e-10)


def test_fcn_output_at_init_is_of_order_one_over_sqrt_width() -> None:
    """Mean field: f = w . z_L / h, so E[f(w0, x)^2] = E[|z_L|^2 / h] / h = 1 / h.

    With sqrt(2) relu and |x|^2 = d the second moment of every layer is 1 in
    expectation over the weights at any width, so h E[f^2] = 1 exactly; measured
    over 1000 independent initialisations at h = 16 and h = 128.
    """
    x = torch.randn(1, 32, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    x *= math.sqrt(32) / x.norm()
    means, standard_errors = {}, {}
    for width in (16, 128):
        network = make_network(config("fcn", width=width, depth=3), (32,)).double()
        outputs = torch.cat(
            [replica_outputs(network, initial_parameters(network, generators(250, chunk)), x)
             for chunk in range(4)]
        )[:, 0]  # fmt: skip
        scaled_squares = width * outputs.pow(2)
        means[width] = scaled_squares.mean().item()
        standard_errors[width] = scaled_squares.std().item() / math.sqrt(outputs.numel())
        assert abs(means[width] - 1.0) < 4 * standard_errors[width], (width, means[width])
    # E[f^2] falls 8-fold from h = 16 to h = 128: the ratio of h E[f^2] is 1
    ratio_error = math.hypot(standard_errors[16], standard_errors[128])
    assert abs(means[16] / means[128] - 1.0) < 4 * ratio_error


@pytest.mark.parametrize("group", [None, 1, 2], ids=["all", "one", "two"])
@pytest.mark.parametrize("kind", ["fcn", "cnn", "perceptron"])
def test_vmap_over_replicas_equals_a_loop(
    kind: str, group: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All replicas in one vmapped call, or in groups (the last one short), equal a loop."""
    monkeypatch.setattr(networks, "replicas_per_call", lambda network, device: group)
    network = make_network(config(kind, width=2), (3, 12, 12)).double()
    stacked = initial_parameters(network, generators(3))
    x = torch.randn(4, 3, 12, 12, dtype=torch.float64)
    x_per_replica = torch.randn(3, 4, 3, 12, 12, dtype=torch.float64)
    f = network_function(network)
    shared = replica_outputs(network, stacked, x)
    separate = replica_outputs(network, stacked, x_per_replica, x_per_replica=True)
    for r in range(3):
        parameters = {name: value[r] for name, value in stacked.items()}
        torch.testing.assert_close(shared[r], f(parameters, x), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(
            separate[r], f(parameters, x_per_replica[r]), rtol=1e-12, atol=1e-12
        )


def test_convolutional_networks_take_one_replica_per_call_on_the_cpu() -> None:
    cnn = make_network(config("cnn", width=2), (3, 12, 12))
    fcn = make_network(config("fcn", width=2), (3, 12, 12))
    assert networks.replicas_per_call(cnn, torch.device("cpu")) == 1
    assert networks.replicas_per_call(cnn, torch.device("cuda")) is None
    assert networks.replicas_per_call(fcn, torch.device("cpu")) is None


def test_replica_initialisation_does_not_depend_on_the_ensemble() -> None:
    network = make_network(config("cnn", width=2), (1, 28, 28))
    three = initial_parameters(network, generators(3))
    alone = initial_parameters(network, [generators(3)[1]], dtype=torch.float64)
    for name, value in three.items():
        assert value.dtype == torch.float32 and value.shape[0] == 3
        torch.testing.assert_close(value[1], alone[name][0].float(), rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["fcn", "cnn"])
def test_alpha_predictor_is_exactly_zero_at_initialisation(kind: str) -> None:
    network = make_network(config(kind, width=2, activation="gelu"), (1, 28, 28))
    w0 = initial_parameters(network, generators(2))
    x = torch.randn(6, 1, 28, 28)
    predictor = alpha_predictor(network, alpha=1e4)
    at_init = torch.func.vmap(predictor, in_dims=(0, 0, None))(w0, w0, x)
    assert torch.equal(at_init, torch.zeros(2, 6))
    moved = {name: value + 1e-3 * torch.randn_like(value) for name, value in w0.items()}
    one = {name: value[0] for name, value in moved.items()}
    init = {name: value[0] for name, value in w0.items()}
    f = network_function(network)
    torch.testing.assert_close(predictor(one, init, x), 1e4 * (f(one, x) - f(init, x)))
    gradient = torch.func.grad(lambda w: predictor(w, init, x).sum())(one)
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in gradient.values())


def test_cnn_follows_the_mnas_layout() -> None:
    h = 2
    network = make_network(config("cnn", width=h), (3, 32, 32))
    shapes = {name: tuple(p.shape) for name, p in network.named_parameters()}
    assert shapes["stem.weight"] == (4 * h, 3, 5, 5)
    assert shapes["stem_depthwise.weight"] == (4 * h, 1, 5, 5)
    assert shapes["stem_pointwise.weight"] == (2 * h, 4 * h, 1, 1)
    block_in = [2 * h, h, h, 3 * h]
    block_out = [h, h, 3 * h, 3 * h]
    for index, block in enumerate(network.blocks):
        assert shapes[f"blocks.{index}.expand.weight"] == (
            3 * block_in[index],
            block_in[index],
            1,
            1,
        )
        assert shapes[f"blocks.{index}.depthwise.weight"] == (3 * block_in[index], 1, 5, 5)
        assert shapes[f"blocks.{index}.project.weight"] == (
            block_out[index],
            3 * block_in[index],
            1,
            1,
        )
        assert block.depthwise.stride == [2, 1, 2, 1][index]
        assert block.residual == (index in (1, 3))
    assert shapes["head.weight"] == (20 * h, 3 * h, 1, 1) and shapes["readout"] == (20 * h,)
    pooled = {}
    network.head.register_forward_hook(lambda module, inputs, out: pooled.update(head=out))
    with torch.no_grad():
        network.readout.fill_(1.0)
        out = network(torch.randn(2, 3, 32, 32))
    features = network.act(pooled["head"]).mean(dim=(-2, -1))  # (2, 20 h), 4 x 4 maps
    assert pooled["head"].shape[-2:] == (4, 4)
    torch.testing.assert_close(out, features.mean(dim=1))  # readout divided by 20 h


@pytest.mark.parametrize(("groups", "expected"), [(1, 5 * math.sqrt(6)), (6, 5.0)])
def test_conv_scaling(groups: int, expected: float) -> None:
    """Unit weights on unit inputs: a 5 x 5 conv from 6 channels gives 25 * 6 / (5 sqrt 6)
    in the interior, a depthwise one 25 / 5."""
    conv = ScaledConv(6, 6, 5, groups=groups)
    with torch.no_grad():
        conv.weight.fill_(1.0)
        out = conv(torch.ones(1, 6, 9, 9))
    assert out.shape == (1, 6, 9, 9)
    torch.testing.assert_close(out[..., 2:-2, 2:-2], torch.full((1, 6, 5, 5), expected))


def test_make_network_rejects_what_it_cannot_build() -> None:
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        make_network(config("cnn"), (784,))
    with pytest.raises(ValueError, match="not a network"):
        make_network(config("resnet"), (784,))
    with pytest.raises(ValueError, match="activation 'tanh' unknown"):
        make_network(config("fcn", activation="tanh"), (784,))
