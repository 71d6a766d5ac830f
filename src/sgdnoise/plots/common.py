"""What every figure shares: reading a summary, naming its axes, titling what is fixed,
iterating over its grid points, refusing a figure whose computed inputs are missing."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from sgdnoise.config import get_path  # noqa: E402
from sgdnoise.io.artifact import grid_axes, study_config  # noqa: E402

# Readable labels of grid axes and observables (units after a comma).
LABELS = {
    "P_over_N": "P/N",
    "b": "batch fraction b",
    "batch_size": "batch size B",
    "tau": "persistence tau (lr x steps)",
    "kappa": "margin kappa",
    "alpha": "alpha (output scale)",
    "temperature": "temperature T",
    "time": "time t (lr x steps)",
    "train_loss": "training loss per sample",
    "train_error": "training error (h < -run.error_tolerance)",
    "violated_fraction": "violated fraction (h < kappa)",
    "test_error": "test error",
}


FIXED_IN_TITLES = {
    "data.kind": "data",
    "data.N": "N",
    "data.P": "P",
    "loss.kind": "loss",
    "loss.kappa": "kappa",
    "model.constraint": "constraint",
    "model.ridge": "ridge",
    "optimizer.lr": "lr",
    "optimizer.temperature": "T",
    "run.replicas": "replicas",
}
"""Config entries a figure title states when the study does not sweep them (path -> label)."""


def fixed_parameters(summary: xr.Dataset, keys: dict[str, str] = FIXED_IN_TITLES) -> str:
    """'label=value, ...' of the config entries ``keys`` the study holds fixed (for titles).

    Swept: the summary's swept paths (a bundle or variant sweeps each path it sets), or
    its grid axes; P is swept with P_over_N; the ridge is shown with constraint ridge only;
    minibatch SGD's lr and T = lr / (width B) both vary when any of lr, T, B or the width does.
    """
    config = study_config(summary)
    swept = set(json.loads(summary.attrs.get("swept_paths", "[]"))) or set(
        grid_axes(summary).values()
    )
    if "data.P_over_N" in swept:
        swept.add("data.P")
    if config.model.constraint != "ridge":
        swept.add("model.ridge")
    if config.optimizer.kind == "minibatch_sgd":  # T = lr / (width B): one sweep moves both
        tied = {"optimizer.lr", "optimizer.temperature", "optimizer.batch_size", "model.width"}
        if swept & tied:
            swept |= {"optimizer.lr", "optimizer.temperature"}
    mapping, parts = config.to_mapping(), []
    for path, label in keys.items():
        if any(path == s or path.startswith(s + ".") for s in swept):
            continue
        value = get_path(mapping, path)
        if value is not None:
            parts.append(f"{label}={value:g}" if isinstance(value, float) else f"{label}={value}")
    return ", ".join(parts)


def label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " "))


def save(figure: plt.Figure, out: str) -> None:
    figure.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(figure)


def require(data: xr.Dataset | None, names: Iterable[str], figure: str, source: str) -> xr.Dataset:
    """``data`` if it holds every variable of ``names``, else ValueError naming the figure,
    the missing input and what computes it (``source``): figures draw what the analyses
    computed and never compute it themselves."""
    missing = [name for name in names if data is None or name not in data]
    if missing:
        given = "none was given" if data is None else "they are missing"
        raise ValueError(f"{figure} needs {', '.join(missing)} from {source}; {given}")
    return data


def selections(data: xr.Dataset | xr.DataArray, dims: list[str]) -> list[dict]:
    """Every combination of the values of ``dims`` in ``data`` (C order), as selection
    dicts; ``[{}]`` without dims."""
    values = [data[d].values.tolist() for d in dims]
    return [dict(zip(dims, combo, strict=True)) for combo in itertools.product(*values)]


def points(summary: xr.Dataset, exclude: tuple[str, ...] = ()) -> list[dict]:
    """Every combination of grid coordinates (minus ``exclude``), as selection dicts."""
    return selections(summary, [a for a in grid_axes(summary) if a not in exclude])


NOISE_AXES = ("b", "batch_size")
"""The grid axes that set the amount of selection noise: SGD's b, minibatch SGD's B."""


def noise_axis(summary: xr.Dataset) -> str:
    """The swept noise axis of a summary (b, else batch_size): the x axis of the figures
    of T_eff and replica distance against the noise."""
    for name in NOISE_AXES:
        if name in summary.dims:
            return name
    raise ValueError(f"the study sweeps none of {', '.join(NOISE_AXES)}")


def describe_point(selection: dict, drop: tuple[str, ...] = ("regime",)) -> str:
    """Short text of a point's coordinates (the regime is implied by the figure)."""
    return ", ".join(f"{k}={v}" for k, v in selection.items() if k not in drop)


def title(summary: xr.Dataset, what: str) -> str:
    """A figure title: what it shows, then the parameters held fixed."""
    return f"{what}\nfixed: {fixed_parameters(summary)}"


def has(part: xr.Dataset, name: str) -> bool:
    """Whether the summary holds a variable with some finite value (e.g. the DMFT's)."""
    return name in part and bool(np.isfinite(part[name]).any())


def errorbar(axis, x, centre, low, high, **style) -> None:
    """Markers at the finite centres with asymmetric bars to low and high."""
    centre, low, high = (np.asarray(v, dtype=float) for v in (centre, low, high))
    keep = np.isfinite(centre)
    if keep.any():
        yerr = np.vstack([centre - low, high - centre])[:, keep]
        style = {"marker": "o", "capsize": 3, **style}
        axis.errorbar(np.asarray(x)[keep], centre[keep], yerr=np.abs(yerr), **style)


def legend_once(axis, **style) -> None:
    """The axis legend with one entry per distinct label (the first artist drawn with it)."""
    unique: dict[str, object] = {}
    for handle, text in zip(*axis.get_legend_handles_labels(), strict=True):
        unique.setdefault(text, handle)
    axis.legend(unique.values(), unique.keys(), **style)


def linear_below(distance: xr.DataArray) -> float:
    """The symlog threshold of a distance axis: a decade below the smallest positive
    distance (GD's d = 0 still shows, the measured values sit on the log part)."""
    positive = distance.values[np.isfinite(distance.values) & (distance.values > 0)]
    return 10.0 ** (np.floor(np.log10(positive.min())) - 1) if positive.size else 1e-6


def final_state(summary: xr.Dataset) -> str:
    """When the final weights of the points with a replica distance were taken: 'at zero
    loss' if every replica of them stopped at zero training loss (a finite t*, run.stop
    zero_loss), else 'at the end of training' (run.stop never, or a budget exhausted)."""
    measured = np.isfinite(summary["replica_distance"])
    if "t_star" not in summary or not bool(measured.any()):
        return "at the end of training"
    stopped = np.isfinite(summary["t_star"]).all("replica")
    return "at zero loss" if bool((stopped | ~measured).all()) else "at the end of training"
