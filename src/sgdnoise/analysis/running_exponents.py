"""Running exponents in P and in d: the power laws seen size by size (docs/physics.md B5).

A global fit over every P averages the local slopes; when the corrections to scaling
are still large at the sizes reached, the slope drifts with P and a global exponent
below the prediction may be the approach to it, not its rejection. So for an observable
y at stopping and two successive training-set sizes P_i < P_(i+1), at the same
temperature T (and d), the running exponent is the slope of the chord

    e_i = mean over T in the window [<log y>(P_(i+1), T) - <log y>(P_i, T)] / log(P_(i+1) / P_i)

(<.>: mean over seeds), placed at P_mid = sqrt(P_i P_(i+1)). The temperatures are those
inside the power-law window of the global fit (analysis.power_laws) at both sizes;
none: e_i is NaN. e_i is linear in the seed means, so its interval is the Student-t
interval over seeds of the per-seed chords (seeds at different P are independent runs;
the per-seed spread holds both sizes' variances).

Extrapolation (a stated assumption, not a result): corrections to scaling of order
P^-omega, e_i = e_inf + c P_mid^-omega, fitted by least squares to the running exponents
(exactly through them when there are two), for omega = 1/2 (the relative fluctuation
of a count of samples) and omega = 1; e_inf is linear in the seed means too, with its
Student-t interval over seeds. ``prediction_inside`` says whether the prediction lies
within the union of the two intervals: the verdict is phrased from the trend and the
extrapolation, never from the smallest sizes alone.

In d (the input dimension, axis N) the same chords between successive d at fixed P and
T give running exponents in d, one set per P, not extrapolated (see
``running_exponents_in_dimension``): the prediction's d-factors hold if they approach it
as P grows.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy import stats

from sgdnoise.analysis.scaling_data import REPLICA, TEMPERATURE
from sgdnoise.analysis.statistics import standard_error

CORRECTIONS = (0.5, 1.0)  # omega of the corrections to scaling P^-omega


def running_exponents(
    values: xr.DataArray, window: xr.DataArray, predicted: float, confidence: float = 0.95
) -> xr.Dataset:
    """Running exponents in P of one group's observable, and their extrapolation.

    ``values``: dims (P, N?, temperature, replica), NaN where a replica did not complete;
    ``window``: the global fit's power-law window, dims (P, N?, temperature);
    ``predicted``: the predicted exponent in P (NaN: none). Dims of the result:
    ``size_pair`` (coordinates P_low, P_high, P_mid), ``correction`` (omega), and N if
    swept.
    """
    per_seed, sizes, middle, others = _chords(values, window, "P")
    quantile = _quantile(per_seed, confidence)
    running = _estimate_and_interval(per_seed, quantile)
    extrapolated = [
        _estimate_and_interval(_at_infinity(per_seed, middle, w), quantile) for w in CORRECTIONS
    ]
    extrapolated = [np.stack(part, axis=0) for part in zip(*extrapolated, strict=True)]
    inside = (extrapolated[1] <= predicted) & (predicted <= extrapolated[2])
    pair_dims = ("size_pair", *others)
    infinite_dims = ("correction", *others)
    return xr.Dataset(
        {
            "running_exponent": (pair_dims, running[0]),
            "running_exponent_low": (pair_dims, running[1]),
            "running_exponent_high": (pair_dims, running[2]),
            "exponent_extrapolated": (infinite_dims, extrapolated[0]),
            "exponent_extrapolated_low": (infinite_dims, extrapolated[1]),
            "exponent_extrapolated_high": (infinite_dims, extrapolated[2]),
            "prediction_inside": (tuple(others), np.any(inside, axis=0)),
        },
        coords={
            "size_pair": np.arange(len(middle)),
            "P_low": ("size_pair", sizes[:-1]),
            "P_high": ("size_pair", sizes[1:]),
            "P_mid": ("size_pair", middle),
            "correction": list(CORRECTIONS),
            **{d: values[d].values for d in others},
        },
    )


def running_exponents_in_dimension(
    values: xr.DataArray, window: xr.DataArray, confidence: float = 0.95
) -> xr.Dataset:
    """Running exponents in the input dimension d (the axis N) at fixed P, no extrapolation.

    The same chords as in P, between successive d at the same P and T (window temperatures
    at both d), with their Student-t intervals over seeds. They are not extrapolated: the
    scaling argument is a statement about P -> infinity at fixed d, and d -> infinity at
    fixed P leaves P / d -> 0, where it makes no claim. What they show is whether the
    d-dependence approaches the prediction as P grows (read along P at the largest pair
    of d). Dims of the result: ``N_pair`` (coordinates N_low, N_high, N_mid) and P.
    """
    per_seed, sizes, middle, others = _chords(values, window, "N")
    running = _estimate_and_interval(per_seed, _quantile(per_seed, confidence))
    pair_dims = ("N_pair", *others)
    return xr.Dataset(
        {
            "running_exponent_N": (pair_dims, running[0]),
            "running_exponent_N_low": (pair_dims, running[1]),
            "running_exponent_N_high": (pair_dims, running[2]),
        },
        coords={
            "N_pair": np.arange(len(middle)),
            "N_low": ("N_pair", sizes[:-1]),
            "N_high": ("N_pair", sizes[1:]),
            "N_mid": ("N_pair", middle),
            **{d: values[d].values for d in others},
        },
    )


def _chords(
    values: xr.DataArray, window: xr.DataArray, axis: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Per seed, the chord slopes of log y between successive values of ``axis`` (P or N),
    averaged over the temperatures in the window at both: (pairs, ..., R), with the axis'
    values, the pairs' geometric midpoints and the other dims (in the order of ...)."""
    others = [d for d in values.dims if d not in (axis, TEMPERATURE, REPLICA)]
    values = values.transpose(axis, *others, TEMPERATURE, REPLICA)
    window = window.transpose(axis, *others, TEMPERATURE).values
    sizes = values[axis].values.astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.where(values.values > 0, values.values, np.nan))  # (axis, ..., T, R)
    usable = window & np.isfinite(logs).all(axis=-1)
    per_seed = []  # per pair: (..., R) the chord slope averaged over the shared window
    for i in range(len(sizes) - 1):
        shared = usable[i] & usable[i + 1]  # (..., T)
        chords = (logs[i + 1] - logs[i]) / np.log(sizes[i + 1] / sizes[i])
        count = shared.sum(axis=-1)[..., None]
        summed = np.where(shared[..., None], chords, 0.0).sum(axis=-2)
        per_seed.append(np.where(count > 0, summed / np.maximum(count, 1), np.nan))
    return np.stack(per_seed), sizes, np.sqrt(sizes[:-1] * sizes[1:]), others


def _quantile(per_seed: np.ndarray, confidence: float) -> float:
    """The two-sided Student-t quantile for the seed count (last axis of per_seed)."""
    return float(stats.t.ppf(0.5 + confidence / 2, df=max(per_seed.shape[-1] - 1, 1)))


def _estimate_and_interval(seeds: np.ndarray, quantile: float) -> tuple[np.ndarray, ...]:
    """Mean over seeds (last axis) and its Student-t interval."""
    estimate = seeds.mean(axis=-1)
    half = quantile * standard_error(seeds, axis=-1)
    return estimate, estimate - half, estimate + half


def _at_infinity(per_seed: np.ndarray, middle: np.ndarray, omega: float) -> np.ndarray:
    """Per seed, e_inf of the least-squares line e = e_inf + c P_mid^-omega through the
    finite running exponents (pairs on axis 0); NaN with fewer than two."""
    finite = np.isfinite(per_seed).all(axis=-1)  # (pairs, ...)
    result = np.full(per_seed.shape[1:], np.nan)
    for index in np.ndindex(per_seed.shape[1:-1]):
        rows = np.flatnonzero(finite[(slice(None), *index)])
        if rows.size < 2:
            continue
        design = np.stack([np.ones(rows.size), middle[rows] ** -omega], axis=1)
        coefficients = np.linalg.lstsq(design, per_seed[(rows, *index)], rcond=None)[0]
        result[index] = coefficients[0]
    return result
