"""Synthetic observables with known power laws and crossovers, for the scaling tests.

A smooth crossover from a T -> 0 plateau to a power law in T,

    y(T, P, N) = A P^e_P N^e_N (T_c^n + T^n)^(e_T / n),   T_c = T_c0 (P / P_0)^-a,

times log-normal noise: a factor per seed common to every point (seeds are shared by a
study's points, as replica r is seed r) and an independent factor per point and seed.
At T >> T_c, y = A T^e_T P^e_P N^e_N; the observable has departed from its plateau by
D at T = T_c ((1 + D)^(n / e_T) - 1)^(1 / n).
"""

from __future__ import annotations

import json

import numpy as np
import xarray as xr

from sgdnoise.config import canonical_json, resolve_point

TEMPERATURES = np.geomspace(1e-3, 1e3, 19)
SIZES = np.array([1024.0, 2048.0, 4096.0, 8192.0, 16384.0])


def crossover(
    rng: np.random.Generator,
    e_t: float = 1.0,
    e_p: float = 0.5,
    a: float = 0.5,
    tc0: float = 1.0,
    n: float = 2.0,
    seed_noise: float = 0.05,
    point_noise: float = 0.05,
    replicas: int = 5,
    temperatures: np.ndarray = TEMPERATURES,
    sizes: np.ndarray = SIZES,
) -> xr.DataArray:
    """One group's observable, dims (P, temperature, replica)."""
    tc = tc0 * (sizes / sizes[0]) ** (-a)
    law = sizes[:, None] ** e_p * (tc[:, None] ** n + temperatures[None, :] ** n) ** (e_t / n)
    noise = np.exp(
        seed_noise * rng.standard_normal((1, 1, replicas))
        + point_noise * rng.standard_normal((sizes.size, temperatures.size, replicas))
    )
    return xr.DataArray(
        law[..., None] * noise,
        dims=("P", "temperature", "replica"),
        coords={"P": sizes, "temperature": temperatures, "replica": np.arange(replicas)},
    )


def departure_temperature(tc: np.ndarray, e_t: float, n: float, departure: float) -> np.ndarray:
    """Where the crossover law has departed from its plateau by ``departure``."""
    return tc * ((1.0 + departure) ** (n / e_t) - 1.0) ** (1.0 / n)


def perceptron_summary(
    rng: np.random.Generator,
    chis: tuple[float, ...] = (0.0, 1.0, 3.0),
    dims: tuple[float, ...] = (16.0, 64.0),
    replicas: int = 4,
    point_noise: float = 0.03,
    temperatures: np.ndarray = TEMPERATURES,
    sizes: np.ndarray = SIZES,
) -> xr.Dataset:
    """A study summary of the paper-B perceptron obeying the predicted scaling exactly.

    signal ~ T d^1/2 P^(1/(1+chi)), noise ~ T^2, t* ~ T d P^((3+chi)/(1+chi)) above
    T_c = 0.01 P^-0.3 (n = 2 crossovers, so a = 0.3); test error ~ P^-0.5 on its
    plateau, rising as (T / T_c)^0.2 above T_c. Dims chi, N, P, temperature, replica,
    time (two records: start and stop).
    """
    shape = (len(chis), len(dims), sizes.size, temperatures.size, replicas)
    chi = np.array(chis)[:, None, None, None, None]
    d = np.array(dims)[None, :, None, None, None]
    p = sizes[None, None, :, None, None]
    t = temperatures[None, None, None, :, None]
    tc = 0.01 * (p / sizes[0]) ** -0.3

    def law(e_t: float) -> np.ndarray:
        return (tc**2 + t**2) ** (e_t / 2)

    def noisy(values: np.ndarray) -> np.ndarray:
        seed = rng.standard_normal((1, 1, 1, 1, replicas))
        return values * np.exp(0.05 * seed + point_noise * rng.standard_normal(shape))

    signal = noisy(3.0 * np.sqrt(d) * p ** (1 / (1 + chi)) * law(1.0))
    noise = noisy(0.2 * law(2.0) * np.ones_like(d * p))
    t_star = noisy(0.5 * d * p ** ((3 + chi) / (1 + chi)) * law(1.0))
    weight_change = noisy(3.0 * p ** (1 / (1 + chi)) * law(1.0) * np.ones_like(d))
    test_error = noisy(0.5 * p**-0.5 * (1 + (t / tc) ** 2) ** 0.1 * np.ones_like(chi * d))
    coords = {
        "chi": np.array(chis),
        "N": np.array(dims, dtype=int),
        "P": sizes.astype(int),
        "temperature": temperatures,
        "replica": np.arange(replicas),
        "time": ("record", np.array([0.0, 1.0])),
    }
    dims5 = ("chi", "N", "P", "temperature", "replica")

    def recorded(values: np.ndarray) -> tuple:
        return (*dims5, "record"), np.stack([np.zeros(shape), values], axis=-1)

    summary = xr.Dataset(
        {
            "signal": recorded(signal),
            "noise": recorded(noise),
            "weight_change": recorded(weight_change),
            "test_error": recorded(test_error),
            "t_star": (dims5, t_star),
            "replica_status": (dims5, np.full(shape, "completed", dtype=object)),
        },
        coords=coords,
    )
    for name in ("signal", "noise", "weight_change", "test_error"):
        summary[name].attrs.update(units="1", long_name=name)
    summary["t_star"].attrs.update(units="lr x steps", long_name="training time")
    for name in ("chi", "N", "P", "temperature"):
        summary[name].attrs.update(units="1", long_name=f"grid axis {name}")
    summary["replica_status"].attrs.update(units="1", long_name="status per replica")
    summary["replica"].attrs.update(units="1", long_name="replica index")
    summary["time"].attrs.update(units="lr x steps", long_name="recording time")
    summary.attrs.update(
        grid_axes=json.dumps(
            {
                "chi": "data.chi",
                "N": "data.N",
                "P": "data.P",
                "temperature": "optimizer.temperature",
            }
        ),
        example_config=canonical_json(
            resolve_point(
                {
                    "model": {"kind": "perceptron", "alpha": 32768.0, "constraint": "none"},
                    "loss": {"kind": "hinge"},
                    "data": {"kind": "depleted_sign", "N": 16, "P": 1024, "chi": 0.0},
                    "optimizer": {"kind": "minibatch_sgd", "batch_size": 2, "lr": 0.01},
                    "run": {"replicas": replicas, "stop": "zero_loss"},
                }
            )
        ),
    )
    return summary
