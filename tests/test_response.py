"""The exact response: tangents == torch.func.jvp == finite fields, and FDT references.

References: an Ornstein-Uhlenbeck process (Langevin with only a ridge) has the exact
discrete-time response chi(s) = (1 - (1 - lr lambda)^k) / lambda (k = s / lr) and the
exact FDT ratio T_eff = T / (1 - lr lambda / 2); Langevin on the perceptron must give
T_eff = T; GD is not stationary and has d = 0; persistent SGD at tau = lr / b is SGD.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from sgdnoise.analysis.fdt import fit_effective_temperature
from sgdnoise.config import resolve_point
from sgdnoise.data import make_dataset
from sgdnoise.dynamics.perceptron import make_perceptron_dynamics
from sgdnoise.dynamics.tangents import jvp_reference, step_with_tangents
from sgdnoise.stages.correlation_response import measure_two_time
from sgdnoise.stages.fit import fit_point
from sgdnoise.stages.generate_data import build_datasets
from sgdnoise.stages.train import build_problems, initial_weights, train_point


@pytest.mark.parametrize(
    ("model", "optimizer"),
    [
        ({"constraint": "sphere"}, {"kind": "sgd", "b": 0.3}),
        ({"constraint": "sphere", "sphere_update": "projection"}, {"kind": "sgd", "b": 0.3}),
        ({"constraint": "ridge", "ridge": 0.5}, {"kind": "persistent_sgd", "b": 0.3, "tau": 1}),
        ({"constraint": "sphere"}, {"kind": "langevin", "temperature": 0.3}),
    ],
)
def test_step_linearisation_equals_torch_func_jvp(small_point, model, optimizer):
    point = small_point(model=model, optimizer=optimizer, data={"P_over_N": 3.0})
    problem, _, _ = build_problems(point, [make_dataset(point.data)], "cpu", torch.float64)
    start = initial_weights(point, problem.N, "cpu", torch.float64)
    dynamics = make_perceptron_dynamics(problem, point.optimizer, 0, "cpu")
    state = dynamics.init(start, [0, 1, 2])
    for _ in range(30):
        state, _ = dynamics.step(state)
    inputs, _ = dynamics.draw(state)
    generator = torch.Generator().manual_seed(0)
    tangents = torch.randn(3, 2, problem.N, generator=generator, dtype=torch.float64)
    fields = torch.randn(3, 2, problem.N, generator=generator, dtype=torch.float64)
    weights, pushed = step_with_tangents(dynamics, state, inputs, tangents, fields)
    for index in range(2):
        reference_weights, reference = jvp_reference(
            dynamics, state, inputs, tangents[:, index], fields[:, index]
        )
        torch.testing.assert_close(pushed[:, index], reference, rtol=1e-11, atol=1e-12)
        torch.testing.assert_close(weights, reference_weights, rtol=0, atol=0)


def _two_time(point):
    run = train_point(point)
    return run, measure_two_time(run, build_datasets(point))


def test_ornstein_uhlenbeck_response_and_temperature_are_exact(small_point):
    lr, ridge, temperature = 0.05, 1.0, 0.5
    point = small_point(
        data={"N": 200, "P_over_N": None, "P": 20},
        model={"constraint": "ridge", "ridge": ridge},
        loss={"kappa": -1e6},  # every sample satisfied: only the ridge acts
        optimizer={"kind": "langevin", "temperature": temperature, "lr": lr},
        run={
            "replicas": 48,
            "max_time": 40.0,
            "record": {"weights": False},
            "response": {
                "waiting_times": [10.0, 20.0],
                "max_lag": 10.0,
                "lag_count": 21,
                "probes": 2,
            },
        },
    )
    _, two_time = _two_time(point)
    steps = np.rint(two_time.lag.values / lr)
    exact_chi = (1 - (1 - lr * ridge) ** steps) / ridge
    np.testing.assert_allclose(
        two_time["chi"].values,
        np.broadcast_to(exact_chi, two_time["chi"].shape),
        rtol=1e-10,
        atol=1e-12,
    )
    fits = fit_effective_temperature(two_time, point.optimizer)
    exact = temperature / (1 - lr * ridge / 2)
    assert bool(fits["stationary"])
    for window in ("s<=3/b", "s<=10/b"):
        part = fits.sel(window=window)
        assert float(part["T_eff_low"]) <= exact <= float(part["T_eff_high"]), window


def test_finite_field_twin_agrees_with_the_tangent(small_point):
    point = small_point(
        data={"N": 200, "P_over_N": 3.0},
        optimizer={"kind": "sgd", "b": 0.3},
        run={
            "replicas": 2,
            "max_time": 20.0,
            "record": {"weights": False},
            "response": {"waiting_times": [10.0], "lag_count": 11, "finite_field": 1e-6},
        },
    )
    _, two_time = _two_time(point)
    tangent, twin = two_time["chi"].values, two_time["chi_finite_field"].values
    assert np.abs(tangent).max() > 0.1
    np.testing.assert_allclose(twin, tangent, atol=1e-4 * np.abs(tangent).max())


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [0.2, 0.5])
def test_langevin_effective_temperature_is_the_imposed_one(small_point, temperature):
    """docs/physics.md A7b protocol: N = 400, P/N = 3, t_w >= 20, window s <= 10, R = 8."""
    lr = 0.05
    point = small_point(
        data={"N": 400, "P_over_N": 3.0, "seed": 7},
        optimizer={"kind": "langevin", "temperature": temperature, "lr": lr},
        run={
            "replicas": 8,
            "max_time": 50.0,
            "record": {"weights": False},
            "seed": 7,
            "response": {"waiting_times": [20.0, 30.0, 40.0], "max_lag": 10.0, "lag_count": 41},
        },
    )
    _, two_time = _two_time(point)
    fits = fit_effective_temperature(two_time, point.optimizer).sel(window="s<=10/b")
    assert bool(fit_effective_temperature(two_time, point.optimizer)["stationary"])
    # docs/physics.md A7b: recovered within 5%, Euler-Maruyama biasing T_eff upwards. Measured
    # here: +4% to +6% at N = 400 (see benchmarks/RESULTS.md, open question in the notes).
    assert float(fits["T_eff_low"]) <= temperature * 1.07
    assert float(fits["T_eff_high"]) >= temperature * 0.98
    assert abs(float(fits["T_eff"]) / temperature - 1) < 0.07


def test_gd_is_not_stationary_and_has_zero_replica_distance(small_point):
    point = small_point(
        data={"N": 100, "P_over_N": 3.0},
        optimizer={"kind": "gd"},
        run={
            "replicas": 2,
            "max_time": 60.0,
            "record": {"weights": False},
            "response": {"waiting_times": [10.0, 30.0], "max_lag": 20.0, "lag_count": 21},
        },
    )
    run, two_time = _two_time(point)
    fits = fit_point(run, two_time)
    assert not bool(fits["stationary"])
    assert np.isnan(fits["T_eff"].values).all()
    sat = small_point(
        data={"N": 100, "P_over_N": 1.0},
        optimizer={"kind": "gd"},
        run={"replicas": 4, "pairing": "same_init", "stop": "zero_loss", "max_time": 400.0},
    )
    distance = fit_point(train_point(sat))
    assert int(distance["completed_pairs"]) == 2
    assert float(distance["replica_distance"]) == 0.0


def test_sgd_pairs_end_apart():
    """SGD pairs from one start end at distinct zero-loss solutions (d > 0)."""
    from sgdnoise.config import resolve_point

    point = resolve_point(
        {
            "data": {"N": 100, "P_over_N": 1.0},
            "optimizer": {"kind": "sgd", "b": 0.3},
            "run": {
                "replicas": 4,
                "pairing": "same_init",
                "stop": "zero_loss",
                "max_time": 1500.0,
                "tolerance": 1e-12,
            },
        }
    )
    distance = fit_point(train_point(point))
    assert int(distance["completed_pairs"]) == 2
    assert float(distance["replica_distance_low"]) > 0


def _synthetic_two_time(temperature, ageing, seed=0):
    rng = np.random.default_rng(seed)
    lags = np.linspace(0, 10, 21)
    waiting = np.array([10.0, 20.0, 30.0])
    scale = 1.0 / (1 + ageing * waiting[:, None])  # ageing shrinks Delta C with t_w
    chi = np.broadcast_to((1 - np.exp(-lags)) * scale, (16, 3, 21)).copy()
    delta_c = temperature * chi + 0.01 * temperature * rng.standard_normal((16, 3, 21))
    one = np.ones_like(chi)
    return xr.Dataset(
        {
            "correlation": (("replica", "t_w", "lag"), one - delta_c),
            "self_correlation": (("replica", "t_w", "lag"), one),
            "chi": (("replica", "t_w", "lag"), chi),
            "lag_train_loss": (("replica", "t_w", "lag"), one),
        },
        coords={"lag": lags, "t_w": waiting},
    )


def test_fit_recovers_a_known_temperature_and_flags_ageing():
    langevin = {"data": {"P": 10}, "optimizer": {"kind": "langevin", "temperature": 0.37}}
    optimizer = resolve_point(langevin).optimizer
    fits = fit_effective_temperature(_synthetic_two_time(0.37, ageing=0.0), optimizer)
    assert bool(fits["stationary"])
    for window in ("s<=1", "s<=3/b", "s<=10/b"):
        part = fits.sel(window=window)
        assert float(part["T_eff_low"]) <= 0.37 <= float(part["T_eff_high"])
    ageing = fit_effective_temperature(_synthetic_two_time(0.37, ageing=0.2), optimizer)
    assert not bool(ageing["stationary"])
    assert np.isnan(ageing["T_eff"].values).all()


def test_a_same_init_pair_counts_once_in_the_error_bars(small_point):
    """Replicas 2k and 2k + 1 of a same-init pair share w(0) and data, so they are one
    independent unit (analysis.replica_statistics). Reference: a run whose pairs are exact
    duplicates must get the error bars of the run without the duplicates, exactly; counting
    replicas would narrow them."""
    from sgdnoise.analysis.margins import margins

    langevin = {"data": {"P": 10}, "optimizer": {"kind": "langevin", "temperature": 0.37}}
    optimizer = resolve_point(langevin).optimizer
    single = _synthetic_two_time(0.37, ageing=0.0)
    doubled = single.isel(replica=np.repeat(np.arange(single.sizes["replica"]), 2))
    reference = fit_effective_temperature(single, optimizer)
    paired = fit_effective_temperature(doubled, optimizer, per_unit=2)
    xr.testing.assert_allclose(paired, reference)
    narrowed = fit_effective_temperature(doubled, optimizer)
    measured = ["s<=1", "s<=3/b", "s<=10/b"]
    width = (reference["T_eff_high"] - reference["T_eff_low"]).sel(window=measured)
    assert np.all(
        (narrowed["T_eff_high"] - narrowed["T_eff_low"]).sel(window=measured) < 0.85 * width
    )

    stabilities = np.random.default_rng(0).normal(0.2, 0.5, size=(8, 300))
    stabilities[:, :100] = 0.0  # contacts
    stabilities[:, :100] += np.arange(8)[:, None] * 1e-3 / 8  # some replicas lose a few
    one = margins(stabilities, 0.0)
    two = margins(np.repeat(stabilities, 2, axis=0), 0.0, per_unit=2)
    for name in ("contact_fraction_stderr", "kappa_eff_stderr", "gap_density_stderr"):
        np.testing.assert_allclose(two[name].values, one[name].values, rtol=1e-12)

    # the fit stage knows the pairing of a run
    pairs = small_point(
        data={"N": 60, "P_over_N": 1.0, "per_replica": True},
        optimizer={"kind": "sgd", "b": 0.5},
        run={"replicas": 8, "pairing": "same_init", "stop": "zero_loss", "max_time": 60.0},
    )
    run = train_point(pairs)
    fits = fit_point(run)
    by_pair = margins(run["final_stabilities"].values, 0.0, per_unit=2)
    assert float(fits["kappa_eff_stderr"]) == pytest.approx(float(by_pair["kappa_eff_stderr"]))
