"""Replica distance in the over-parametrised regime (docs/physics.md A6).

Pairs of replicas (2k, 2k + 1) start from the same w(0) and see independent selection
noise; both are trained to zero loss (within run.tolerance), where their weights freeze.
d = |w_a - w_b|^2 / N (= 2 (1 - q_ab) on the sphere), averaged over the pairs whose two
replicas completed, with a 95% percentile-bootstrap interval over pairs (each pair one
unit: analysis.statistics). GD gives d = 0 exactly (no noise).
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from sgdnoise.analysis.statistics import percentile_bootstrap


def pair_distances(final_weights: np.ndarray, statuses: list[str]) -> np.ndarray:
    """d of every completed pair (2k, 2k + 1), shape (pairs,)."""
    N = final_weights.shape[-1]
    distances = []
    for first in range(0, final_weights.shape[0] - 1, 2):
        if statuses[first] == statuses[first + 1] == "completed":
            difference = final_weights[first] - final_weights[first + 1]
            distances.append(float(difference @ difference) / N)
    return np.array(distances)


def replica_distance(run: xr.Dataset, resamples: int = 1000, seed: int = 0) -> xr.Dataset:
    """Mean replica distance of a run with pairing same_init, with its 95% interval."""
    statuses = [str(s) for s in run["replica_status"].values]
    distances = pair_distances(run["final_weights"].values, statuses)
    if distances.size == 0:
        mean = low = high = math.nan
    else:
        mean, low, high = percentile_bootstrap(
            lambda pairs: distances[pairs].mean(),
            distances.size,
            resamples,
            np.random.default_rng(seed),
        )
    return xr.Dataset(
        {
            "replica_distance": ((), mean),
            "replica_distance_low": ((), low),
            "replica_distance_high": ((), high),
            "completed_pairs": ((), distances.size),
        }
    )


UNITS = {
    "replica_distance": ("1", "replica distance |w_a - w_b|^2 / N at zero loss, mean over pairs"),
    "replica_distance_low": ("1", "lower end of the 95% bootstrap interval of the distance"),
    "replica_distance_high": ("1", "upper end of the 95% bootstrap interval of the distance"),
    "completed_pairs": ("1", "number of same-init pairs whose replicas both reached zero loss"),
}
