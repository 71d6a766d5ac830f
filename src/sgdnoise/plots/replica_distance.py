"""Figures of the replica distance (docs/physics.md A6, A7b): d = |w_a - w_b|^2 / N of
same-init pairs against b, and its relation to the effective temperature.

Studies sweep the batch fraction b (axis ``b``), optimizer variants (axis ``optimizer``)
and, with a bundle axis ``regime``, the over-parametrised side (replica distance) and the
under-parametrised side (T_eff) of the jamming line. The distance and its interval are the
fit stage's (analysis.replica_distance), T_eff per unit drift too (analysis.fdt).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.ticker import NullFormatter

from sgdnoise.io.artifact import study_config
from sgdnoise.plots.common import (
    describe_point,
    errorbar,
    final_state,
    has,
    label,
    linear_below,
    noise_axis,
    points,
    require,
    save,
    title,
)
from sgdnoise.plots.dmft import theory_with_stderr, unconverged
from sgdnoise.plots.fdt import FIT_WINDOWS, MAIN_WINDOW


def replica_distance_vs_b(summary: xr.Dataset, out: str) -> None:
    """Replica distance d = |w_a - w_b|^2 / N of same-init pairs at the end of training
    (zero loss where the runs stop there) against b, one curve per optimizer variant;
    where the study has it, the DMFT's d at the run's final time (line of the same colour,
    band: two standard errors over solver seeds). Log b (or minibatch SGD's B, the noise
    axis the study sweeps), symmetric-log d (GD: d = 0)."""
    noise = noise_axis(summary)
    theory = has(summary, "dmft_replica_distance")
    curves = [
        curve
        for curve in points(summary, exclude=(noise,))
        if any(has(summary.sel(curve), f"{source}replica_distance") for source in ("", "dmft_"))
    ]
    figure, axis = plt.subplots(figsize=(6, 4.2))
    for index, curve in enumerate(curves):
        part, color = summary.sel(curve), f"C{index % 10}"
        errorbar(
            axis,
            part[noise].values,
            part["replica_distance"],
            part["replica_distance_low"],
            part["replica_distance_high"],
            label=f"simulation {describe_point(curve)}" if theory else describe_point(curve),
            color=color,
            linestyle="none" if theory else "-",
        )
        if has(part, "dmft_replica_distance"):
            legend = f"DMFT {describe_point(curve)}{unconverged(part)}"
            theory_with_stderr(
                axis, part[noise].values, part, "dmft_replica_distance", color, legend
            )
    axis.set_xscale("log")
    axis.set_xticks(summary[noise].values, [f"{value:g}" for value in summary[noise].values])
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_yscale("symlog", linthresh=linear_below(summary["replica_distance"]))
    axis.set_ylim(bottom=0)
    axis.set_xlabel(label(noise))
    axis.set_ylabel("replica distance |w_a - w_b|^2 / N")
    axis.grid(True, which="both", alpha=0.3)
    if any(axis.get_legend_handles_labels()[1]):  # one unnamed curve needs no legend
        axis.legend(fontsize=7)
    lines = " and DMFT (lines, 2 s.e. bands)" if theory else ""
    what = f"Replica distance {final_state(summary)} (same init, 95% CI){lines}"
    axis.set_title(title(summary, what), fontsize=9)
    save(figure, out)


def _common_window(teff: xr.DataArray) -> str:
    """The longest fit window (FIT_WINDOWS) with a T_eff at every point that has one in
    some window (a short max_lag leaves the long windows empty at small b)."""
    measured = np.isfinite(teff).any("window")
    for window in reversed(FIT_WINDOWS):
        finite = np.isfinite(teff.sel(window=window))
        if bool(finite.any()) and bool((finite | ~measured).all()):
            return window
    return MAIN_WINDOW


def _per_drift(summary: xr.Dataset) -> bool:
    """Whether the temperature comparable across a swept b is T_eff / b (gradient summed
    over the batch: the mean drift of SGD is b grad L)."""
    summed = study_config(summary).optimizer.batch_normalization == "sum"
    return summed and "b" in summary["T_eff"].dims


def _noise_measures(
    summary: xr.Dataset, window: str, temperature: str, prefix: str = ""
) -> tuple[xr.DataArray, xr.DataArray]:
    """The replica distance and the effective temperature ``temperature`` (T_eff or
    T_eff_per_drift, fit ``window``) of the simulation (prefix '') or of the DMFT (prefix
    'dmft_'), on the grid without a regime: with a bundle axis ``regime`` each measure is
    taken from the regime where it was measured (T_eff: UNSAT, distance: SAT)."""
    teff = summary[f"{prefix}{temperature}"].sel(window=window)
    distance = summary[f"{prefix}replica_distance"]
    if "regime" in summary.dims:
        teff = teff.dropna("regime", how="all").squeeze("regime", drop=True)
        distance = distance.dropna("regime", how="all").squeeze("regime", drop=True)
    return distance, teff


def teff_vs_distance(summary: xr.Dataset, out: str) -> None:
    """T_eff (UNSAT) against replica distance (SAT) at the same (b, optimizer): same trend.

    With the sum normalisation the mean drift of SGD is b grad L, so the temperature
    comparable across b is T_eff / b (docs/physics.md A7b: it grows as b decreases), the fit
    stage's T_eff_per_drift. Where the study has the DMFT, its (d, T_eff) at the same points
    are drawn per optimizer as a line with open markers of the simulation's colour, with the
    same normalisation. T_eff is read in the longest fit window measured at every point
    (_common_window).
    """
    window = _common_window(summary["T_eff"])
    per_drift = _per_drift(summary)
    temperature = "T_eff_per_drift" if per_drift else "T_eff"
    theory = has(summary, "dmft_replica_distance") and has(summary, "dmft_T_eff")
    needed = [temperature, *([f"dmft_{temperature}"] if theory else [])]
    require(summary, needed, "teff_vs_distance", "the fit stage (analysis.fdt.temperature_ratios)")
    distance, teff = _noise_measures(summary, window, temperature)
    if theory:
        theory_distance, theory_teff = _noise_measures(summary, window, temperature, "dmft_")
    figure, axis = plt.subplots(figsize=(5.5, 4.5))
    hue = "optimizer" if "optimizer" in teff.dims else None
    groups = teff[hue].values.tolist() if hue else [None]
    for index, group in enumerate(groups):
        select, color = ({hue: group} if hue else {}), f"C{index % 10}"
        x, y = distance.sel(select), teff.sel(select)
        axis.plot(x.values.ravel(), y.values.ravel(), "o", color=color, label=str(group))
        if theory:
            axis.plot(
                theory_distance.sel(select).values.ravel(),
                theory_teff.sel(select).values.ravel(),
                "-o",
                mfc="none",
                color=color,
                label=f"DMFT {group}{unconverged(summary.sel(select))}",
            )
    axis.set_xscale("log")
    axis.set_yscale("log")
    bundled = "regime" in summary.dims  # each measure from its own side of the jamming line
    axis.set_xlabel("replica distance" + (" (over-parametrised)" if bundled else ""))
    quantity = "T_eff / b" if per_drift else "T_eff"
    axis.set_ylabel(f"{quantity}, window {window}" + (" (under-parametrised)" if bundled else ""))
    axis.grid(True, which="both", alpha=0.3)
    if any(axis.get_legend_handles_labels()[1]):  # one unnamed curve needs no legend
        axis.legend(fontsize=7)
    lines = "; DMFT: open markers on lines" if theory else ""
    axis.set_title(
        title(summary, f"The two noise measures move together across the grid{lines}"),
        fontsize=9,
    )
    save(figure, out)
