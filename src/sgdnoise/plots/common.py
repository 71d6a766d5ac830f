"""What every figure shares: reading a summary, naming its axes, titling what is fixed."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import xarray as xr  # noqa: E402

from sgdnoise.io.artifact import grid_axes, study_config  # noqa: E402

# Readable labels of grid axes and observables (units after a comma).
LABELS = {
    "P_over_N": "P/N",
    "b": "batch fraction b",
    "tau": "persistence tau (lr x steps)",
    "kappa": "margin kappa",
    "alpha": "alpha (output scale)",
    "temperature": "temperature T",
    "time": "time t (lr x steps)",
    "train_loss": "training loss per sample",
    "train_error": "training error (h < 0)",
    "violated_fraction": "violated fraction (h < kappa)",
    "test_error": "test error",
}


def fixed_parameters(summary: xr.Dataset) -> str:
    """A title fragment with the parameters held fixed across the study."""
    config = study_config(summary)
    if not config:
        return ""
    swept = set(json.loads(summary.attrs.get("swept_paths", "[]"))) or set(
        grid_axes(summary).values()
    )
    if "data.P_over_N" in swept:
        swept.add("data.P")

    def show(path: str, label: str) -> str | None:
        if any(path == s or path.startswith(s + ".") for s in swept):
            return None
        node = config
        for key in path.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        return (
            None
            if node is None
            else f"{label}={node:g}"
            if isinstance(node, float)
            else f"{label}={node}"
        )

    items = [
        show("data.kind", "data"),
        show("data.N", "N"),
        show("data.P", "P"),
        show("loss.kind", "loss"),
        show("loss.kappa", "kappa"),
        show("model.constraint", "constraint"),
        show("model.ridge", "ridge")
        if config.get("model", {}).get("constraint") == "ridge"
        else None,
        show("optimizer.lr", "lr"),
        show("optimizer.temperature", "T"),
        show("run.replicas", "replicas"),
    ]
    return ", ".join(item for item in items if item)


def label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " "))


def save(figure: plt.Figure, out: str) -> None:
    figure.savefig(out, dpi=120, bbox_inches="tight")
    plt.close(figure)
