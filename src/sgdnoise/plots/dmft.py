"""The DMFT beside the simulation: how a theory curve is drawn on the noise figures, and
the figure comparing the two directly.

A DMFT quantity is a line of the simulation's colour with a band: its uncertainty over
solver seeds (analysis.dmft_fits). The legend says when some solve did not converge.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from sgdnoise.plots.common import describe_point, has, label, points, require, save, title


def theory_line(axis, x, centre, low, high, color: str, legend: str) -> None:
    """A DMFT curve: a line with its uncertainty as a band of the same colour."""
    axis.plot(x, centre, "-", color=color, label=legend)
    axis.fill_between(x, low, high, color=color, alpha=0.2, lw=0)


def theory_with_stderr(axis, x, part: xr.Dataset, name: str, color: str, legend: str) -> None:
    """The DMFT variable ``name`` of ``part`` against x, with a band of two standard errors
    over solver seeds (``<name>_stderr``; no band when the summary has none)."""
    centre = part[name].values
    band = 2 * part[f"{name}_stderr"].values if f"{name}_stderr" in part else 0.0
    theory_line(axis, x, centre, centre - band, centre + band, color, legend)


def unconverged(part: xr.Dataset) -> str:
    """' (DMFT not converged)' when some DMFT solve of ``part`` did not converge, else ''."""
    if "dmft_status" not in part:
        return ""
    statuses = set(np.asarray(part["dmft_status"].values).astype(str).ravel())
    return "" if statuses <= {"converged"} else " (DMFT not converged)"


def dmft_vs_simulation(summary: xr.Dataset, out: str) -> None:
    """Theory and simulation at the same parameters: the loss against t and, when the
    study measures the response, the FDT's two ingredients C(t,t) - C(t,t_w) and
    chi(t,t_w) against s = t - t_w (mean over t_w).

    Simulation: markers (the loss's mean over replicas with its standard error over units,
    a same-init pair counting once: stages.fit); DMFT: lines with a band of two standard
    errors over solver seeds.
    """
    require(
        summary,
        ("train_loss_mean", "train_loss_stderr"),
        "dmft_vs_simulation",
        "the fit stage beside the DMFT (stages.fit: rerun the fit rule)",
    )
    two_time = "fdt_chi" in summary
    figure, axes = plt.subplots(1, 3 if two_time else 1, figsize=(15 if two_time else 6, 4.4))
    left, *fdt_axes = np.atleast_1d(axes)
    for index, point in enumerate(
        p for p in points(summary) if has(summary.sel(p), "dmft_train_loss")
    ):
        part = summary.sel(point)
        color, name = f"C{index % 10}", describe_point(point)
        legend = f"DMFT {name}{unconverged(part)}"
        left.errorbar(
            part["time"].values,
            part["train_loss_mean"].values,
            yerr=part["train_loss_stderr"].values,
            fmt="o",
            ms=3,
            color=color,
            label=f"simulation {name}",
        )
        theory_with_stderr(left, part["time"].values, part, "dmft_train_loss", color, legend)
        for axis, quantity in zip(fdt_axes, ("fdt_delta_c", "fdt_chi"), strict=False):
            theory_with_stderr(axis, part["lag"].values, part, f"dmft_{quantity}", color, legend)
            axis.plot(part["lag"].values, part[quantity].values, "o", ms=3, color=color)
    left.set_xlabel(label("time"))
    left.set_ylabel(label("train_loss"))
    left.set_yscale("log")
    for axis, name in zip(fdt_axes, ("C(t,t) - C(t,t_w)", "chi(t, t_w)"), strict=False):
        axis.set_xlabel("time difference s = t - t_w (lr x steps)")
        axis.set_ylabel(f"{name}, mean over t_w")
    for axis in (left, *fdt_axes):
        axis.grid(True, alpha=0.3)
    (fdt_axes or [left])[-1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1))
    figure.suptitle(
        title(summary, "DMFT (lines, 2 s.e. bands) against simulation (markers)"), fontsize=10
    )
    figure.tight_layout()
    save(figure, out)
