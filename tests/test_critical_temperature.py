"""Crossover temperature, its exponent a and the collapse (analysis.critical_temperature).

Synthetic crossovers y = A P^e_P (T_c^n + T^n)^(e_T / n) with T_c = T_c0 (P / P_0)^-a
(tests/synthetic_scaling.py) have a known departure temperature: the criterion must find
it, the exponent a of T_c ~ P^-a and the collapse exponent must come back with intervals
that cover the truth in about 95% of independent synthetic studies, and curves without a
plateau must give no T_c rather than a wrong one.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from sgdnoise.analysis.critical_temperature import (
    DEPARTURE_THRESHOLD,
    collapse_exponent,
    critical_temperature,
    departure_temperature,
    fit_critical_temperature,
    log_amplitude,
)
from sgdnoise.config import canonical_json, resolve_point
from tests.synthetic_scaling import SIZES, crossover, perceptron_summary
from tests.synthetic_scaling import departure_temperature as exact_departure


def test_departure_temperature_of_a_noiseless_crossover():
    """y = 1 + T / T_x departs by 0.5 at T = T_x / 2 (interpolated on a fine grid)."""
    temperatures = np.geomspace(1e-4, 1e2, 121)
    curve = 1.0 + temperatures / 0.3
    log_tc, plateau = departure_temperature(curve[None, :], np.log(temperatures))
    assert plateau[0]
    assert np.exp(log_tc[0]) == pytest.approx(0.15, rel=0.01)


def test_no_plateau_or_no_departure_gives_no_critical_temperature():
    temperatures = np.geomspace(1e-2, 1e2, 9)
    log_t = np.log(temperatures)
    power_law = temperatures**1.0  # departs from the first point on: no plateau
    flat = np.ones_like(temperatures)  # never departs
    log_tc, plateau = departure_temperature(np.stack([power_law, flat]), log_t)
    assert np.isnan(log_tc).all()
    assert not plateau[0] and plateau[1]


def test_critical_temperatures_and_exponent_a_are_recovered():
    values = crossover(np.random.default_rng(7), a=0.5, n=2.0, point_noise=0.02)
    fit = fit_critical_temperature(values, resamples=200)
    truth = exact_departure(1.0 * (SIZES / SIZES[0]) ** -0.5, 1.0, 2.0, DEPARTURE_THRESHOLD)
    tc = fit["critical_temperature"].values
    np.testing.assert_allclose(tc, truth, rtol=0.15)
    assert (fit["critical_temperature_low"].values <= tc).all()
    assert fit["plateau_reached"].all()
    slope = fit["critical_temperature_slope"].sel(size="P").item()
    assert -slope == pytest.approx(0.5, abs=0.05)
    assert fit["collapse_exponent"].item() == pytest.approx(0.5, abs=0.05)


def test_collapse_of_exact_curves_finds_the_exponent():
    log_t = np.log(np.geomspace(1e-3, 1e3, 25))
    curves = []
    for p in SIZES:
        tc = (p / SIZES[0]) ** -0.7
        departure = np.log1p(np.exp(log_t) / tc)  # log(y / y_0) of y = y_0 (1 + T / T_c)
        curves.append((log_t, departure, np.log(p)))
    a, cost = collapse_exponent(curves)
    assert a == pytest.approx(0.7, abs=0.005)
    assert cost < 1e-4


@pytest.mark.parametrize(
    "law",
    [
        {"a": 0.5, "n": 1.0, "point_noise": 0.05},
        {"a": 0.0, "n": 2.0, "point_noise": 0.05},
        {"a": 0.5, "n": 2.0, "point_noise": 0.1, "replicas": 3},
    ],
    ids=["additive", "no-P-dependence", "noisy-three-seeds"],
)
def test_intervals_of_a_cover_the_truth(law):
    rng = np.random.default_rng(11)
    covered = []
    for trial in range(30):
        fit = fit_critical_temperature(crossover(rng, **law), resamples=100, seed=trial)
        a_low = -fit["critical_temperature_slope_high"].sel(size="P").item()
        a_high = -fit["critical_temperature_slope_low"].sel(size="P").item()
        collapse = fit["collapse_exponent_low"].item(), fit["collapse_exponent_high"].item()
        covered.append([a_low <= law["a"] <= a_high, collapse[0] <= law["a"] <= collapse[1]])
    assert (np.mean(covered, axis=0) >= 0.83).all(), np.mean(covered, axis=0)  # nominal 0.95


def test_non_completed_replicas_are_left_out_not_averaged():
    values = crossover(np.random.default_rng(8), a=0.5, n=2.0, point_noise=0.02)
    slow = values.copy()
    slow[1, 10, 0] = np.nan  # budget exhausted at P = 2048, T = 1
    fit = fit_critical_temperature(slow, resamples=50)
    assert np.isfinite(fit["critical_temperature"].values).all()
    assert -fit["critical_temperature_slope"].sel(size="P").item() == pytest.approx(0.5, abs=0.06)


def test_study_critical_temperature_on_perceptron_and_network_summaries():
    """The perceptron summary (temperature axis) and a network-like one (lr axis, no
    signal/noise) both give T_c ~ P^-0.3 for every observable that departs."""
    summary = perceptron_summary(np.random.default_rng(9), chis=(1.0,), dims=(32.0,))
    fits = critical_temperature(summary, resamples=100)
    for name in ("signal", "t_star", "weight_change"):
        pick = fits.sel(observable=name, chi=1.0, N=32)
        assert pick["a_low"] <= 0.3 <= pick["a_high"], name
        assert pick["collapse_exponent_low"] <= 0.3 <= pick["collapse_exponent_high"], name
    network = summary.drop_vars(["signal", "noise"]).isel(chi=0, N=0, drop=True)
    network = network.rename(temperature="lr").assign_coords(lr=network["temperature"].values * 16)
    network.attrs["example_config"] = canonical_json(
        resolve_point(
            {
                "model": {"kind": "fcn", "width": 1, "alpha": 1.0},
                "data": {"kind": "mnist_parity", "P": 1024},
                "optimizer": {"kind": "minibatch_sgd", "batch_size": 16, "lr": 0.01},
            }
        )
    )
    fits = critical_temperature(network, resamples=100)
    assert set(fits["observable"].values) == {"t_star", "weight_change", "test_error"}
    pick = fits.sel(observable="weight_change")
    assert pick["a_low"] <= 0.3 <= pick["a_high"]
    np.testing.assert_allclose(
        fits["critical_temperature"].sel(observable="weight_change").values,
        0.01 * (network["P"].values / 1024.0) ** -0.3 * np.sqrt(1.5**2 - 1),
        rtol=0.25,
    )
    assert isinstance(fits, xr.Dataset)


def test_line_through_the_critical_temperatures_at_the_fitted_exponent():
    """log A of T_c = A P^-a (the line critical_temperature_vs_P draws): exact for an exact
    power law, NaN with fewer than two T_c or without an exponent."""
    sizes = np.array([1024.0, 2048.0, 4096.0])
    critical = xr.DataArray(
        [2.0 * sizes**-0.5, [0.1, np.nan, np.nan], 2.0 * sizes**-0.5],
        dims=("N", "P"),
        coords={"N": [8, 16, 32], "P": sizes},
    )
    a = xr.DataArray([0.5, 0.5, np.nan], dims="N", coords={"N": [8, 16, 32]})
    amplitude = log_amplitude(critical, a).values
    assert amplitude[0] == pytest.approx(np.log(2.0), rel=1e-12)
    assert np.isnan(amplitude[1:]).all()
