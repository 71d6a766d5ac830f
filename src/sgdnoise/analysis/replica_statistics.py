"""Standard errors and bootstrap resamples over the independent units of a run.

The replicas of a run are independent samples of the dynamics, except the two replicas of
a same-init pair (run.pairing same_init: replicas 2k and 2k + 1 share w(0) and, with
data.per_replica, their training set). Their observables are correlated: the contact
fraction at zero loss had a within-pair correlation of 0.5-0.85 (sphere, P/N = 0.5, SGD),
so a standard error over replicas understated the true one by 1.3-1.4x. A pair is
therefore one unit: standard errors are taken over unit means, and bootstrap resamples
draw whole units. Solver seeds of the DMFT are units of one.
"""

from __future__ import annotations

import warnings

import numpy as np


def replicas_per_unit(run_config: dict) -> int:
    """2 for same-init pairs, else 1 (a ``run:`` section; no pairing: independent)."""
    return 2 if run_config.get("pairing") == "same_init" else 1


def unit_means(values: np.ndarray, per_unit: int = 1) -> np.ndarray:
    """The mean over the replicas of each unit (axis 0; NaN-aware, NaN for a unit of NaNs):
    (replicas / per_unit, ...)."""
    if per_unit == 1:
        return values
    if values.shape[0] % per_unit:
        raise ValueError(f"{values.shape[0]} replicas do not split into units of {per_unit}")
    grouped = values.reshape(values.shape[0] // per_unit, per_unit, *values.shape[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a unit whose replicas all diverged
        return np.nanmean(grouped, axis=1)


def standard_error(values: np.ndarray, per_unit: int = 1) -> np.ndarray:
    """Standard error of the mean over axis 0 (replicas or solver seeds), counting units of
    ``per_unit`` replicas and skipping NaN (diverged) ones; NaN for fewer than two units."""
    units = unit_means(np.asarray(values, dtype=float), per_unit)
    count = np.sum(np.isfinite(units), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fewer than two finite units
        spread = np.nanstd(units, axis=0, ddof=1)
    return np.where(count >= 2, spread / np.sqrt(np.maximum(count, 1)), np.nan)


def bootstrap_indices(
    rng: np.random.Generator, replicas: int, resamples: int, per_unit: int = 1
) -> np.ndarray:
    """Replica indices of ``resamples`` bootstrap resamples, (resamples, replicas): whole
    units of ``per_unit`` consecutive replicas drawn with replacement."""
    units = replicas // per_unit
    drawn = rng.integers(0, units, size=(resamples, units))
    return (drawn[..., None] * per_unit + np.arange(per_unit)).reshape(resamples, -1)
