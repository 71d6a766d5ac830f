"""The exact response of a user's module: tangents against finite differences, and FDT
references (Langevin at a known T; the perceptron as a module against the native engine)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sgdnoise.analysis.fdt import fit_effective_temperature
from sgdnoise.config import resolve_point
from sgdnoise.stages.correlation_response import measure_two_time
from sgdnoise.stages.generate_data import build_datasets
from sgdnoise.stages.train import train_point
from sgdnoise.stages.train_user_model import train_user_model_point, user_model_setup


def mlp_point(models_file: str, optimizer: dict, run: dict | None = None):
    return resolve_point(
        {
            "model": {
                "kind": "torch",
                "factory": f"{models_file}:mlp",
                "options": {"inputs": 10},
                "constraint": "ridge",
                "ridge": 1.0,
            },
            "loss": {"kind": "mse"},
            "data": {"kind": "random_patterns", "N": 10, "P": 20},
            "optimizer": optimizer,
            "run": {"replicas": 3, "max_time": 1.0, **(run or {})},
        }
    )


@pytest.mark.parametrize(
    "optimizer",
    [{"kind": "persistent_sgd", "b": 0.4, "tau": 0.5, "lr": 0.05}, {"kind": "gd", "lr": 0.05}],
    ids=["persistent_sgd", "gd"],
)
def test_pushed_tangents_are_the_derivative_of_the_step(models_file, optimizer):
    """dw' of push_tangents equals the central difference of the step in w and in the
    field H (epsilon = 1e-5, float64) to 1e-6 relative: resolves a wrong Hessian product,
    sign of the field, factor lr or a missing ridge term (each O(1) in dw')."""
    point = mlp_point(models_file, optimizer)
    *_, dynamics = user_model_setup(point, None)
    generator = torch.Generator().manual_seed(1)
    parameters = {
        name: torch.randn(3, *shape, generator=generator, dtype=torch.float64)
        for name, shape in dynamics.shapes.items()
    }
    state = dynamics.initial_state(parameters, [0, 1, 2])
    inputs, _ = dynamics.draw(state)
    size = sum(value[0].numel() for value in parameters.values())
    tangents = torch.randn(3, 2, size, generator=generator, dtype=torch.float64)
    fields = torch.randn(3, 2, size, generator=generator, dtype=torch.float64)
    pushed = dynamics.push_tangents(state, inputs, tangents, fields)

    def flat_update(shift, field):
        moved = dynamics.unflatten(_flat(parameters) + shift)
        new, _ = dynamics.update(state.__class__(moved, None, state.replica_ids, 0), inputs, field)
        return _flat(new)

    epsilon = 1e-5
    for m in range(2):
        field = dynamics.unflatten(epsilon * fields[:, m])
        minus = dynamics.unflatten(-epsilon * fields[:, m])
        difference = flat_update(epsilon * tangents[:, m], field) - flat_update(
            -epsilon * tangents[:, m], minus
        )
        torch.testing.assert_close(pushed[:, m], difference / (2 * epsilon), rtol=1e-6, atol=1e-8)


def _flat(parameters: dict) -> torch.Tensor:
    return torch.cat([value.flatten(1) for value in parameters.values()], dim=1)


def test_langevin_on_an_mlp_gives_t_eff_equal_to_t(models_file):
    """Langevin at T = 0.1 on a tanh MLP with the mse loss and a ridge: the FDT slope is T
    within its 95 % interval (finite-lr bias ~ lr k / 2 < 1 % here); a response or
    correlation off by 10 % falls outside it."""
    temperature = 0.1
    point = mlp_point(
        models_file,
        {"kind": "langevin", "temperature": temperature, "lr": 0.01},
        {
            "replicas": 48,
            "max_time": 26.0,
            "record": {"count": 4, "weights": False},
            "response": {"waiting_times": [15.0, 18.0, 21.0], "max_lag": 5.0, "lag_count": 21},
        },
    )
    run = train_user_model_point(point)
    two_time = measure_two_time(run, build_datasets(point))
    fits = fit_effective_temperature(two_time, point.optimizer)
    assert bool(fits["stationary"])
    part = fits.sel(window="s<=3/b")
    low, high = float(part["T_eff_low"]), float(part["T_eff_high"])
    assert low <= temperature <= high
    assert high - low < 0.15 * temperature


def test_the_perceptron_as_a_module_has_the_native_effective_temperature(models_file):
    """SGD (b = 0.25) on the ridge perceptron (kappa = 1, P/N = 3, stationary by t_w = 6):
    the native engine and the same perceptron as a module give T_eff within their joint
    intervals; different initial draws, same law."""
    common = {
        "loss": {"kind": "square_hinge", "kappa": 1.0},
        "data": {"kind": "random_patterns", "N": 100, "P": 300},
        "optimizer": {"kind": "sgd", "b": 0.25, "lr": 0.1},
        "run": {
            "replicas": 24,
            "max_time": 24.0,
            "record": {"count": 4, "weights": False},
            "response": {"waiting_times": [6.0, 9.0, 12.0], "max_lag": 12.0, "lag_count": 61},
        },
    }
    ridge = {"constraint": "ridge", "ridge": 1.0}
    native = resolve_point({**common, "model": {"kind": "perceptron", **ridge}})
    module = resolve_point(
        {
            **common,
            "model": {
                "kind": "torch",
                "factory": f"{models_file}:perceptron",
                "options": {"N": 100},
                **ridge,
            },
        }
    )
    estimates = []
    for point, train in ((native, train_point), (module, train_user_model_point)):
        two_time = measure_two_time(train(point), build_datasets(point))
        fits = fit_effective_temperature(two_time, point.optimizer)
        part = fits.sel(window="s<=3/b")
        estimates.append([float(part[key]) for key in ("T_eff", "T_eff_low", "T_eff_high")])
    (first, first_low, first_high), (second, second_low, second_high) = estimates
    half_widths = np.hypot(first_high - first_low, second_high - second_low) / 2
    assert abs(first - second) < half_widths


def test_tangents_follow_a_finite_field_twin_over_many_steps(models_file):
    """A twin trained with the field epsilon zeta (same selections) moves away from the
    walk by epsilon times the tangent over 40 steps of persistent SGD, to O(epsilon):
    resolves any error that accumulates along the trajectory (a tangent not pushed
    through the selection chain, a stale Hessian)."""
    point = mlp_point(models_file, {"kind": "persistent_sgd", "b": 0.4, "tau": 0.5, "lr": 0.05})
    *_, dynamics = user_model_setup(point, None)
    generator = torch.Generator().manual_seed(2)
    parameters = {
        name: torch.randn(3, *shape, generator=generator, dtype=torch.float64)
        for name, shape in dynamics.shapes.items()
    }
    walk = twin = dynamics.initial_state(parameters, [0, 1, 2])
    size = _flat(parameters).shape[1]
    zeta = torch.randn(3, 1, size, generator=generator, dtype=torch.float64)
    tangents, epsilon = torch.zeros_like(zeta), 1e-6
    for _ in range(40):
        inputs, chain = dynamics.draw(walk)
        tangents = dynamics.push_tangents(walk, inputs, tangents, zeta)
        field = dynamics.unflatten(epsilon * zeta[:, 0])
        new_walk, _ = dynamics.update(walk, inputs)
        new_twin, _ = dynamics.update(twin, inputs, field)
        walk = walk.__class__(new_walk, chain, walk.replica_ids, walk.step + 1)
        twin = twin.__class__(new_twin, chain, twin.replica_ids, twin.step + 1)
    shift = (_flat(twin.parameters) - _flat(walk.parameters)) / epsilon
    torch.testing.assert_close(shift, tangents[:, 0], rtol=1e-3, atol=1e-5)
    assert float(tangents.abs().max()) > 0.1  # the response is not trivially small
