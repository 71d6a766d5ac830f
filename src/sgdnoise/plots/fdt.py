"""Figures of the effective temperature from the FDT (docs/physics.md A5, A7b): the
parametric plots it is fitted on, T_eff against b, the Langevin calibration against a known
temperature, and the discretisation bias of T_eff against the step lr.

T_eff, its intervals and its ratios are the fit stage's (analysis.fdt); the extrapolation
to lr -> 0 is the study fits' (stages.study_fits, analysis discretisation).
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
    has,
    label,
    noise_axis,
    points,
    require,
    save,
    title,
)
from sgdnoise.plots.dmft import theory_line, unconverged

MAIN_WINDOW = "s<=10/b"
FIT_WINDOWS = ("s<=1", "s<=3/b", "s<=10/b")


def fdt_parametric(summary: xr.Dataset, out: str) -> None:
    """chi against C(t,t) - C(t,t_w) per point, with the fitted line chi = Delta C / T_eff
    (the longest fit window that has a value) and the DMFT's curve where the study has it."""
    drawn = [p for p in points(summary) if np.isfinite(summary["fdt_chi"].sel(p)).any()]
    columns = min(4, max(1, len(drawn)))
    rows = max(1, int(np.ceil(len(drawn) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.2 * rows), squeeze=False)
    config = study_config(summary)
    for axis, point in zip(axes.flat, drawn, strict=False):
        part = summary.sel(point)
        delta_c, chi = part["fdt_delta_c"].values, part["fdt_chi"].values
        axis.plot(delta_c, chi, "o", ms=3, label="measured")
        if has(part, "dmft_fdt_chi"):
            axis.plot(
                part["dmft_fdt_delta_c"].values, part["dmft_fdt_chi"].values, "-", label="DMFT"
            )
        fitted = [w for w in FIT_WINDOWS if np.isfinite(part["T_eff"].sel(window=w))]
        window = fitted[-1] if fitted else MAIN_WINDOW
        temperature = float(part["T_eff"].sel(window=window))
        span = np.linspace(0, np.nanmax(delta_c), 20)
        if np.isfinite(temperature):
            axis.plot(span, span / temperature, ":", label=f"fit {window}: T_eff={temperature:.3g}")
        imposed = point.get("temperature", config.optimizer.temperature)
        if imposed and "langevin" in str(point.get("optimizer", config.optimizer.kind)):
            axis.plot(span, span / float(imposed), "k--", lw=1, label=f"slope 1/T, T={imposed}")
        stationary = bool(part["stationary"])
        heading = describe_point(point).replace(", ", "\n", 1)
        axis.set_title(heading + ("" if stationary else " (NOT stationary)"), fontsize=8)
        axis.set_xlabel("C(t,t) - C(t,t_w)")
        axis.set_ylabel("chi(t, t_w)")
        axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(drawn) :]:
        axis.axis("off")
    figure.suptitle(
        title(summary, "FDT parametric plots (mean over replicas and t_w)"), fontsize=10
    )
    figure.tight_layout()
    save(figure, out)


def teff_vs_b(summary: xr.Dataset, out: str) -> None:
    """T_eff against the noise axis (b, or minibatch SGD's B) for each optimizer variant,
    one panel per fit window (log scales); the DMFT's T_eff (line, band: 95% interval over
    solver seeds) where the study has it."""
    noise = noise_axis(summary)
    windows = [w for w in FIT_WINDOWS if has(summary.sel(window=w), "T_eff")] or [MAIN_WINDOW]
    figure, axes = plt.subplots(1, len(windows), figsize=(4.6 * len(windows), 4), squeeze=False)
    for axis, window in zip(axes[0], windows, strict=True):
        for index, curve in enumerate(points(summary, exclude=(noise,))):
            part = summary.sel(curve).sel(window=window)
            color = f"C{index % 10}"
            if has(part, "T_eff"):
                errorbar(
                    axis,
                    part[noise].values,
                    part["T_eff"],
                    part["T_eff_low"],
                    part["T_eff_high"],
                    label=f"simulation {describe_point(curve)}",
                    color=color,
                    linestyle="none",
                )
            if has(part, "dmft_T_eff"):
                theory_line(
                    axis,
                    part[noise].values,
                    part["dmft_T_eff"].values,
                    part["dmft_T_eff_low"].values,
                    part["dmft_T_eff_high"].values,
                    color,
                    f"DMFT {describe_point(curve)}{unconverged(part)}",
                )
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xticks(summary[noise].values, [f"{value:g}" for value in summary[noise].values])
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel(label(noise))
        axis.set_ylabel("effective temperature T_eff")
        axis.set_title(f"fit window {window}")
        axis.grid(True, which="both", alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    theory = " and DMFT (lines)" if has(summary, "dmft_T_eff") else ""
    figure.suptitle(
        title(summary, f"T_eff from the FDT: simulation (95% CI){theory}; stationary points only"),
        fontsize=10,
    )
    figure.tight_layout()
    save(figure, out)


def teff_vs_lr(summary: xr.Dataset, out: str, fits: xr.Dataset | None = None) -> None:
    """T_eff / T of Langevin dynamics against the step lr, one panel per fit window:
    simulation (95% CI) and, where the study has it, the DMFT (line, band), each with its
    extrapolation to lr -> 0 linear in 1 / T_eff (dashed; the study fits', fdt.
    zero_step_extrapolation, computed by `sgdnoise study-fits --analyses discretisation`)."""
    require(summary, ("T_eff_over_T",), "teff_vs_lr", "the fit stage (a Langevin temperature)")
    require(
        fits,
        ("zero_step_T_eff_over_T", "zero_step_slope"),
        "teff_vs_lr",
        "the study fits of the discretisation analysis (--fits fits.nc of `sgdnoise "
        "study-fits --analyses discretisation`)",
    )
    windows = [w for w in FIT_WINDOWS if has(summary.sel(window=w), "T_eff")] or [MAIN_WINDOW]
    figure, axes = plt.subplots(1, len(windows), figsize=(5 * len(windows), 4.2), squeeze=False)
    for axis, window in zip(axes[0], windows, strict=True):
        for index, curve in enumerate(points(summary, exclude=("lr",))):
            part = summary.sel(curve).sel(window=window)
            extrapolated = fits.sel(curve).sel(window=window)
            lr, color = part["lr"].values, f"C{index % 10}"
            span = np.linspace(0.0, lr.max(), 50)
            for source, fit_style in (("", ":"), ("dmft_", "--")):
                if not has(part, f"{source}T_eff_over_T"):
                    continue
                centre, low, high = (
                    part[f"{source}T_eff_over_T{suffix}"].values for suffix in ("", "_low", "_high")
                )
                name = "DMFT" if source else "simulation"
                if source:
                    theory_line(
                        axis, lr, centre, low, high, color, f"{name} {describe_point(curve)}"
                    )
                else:
                    errorbar(
                        axis,
                        lr,
                        centre,
                        low,
                        high,
                        color=color,
                        linestyle="none",
                        label=f"{name} {describe_point(curve)}",
                    )
                limit = float(extrapolated[f"{source}zero_step_T_eff_over_T"])
                slope = float(extrapolated[f"{source}zero_step_slope"])
                if np.isfinite(limit):
                    axis.plot(
                        span,
                        1.0 / (1.0 / limit + slope * span),
                        fit_style,
                        color=color,
                        lw=1,
                        label=f"{name} at lr -> 0: T_eff / T = {limit:.3f}",
                    )
        axis.axhline(1.0, color="black", lw=1, label="T_eff = T (the FDT)")
        axis.set_xlim(left=0.0)
        axis.set_xlabel("step lr (time per step)")
        axis.set_ylabel("T_eff / T (95% CI)")
        axis.set_title(f"fit window {window}")
        axis.grid(True, alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    figure.suptitle(
        title(summary, "Langevin dynamics: the FDT holds as lr -> 0 (finite lr biases T_eff)"),
        fontsize=10,
    )
    figure.tight_layout()
    save(figure, out)


def langevin_calibration(summary: xr.Dataset, out: str) -> None:
    """Measured T_eff against the imposed Langevin temperature, with the line T_eff = T
    and, where the study has it, the DMFT's T_eff at the same lr (lines)."""
    figure, axis = plt.subplots(figsize=(5.5, 4.5))
    temperatures = summary["temperature"].values
    index = 0
    for window in FIT_WINDOWS:
        part = summary.sel(window=window)
        for point in points(summary, exclude=("temperature",)):
            selected, color = part.sel(point), f"C{index % 10}"
            index += 1
            errorbar(
                axis,
                temperatures,
                selected["T_eff"],
                selected["T_eff_low"],
                selected["T_eff_high"],
                label=f"{window} {describe_point(point)}",
                alpha=0.8,
                color=color,
                linestyle="none",
            )
            if has(selected, "dmft_T_eff"):
                axis.plot(
                    temperatures,
                    selected["dmft_T_eff"].values,
                    "-",
                    color=color,
                    label=f"DMFT {window}",
                )
    span = np.linspace(0, temperatures.max() * 1.1, 10)
    axis.plot(span, span, "k--", lw=1, label="T_eff = T")
    axis.set_xlabel("imposed Langevin temperature T")
    axis.set_ylabel("measured T_eff (95% CI)")
    axis.legend(fontsize=7)
    axis.grid(True, alpha=0.3)
    axis.set_title(title(summary, "Calibration: the FDT recovers a known temperature"), fontsize=9)
    save(figure, out)
