"""The compiled FCN step (dynamics.native, NativeFCNStep) against exact references.

The reference is the generic step (vmap + autograd) in float64 from the same w0 and
batches; the native step is float32 by construction, so it is held to float32's own
accuracy, measured here on torch's float32 hand-written step (FCNStep) beside it. Data:
8 x 8 Gaussian images (d = 64) labelled by a linear teacher, h = 32, B = 16 (the
kernels need multiples of 16).

The tests that run the kernels are skipped where they cannot be built (no C compiler,
neither AVX-512 nor AVX2: the skip says why); the choice of engine and the fallback are tested
everywhere.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call

from sgdnoise.data import Dataset
from sgdnoise.dynamics import native, networks
from sgdnoise.dynamics.networks import (
    NetworkProblem,
    choose_engine,
    make_network_dynamics,
    native_fcn_fits,
)
from sgdnoise.models.losses import MarginLoss
from sgdnoise.models.networks import make_network
from sgdnoise.stages.train_network import (
    initial_network_parameters,
    samples_of,
    train_network_point,
)
from tests.conftest import merge, network_point, teacher_images

P, P_TEST, SIDE, REPLICAS = 64, 96, 8, 4
KERNELS = native.fcn_kernels()
needs_kernels = pytest.mark.skipif(
    KERNELS is None, reason=f"native FCN kernels unavailable: {native.build_failure()}"
)
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(params=["native", "x86-64-v3"], ids=["widest", "avx2"])
def kernels(request, monkeypatch):
    """The kernels built for the CPU's widest vectors (-march=native), and for AVX2 (8
    samples per vector) even where AVX-512 is present: both builds are tested on an
    AVX-512 machine, the AVX2 one twice on an AVX2 machine."""
    monkeypatch.setenv("SGDNOISE_NATIVE_ARCH", request.param)
    native.fcn_kernels.cache_clear()
    built = native.fcn_kernels()
    if built is None:
        pytest.skip(f"native FCN kernels unavailable: {native.build_failure()}")
    assert built.lanes in ((8,) if request.param == "x86-64-v3" else (8, 16))
    yield built
    native.fcn_kernels.cache_clear()


def datasets() -> list[Dataset]:
    """One training draw of 1 x 8 x 8 teacher-labelled images per replica, one test set."""
    x_test, y_test = teacher_images(P_TEST, 1000, SIDE)
    train = [teacher_images(P, replica, SIDE) for replica in range(REPLICAS)]
    return [Dataset(*draw, x_test, y_test) for draw in train]


def point(**changes):
    """conftest's network point at depth 3, width 32, B = 16, float32, 4 replicas."""
    native_base = {
        "model": {"depth": 3, "width": 32},
        "data": {"P": P, "P_test": P_TEST},
        "optimizer": {"batch_size": 16, "temperature": 2.0**-5},
        "run": {"replicas": REPLICAS, "dtype": "float32", "record": {"count": 4}},
    }
    return network_point(**merge(native_base, changes))


def engine_of(config, engine: str, dtype: torch.dtype):
    """The dynamics of ``engine`` for ``config`` in ``dtype``, and w0 in that dtype."""
    device = torch.device("cpu")
    data = datasets() if config.data.per_replica else datasets()[:1]
    network = make_network(config.model, data[0].input_shape).to(dtype=dtype)
    loss = MarginLoss(config.loss.kind, config.loss.kappa)
    problem = NetworkProblem(samples_of(data, False, device, dtype), loss)
    dynamics = make_network_dynamics(
        network, problem, config.optimizer, config.run.seed, device, 64, engine
    )
    initial = initial_network_parameters(network, config.run, device, torch.float32)
    return dynamics, {name: value.to(dtype) for name, value in initial.items()}


def run(dynamics, initial, replica_ids, steps):
    """Parameters after ``steps`` steps, and the number of moving replicas at each step."""
    state = dynamics.init({k: v[replica_ids] for k, v in initial.items()}, replica_ids)
    moving = []
    for _ in range(steps):
        state, info = dynamics.step(state)
        moving.append(int(info.moved.sum()))
    return state.parameters, moving


def relative_error(parameters, reference, initial) -> float:
    """max over parameters of |w - w_ref| / |w_ref - w0| (norms over all replicas)."""
    return max(
        float((parameters[name].double() - value).norm() / (value - initial[name]).norm())
        for name, value in reference.items()
    )


@needs_kernels
@pytest.mark.parametrize(
    ("activation", "loss", "per_replica", "batch_size"),
    [("gelu", "hinge", True, 16), ("relu", "hinge", False, 16),
     ("gelu", "square_hinge", True, 32)],
)  # fmt: skip
def test_native_step_follows_the_float64_reference(
    kernels, activation, loss, per_replica, batch_size
):
    """200 steps from the same w0 and batches, through steps where every replica, some
    and none moved (the backward skipped per replica): the native float32 parameters are
    within 3x of torch's float32 step's distance to the float64 reference (relative to
    their displacement; measured: native 0.9e-6 .. 1.1e-6, torch 0.6e-6 .. 1.1e-6).
    Power, by injection: a 1e-4 relative error in lr, c, s_1 or s_l gives 7e-4 .. 2e-3
    (~300x the bound); a 1e-5 error in gelu' gives 2e-5 .. 1.2e-4."""
    config = point(
        model={"activation": activation},
        loss={"kind": loss},
        data={"per_replica": per_replica},
        optimizer={"batch_size": batch_size},
    )
    ids = list(range(REPLICAS))
    reference_dynamics, initial64 = engine_of(config, "generic", torch.float64)
    reference, moving = run(reference_dynamics, initial64, ids, 200)
    native_dynamics, initial32 = engine_of(config, "native", torch.float32)
    assert native_dynamics.engine == "native"
    native_parameters, native_moving = run(native_dynamics, initial32, ids, 200)
    torch_dynamics, _ = engine_of(config, "hand_written", torch.float32)
    torch_parameters, _ = run(torch_dynamics, initial32, ids, 200)
    if loss == "hinge":  # a square-hinge sample within rounding of its margin feels a
        assert native_moving == moving  # force of the size of that rounding
    assert {0, REPLICAS} <= set(moving) and set(moving) - {0, REPLICAS}, moving
    native_error = relative_error(native_parameters, reference, initial64)
    torch_error = relative_error(torch_parameters, reference, initial64)
    assert native_error < 2e-5 and native_error < 3 * max(torch_error, 1e-6), (
        native_error,
        torch_error,
    )


@needs_kernels
def test_native_replicas_alone_equal_replicas_together(kernels):
    """Bit for bit: the C code takes the replicas one after the other, each from its own
    data, weights and batch (a replica's batch depends on its global id only)."""
    config = point(optimizer={"temperature": 2.0**-4})
    dynamics, initial = engine_of(config, "native", torch.float32)
    together, _ = run(dynamics, initial, [0, 1, 2, 3], 60)
    for replica in (0, 3):
        alone, _ = run(dynamics, initial, [replica], 60)
        for name, value in together.items():
            assert torch.equal(alone[name][0], value[replica]), name
    reordered, _ = run(dynamics, initial, [3, 1], 60)
    for name, value in together.items():
        assert torch.equal(reordered[name], value[[3, 1]]), name
        assert not torch.equal(value, initial[name])


@needs_kernels
def test_artifact_names_the_engine_that_ran():
    """A float32 FCN point at B = 16 runs native, and its run artifact says so; at B = 8
    it runs torch's hand-written step (the kernels need multiples of 16)."""
    for batch_size, engine in ((16, "native"), (8, "hand_written")):
        config = point(optimizer={"batch_size": batch_size}, run={"max_steps": 64})
        artifact = train_network_point(config, datasets())
        assert artifact.attrs["step_engine"] == engine


def test_engine_choice_and_fallback(monkeypatch, tmp_path):
    """auto takes native only where it fits (CPU, float32, B, h, d multiples of 16) and
    the kernels build; without a compiler, or with SGDNOISE_NATIVE=0, the kernels are
    None with the reason, and the step is torch's; asking for native then is refused."""
    config = point()
    network = make_network(config.model, (1, SIDE, SIDE))
    cpu = torch.device("cpu")
    assert native_fcn_fits(network, 16, cpu, torch.float32)
    assert not native_fcn_fits(network, 8, cpu, torch.float32)
    assert not native_fcn_fits(network, 16, cpu, torch.float64)
    assert not native_fcn_fits(make_network(config.model, (1, 6, 6)), 16, cpu, torch.float32)
    monkeypatch.setenv("SGDNOISE_CACHE", str(tmp_path))
    for variable, value, reason in (
        ("SGDNOISE_NATIVE", "0", "SGDNOISE_NATIVE=0"),
        ("CC", str(tmp_path / "no-such-compiler"), "no C compiler"),
        ("CC", "false", "failed"),
    ):
        with monkeypatch.context() as patch:
            patch.setenv(variable, value)
            native.fcn_kernels.cache_clear()
            assert native.fcn_kernels() is None
            assert reason in native.build_failure()
            assert choose_engine(network, 16, cpu, torch.float32) == "hand_written"
            with pytest.raises(ValueError, match="native FCN step cannot run here"):
                engine_of(config, "native", torch.float32)
    native.fcn_kernels.cache_clear()
    assert list(tmp_path.iterdir()) in ([], [tmp_path / "native"])  # no partial library
    with pytest.raises(ValueError, match="multiples of 16"):
        engine_of(point(optimizer={"batch_size": 8}), "native", torch.float32)


@needs_kernels
def test_kernels_refuse_what_they_would_misread():
    """The wrapper checks what the C code trusts: dtype, layout, shapes, replica ids."""
    config = point()
    dynamics, initial = engine_of(config, "native", torch.float32)
    state = dynamics.init(initial, list(range(REPLICAS)))
    selection = dynamics.draw(state)
    dynamics.update(state, selection)  # the real call works
    parameters = state.parameters
    hidden = parameters["hidden.1"]
    for broken, message in (
        (hidden.double(), "float64"),
        (hidden.mT.contiguous().mT, "not contiguous"),
        (hidden[:, :16], "not"),
    ):
        parameters["hidden.1"] = broken
        with pytest.raises(ValueError, match=message):
            dynamics.update(state, selection)
    parameters["hidden.1"] = hidden
    far = state.__class__(
        parameters, state.initial, state.initial_outputs, state.replica_ids + 10, 0
    )
    with pytest.raises(ValueError, match="replica ids"):
        dynamics.update(far, selection)


@needs_kernels
@pytest.mark.parametrize("per_replica", [True, False])
def test_native_outputs_match_the_float64_forward(kernels, per_replica):
    """fcn_outputs (the records' and f0's forward) on samples 8 .. 47 of each replica's
    training set or of the shared test set (a short last block of 8): within 3x of
    torch's float32 distance to the float64 forward (measured: native 2.6e-7, torch
    2.6e-7 .. 3.1e-7, outputs up to ~0.6); a 1e-5 error in gelu gives 1.6e-5 .. 2e-5
    (caught 20x over the bound)."""
    config = point()
    data = datasets()
    network = make_network(config.model, data[0].input_shape)
    initial = initial_network_parameters(network, config.run, torch.device("cpu"), torch.float32)
    generator = torch.Generator().manual_seed(0)
    parameters = {
        name: value + 0.3 * torch.randn(value.shape, generator=generator)
        for name, value in initial.items()
    }
    samples = samples_of(data, not per_replica, torch.device("cpu"), torch.float32)
    ids = torch.tensor([2, 0, 3])
    native_outputs = kernels.outputs(
        networks.native_config(network),
        [parameters[name][ids].contiguous() for name in network.hidden_names],
        parameters["readout"][ids].contiguous(),
        samples.flat_inputs(),
        samples.count,
        samples.per_replica,
        ids,
        8,
        40,
    )
    x = samples.x[ids, 8:48] if per_replica else samples.x[8:48].expand(3, -1, -1, -1, -1)

    def forward(dtype: torch.dtype) -> torch.Tensor:
        """The plain module's outputs, one replica at a time, in ``dtype``."""
        module = make_network(config.model, data[0].input_shape).to(dtype)
        return torch.stack(
            [
                functional_call(module, {k: v[r].to(dtype) for k, v in parameters.items()},
                                (x[i].to(dtype),))
                for i, r in enumerate(ids.tolist())
            ]
        )  # fmt: skip

    exact, single = forward(torch.float64), forward(torch.float32)
    native_error = float((native_outputs.double() - exact).abs().max())
    torch_error = float((single.double() - exact).abs().max())
    assert native_error <= 3 * max(torch_error, 1e-7), (native_error, torch_error)
