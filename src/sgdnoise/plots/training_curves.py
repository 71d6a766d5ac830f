"""Training curves: loss and training error against time, one panel per regime."""

from __future__ import annotations

import matplotlib.pyplot as plt
import seaborn as sns
import xarray as xr

from sgdnoise.io.artifact import grid_axes
from sgdnoise.plots.common import fixed_parameters, label, save


def _panel_label(values: dict) -> str:
    return ", ".join(f"{label(k)} = {v}" for k, v in values.items()) or "all points"


def training_curves(summary: xr.Dataset, out: str) -> None:
    """Loss (log scale) and training error vs time (log scale), mean over replicas +- s.e.

    Colour: the optimizer variant (or the first grid axis); one column per value of the
    remaining axes (e.g. P/N below and above the jamming line).
    """
    axes = list(grid_axes(summary))
    hue = "optimizer" if "optimizer" in axes else (axes[0] if axes else None)
    panel_axes = [a for a in axes if a != hue]
    frame = summary[["train_loss", "train_error"]].to_dataframe().reset_index()
    frame = frame[frame["time"] > 0]  # NaN: records a shorter run does not have
    if panel_axes:
        frame["panel"] = frame[panel_axes].astype(str).agg(", ".join, axis=1)
        panels = sorted(frame["panel"].unique())
    else:
        frame["panel"], panels = "all", ["all"]
    figure, grid = plt.subplots(
        2, len(panels), figsize=(4.8 * len(panels), 7), squeeze=False, sharex=True
    )
    for column, panel in enumerate(panels):
        part = frame[frame["panel"] == panel]
        for row, observable in enumerate(["train_loss", "train_error"]):
            axis = grid[row, column]
            positive = part[part[observable] > 0] if observable == "train_loss" else part
            sns.lineplot(
                data=positive,
                x="time",
                y=observable,
                hue=hue,
                errorbar="se",
                ax=axis,
                legend=(row == 0 and column == len(panels) - 1),
            )
            axis.set_xscale("log")
            if observable == "train_loss":
                axis.set_yscale("log")
            axis.set_xlabel(label("time"))
            axis.set_ylabel(label(observable))
            if row == 0:
                values = dict(zip(panel_axes, panel.split(", "), strict=True)) if panel_axes else {}
                axis.set_title(_panel_label(values))
            axis.grid(True, which="major", alpha=0.3)
    handles = grid[0, -1].get_legend()
    if handles is not None:
        sns.move_legend(grid[0, -1], "upper left", bbox_to_anchor=(1.02, 1), title=label(hue or ""))
    replicas = summary.sizes.get("replica", 1)
    figure.suptitle(
        f"Training curves ({replicas} replicas, mean +- s.e.)\nfixed: {fixed_parameters(summary)}",
        fontsize=10,
    )
    figure.tight_layout()
    save(figure, out)
