"""Width of the decision boundary at the end of training (docs/physics.md A7): the final
gap densities, and kappa_eff and the contacts against the replica distance, as the fit
stage measured them (analysis.margins, analysis.replica_distance)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

from sgdnoise.plots.common import (
    describe_point,
    final_state,
    has,
    legend_once,
    linear_below,
    points,
    save,
    title,
)
from sgdnoise.plots.dmft import unconverged


def margins(summary: xr.Dataset, out: str) -> None:
    """Final gap densities, and kappa_eff and contacts against the replica distance.

    Where the study has the DMFT: its final gap density (dashed, the colour of the
    point's simulated density) and its contact fraction against its own replica distance
    (open markers, 2 s.e. bars over solver seeds). kappa_eff = min_mu h_mu is an extreme
    of P samples, with no N -> infinity limit: it has no DMFT value.
    """
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.2))
    drawn = [p for p in points(summary) if np.isfinite(summary["replica_distance"].sel(p))]
    for index, point in enumerate(drawn):
        part, color = summary.sel(point), f"C{index % 10}"
        gaps = part["gap"].values
        left.plot(gaps, part["gap_density"].values, color=color, label=describe_point(point), lw=1)
        distance = float(part["replica_distance"])
        middle.errorbar(
            distance,
            float(part["kappa_eff"]),
            yerr=float(part["kappa_eff_stderr"]),
            marker="o",
            capsize=2,
            color=color,
        )
        right.errorbar(
            distance, float(part["contact_fraction"]), marker="o", color=color, label="simulation"
        )
        if has(part, "dmft_replica_distance"):
            legend = f"DMFT{unconverged(part)}"
            left.plot(gaps, part["dmft_gap_density"].values, "--", color=color, lw=1, label=legend)
            right.errorbar(
                float(part["dmft_replica_distance"]),
                float(part["dmft_contact_fraction"]),
                xerr=2 * float(part["dmft_replica_distance_stderr"]),
                yerr=2 * float(part["dmft_contact_fraction_stderr"]),
                marker="o",
                mfc="none",
                capsize=2,
                color=color,
                label=legend,
            )
    left.set_xlabel("gap h - kappa")
    left.set_ylabel("density")
    left.set_yscale("log")
    legend_once(left, fontsize=5, ncol=1, loc="upper right")
    for axis, name in ((middle, "kappa_eff = min h"), (right, "contacts / P")):
        axis.set_xscale("symlog", linthresh=linear_below(summary["replica_distance"]))
        axis.set_xlabel("replica distance")
        axis.set_ylabel(name)
        axis.grid(True, alpha=0.3)
    if has(summary, "dmft_replica_distance"):
        legend_once(right, fontsize=7)
    what = f"Width of the decision boundary {final_state(summary)}"
    figure.suptitle(title(summary, what), fontsize=10)
    figure.tight_layout()
    save(figure, out)
