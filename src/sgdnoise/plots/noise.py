"""Figures of the effective-noise study (docs/physics.md A5-A7): FDT plots, T_eff, replica
distance, their relation, and the width of the decision boundary.

Studies sweep the batch fraction b (axis ``b``), optimizer variants (axis ``optimizer``,
e.g. sgd and persistent_sgd at several tau) and, with a bundle axis ``regime``, the
under-parametrised (T_eff) and over-parametrised (replica distance) sides of the jamming
line. Every figure takes the points where its quantity was measured.
"""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.ticker import NullFormatter

from sgdnoise.analysis import fdt
from sgdnoise.analysis.replica_statistics import replicas_per_unit, standard_error
from sgdnoise.io.artifact import grid_axes, study_config
from sgdnoise.plots.common import fixed_parameters, label, save

MAIN_WINDOW = "s<=10/b"
FIT_WINDOWS = ("s<=1", "s<=3/b", "s<=10/b")


def _points(summary: xr.Dataset, exclude: tuple[str, ...] = ()) -> list[dict]:
    """Every combination of grid coordinates (minus ``exclude``), as selection dicts."""
    axes = [a for a in grid_axes(summary) if a not in exclude]
    values = [summary[a].values.tolist() for a in axes]
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*values)]


def _describe(selection: dict, drop: tuple[str, ...] = ("regime",)) -> str:
    """Short text of a point's coordinates (the regime is implied by the figure)."""
    return ", ".join(f"{k}={v}" for k, v in selection.items() if k not in drop)


def _hue_axis(summary: xr.Dataset, x_axis: str) -> list[dict]:
    """Curves of a figure: one per combination of the axes other than the x axis."""
    return _points(summary, exclude=(x_axis,))


def _title(summary: xr.Dataset, what: str) -> str:
    return f"{what}\nfixed: {fixed_parameters(summary)}"


def fdt_parametric(summary: xr.Dataset, out: str) -> None:
    """chi against C(t,t) - C(t,t_w) per point, with the fitted line chi = Delta C / T_eff
    (the longest fit window that has a value) and the DMFT's curve where the study has it."""
    points = [p for p in _points(summary) if np.isfinite(summary["fdt_chi"].sel(p)).any()]
    columns = min(4, max(1, len(points)))
    rows = max(1, int(np.ceil(len(points) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.2 * rows), squeeze=False)
    config = study_config(summary)
    for axis, point in zip(axes.flat, points, strict=False):
        part = summary.sel(point)
        delta_c, chi = part["fdt_delta_c"].values, part["fdt_chi"].values
        axis.plot(delta_c, chi, "o", ms=3, label="measured")
        if _has(part, "dmft_fdt_chi"):
            axis.plot(
                part["dmft_fdt_delta_c"].values, part["dmft_fdt_chi"].values, "-", label="DMFT"
            )
        fitted = [w for w in FIT_WINDOWS if np.isfinite(part["T_eff"].sel(window=w))]
        window = fitted[-1] if fitted else MAIN_WINDOW
        temperature = float(part["T_eff"].sel(window=window))
        span = np.linspace(0, np.nanmax(delta_c), 20)
        if np.isfinite(temperature):
            axis.plot(span, span / temperature, ":", label=f"fit {window}: T_eff={temperature:.3g}")
        imposed = point.get("temperature", config.get("optimizer", {}).get("temperature"))
        if imposed and "langevin" in str(point.get("optimizer", "langevin")):
            axis.plot(span, span / float(imposed), "k--", lw=1, label=f"slope 1/T, T={imposed}")
        stationary = bool(part["stationary"])
        title = _describe(point).replace(", ", "\n", 1)
        axis.set_title(title + ("" if stationary else " (NOT stationary)"), fontsize=8)
        axis.set_xlabel("C(t,t) - C(t,t_w)")
        axis.set_ylabel("chi(t, t_w)")
        axis.legend(fontsize=7)
    for axis in list(axes.flat)[len(points) :]:
        axis.axis("off")
    figure.suptitle(
        _title(summary, "FDT parametric plots (mean over replicas and t_w)"), fontsize=10
    )
    figure.tight_layout()
    save(figure, out)


def _errorbar(axis, x, centre, low, high, **style) -> None:
    centre, low, high = (np.asarray(v, dtype=float) for v in (centre, low, high))
    keep = np.isfinite(centre)
    if keep.any():
        yerr = np.vstack([centre - low, high - centre])[:, keep]
        axis.errorbar(
            np.asarray(x)[keep], centre[keep], yerr=np.abs(yerr), capsize=3, marker="o", **style
        )


def _theory_line(axis, x, centre, low, high, color: str, label: str) -> None:
    """A DMFT curve: a line with its uncertainty as a band of the same colour."""
    axis.plot(x, centre, "-", color=color, label=label)
    axis.fill_between(x, low, high, color=color, alpha=0.2, lw=0)


def _theory_with_stderr(axis, x, part: xr.Dataset, name: str, color: str, label: str) -> None:
    """The DMFT variable ``name`` of ``part`` against x, with a band of two standard errors
    over solver seeds (``<name>_stderr``; no band when the summary has none)."""
    centre = part[name].values
    band = 2 * part[f"{name}_stderr"].values if f"{name}_stderr" in part else 0.0
    _theory_line(axis, x, centre, centre - band, centre + band, color, label)


def _unconverged(part: xr.Dataset) -> str:
    """' (DMFT not converged)' when some DMFT solve of ``part`` did not converge, else ''."""
    if "dmft_status" not in part:
        return ""
    statuses = set(np.asarray(part["dmft_status"].values).astype(str).ravel())
    return "" if statuses <= {"converged"} else " (DMFT not converged)"


def _has(part: xr.Dataset, name: str) -> bool:
    """Whether the summary holds a variable with some finite value (e.g. the DMFT's)."""
    return name in part and bool(np.isfinite(part[name]).any())


def teff_vs_b(summary: xr.Dataset, out: str) -> None:
    """T_eff against b for each optimizer variant, one panel per fit window (log scales);
    the DMFT's T_eff (line, band: 95% interval over solver seeds) where the study has it."""
    windows = [w for w in FIT_WINDOWS if _has(summary.sel(window=w), "T_eff")] or [MAIN_WINDOW]
    figure, axes = plt.subplots(1, len(windows), figsize=(4.6 * len(windows), 4), squeeze=False)
    for axis, window in zip(axes[0], windows, strict=True):
        for index, curve in enumerate(_hue_axis(summary, "b")):
            part = summary.sel(curve).sel(window=window)
            color = f"C{index % 10}"
            if _has(part, "T_eff"):
                _errorbar(
                    axis,
                    part["b"].values,
                    part["T_eff"],
                    part["T_eff_low"],
                    part["T_eff_high"],
                    label=f"simulation {_describe(curve)}",
                    color=color,
                    linestyle="none",
                )
            if _has(part, "dmft_T_eff"):
                _theory_line(
                    axis,
                    part["b"].values,
                    part["dmft_T_eff"].values,
                    part["dmft_T_eff_low"].values,
                    part["dmft_T_eff_high"].values,
                    color,
                    f"DMFT {_describe(curve)}{_unconverged(part)}",
                )
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xticks(summary["b"].values, [f"{b:g}" for b in summary["b"].values])
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel(label("b"))
        axis.set_ylabel("effective temperature T_eff")
        axis.set_title(f"fit window {window}")
        axis.grid(True, which="both", alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    theory = " and DMFT (lines)" if _has(summary, "dmft_T_eff") else ""
    figure.suptitle(
        _title(
            summary,
            f"T_eff from the FDT: simulation (95% CI){theory}; stationary points only",
        ),
        fontsize=10,
    )
    figure.tight_layout()
    save(figure, out)


def dmft_vs_simulation(summary: xr.Dataset, out: str) -> None:
    """Theory and simulation at the same parameters: the loss against t and, when the
    study measures the response, the FDT's two ingredients C(t,t) - C(t,t_w) and
    chi(t,t_w) against s = t - t_w (mean over t_w).

    Simulation: markers (the loss with its standard error over replicas, a same-init pair
    counting once); DMFT: lines with a band of two standard errors over solver seeds.
    """
    two_time = "fdt_chi" in summary
    per_unit = replicas_per_unit(study_config(summary).get("run", {}))
    figure, axes = plt.subplots(1, 3 if two_time else 1, figsize=(15 if two_time else 6, 4.4))
    left, *fdt_axes = np.atleast_1d(axes)
    for index, point in enumerate(
        p for p in _points(summary) if _has(summary.sel(p), "dmft_train_loss")
    ):
        part = summary.sel(point)
        color, name = f"C{index % 10}", _describe(point)
        legend = f"DMFT {name}{_unconverged(part)}"
        loss = part["train_loss"].transpose("replica", ...)
        left.errorbar(
            part["time"].values,
            loss.mean("replica").values,
            yerr=standard_error(loss.values, per_unit),
            fmt="o",
            ms=3,
            color=color,
            label=f"simulation {name}",
        )
        _theory_with_stderr(left, part["time"].values, part, "dmft_train_loss", color, legend)
        for axis, quantity in zip(fdt_axes, ("fdt_delta_c", "fdt_chi"), strict=False):
            _theory_with_stderr(axis, part["lag"].values, part, f"dmft_{quantity}", color, legend)
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
        _title(summary, "DMFT (lines, 2 s.e. bands) against simulation (markers)"), fontsize=10
    )
    figure.tight_layout()
    save(figure, out)


def teff_vs_lr(summary: xr.Dataset, out: str) -> None:
    """T_eff / T of Langevin dynamics against the step lr, one panel per fit window:
    simulation (95% CI) and, where the study has it, the DMFT (line, band), each with its
    extrapolation to lr -> 0 linear in 1 / T_eff (fdt.zero_step_fit, dashed)."""
    config = study_config(summary)
    windows = [w for w in FIT_WINDOWS if _has(summary.sel(window=w), "T_eff")] or [MAIN_WINDOW]
    figure, axes = plt.subplots(1, len(windows), figsize=(5 * len(windows), 4.2), squeeze=False)
    for axis, window in zip(axes[0], windows, strict=True):
        for index, curve in enumerate(_points(summary, exclude=("lr",))):
            part = summary.sel(curve).sel(window=window)
            temperature = float(curve.get("temperature", config["optimizer"]["temperature"]))
            lr, color = part["lr"].values, f"C{index % 10}"
            span = np.linspace(0.0, lr.max(), 50)
            for source, fit_style in (("", ":"), ("dmft_", "--")):
                if not _has(part, f"{source}T_eff"):
                    continue
                centre = part[f"{source}T_eff"].values / temperature
                low = part[f"{source}T_eff_low"].values / temperature
                high = part[f"{source}T_eff_high"].values / temperature
                name = "DMFT" if source else "simulation"
                if source:
                    _theory_line(axis, lr, centre, low, high, color, f"{name} {_describe(curve)}")
                else:
                    _errorbar(
                        axis,
                        lr,
                        centre,
                        low,
                        high,
                        color=color,
                        linestyle="none",
                        label=f"{name} {_describe(curve)}",
                    )
                limit, slope = fdt.zero_step_fit(lr, centre)
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
        _title(summary, "Langevin dynamics: the FDT holds as lr -> 0 (finite lr biases T_eff)"),
        fontsize=10,
    )
    figure.tight_layout()
    save(figure, out)


def _final_state(summary: xr.Dataset) -> str:
    """When the final weights of the points with a replica distance were taken: 'at zero
    loss' if every replica of them stopped at zero training loss (a finite t*, run.stop
    zero_loss), else 'at the end of training' (run.stop never, or a budget exhausted)."""
    measured = np.isfinite(summary["replica_distance"])
    if "t_star" not in summary or not bool(measured.any()):
        return "at the end of training"
    stopped = np.isfinite(summary["t_star"]).all("replica")
    return "at zero loss" if bool((stopped | ~measured).all()) else "at the end of training"


def _legend_once(axis, **style) -> None:
    """The axis legend with one entry per distinct label (the first artist drawn with it)."""
    unique: dict[str, object] = {}
    for handle, text in zip(*axis.get_legend_handles_labels(), strict=True):
        unique.setdefault(text, handle)
    axis.legend(unique.values(), unique.keys(), **style)


def replica_distance_vs_b(summary: xr.Dataset, out: str) -> None:
    """Replica distance d = |w_a - w_b|^2 / N of same-init pairs at the end of training
    (zero loss where the runs stop there) against b, one curve per optimizer variant;
    where the study has it, the DMFT's d at the run's final time (line of the same colour,
    band: two standard errors over solver seeds). Log b, symmetric-log d (GD: d = 0)."""
    theory = _has(summary, "dmft_replica_distance")
    curves = [
        curve
        for curve in _hue_axis(summary, "b")
        if any(_has(summary.sel(curve), f"{source}replica_distance") for source in ("", "dmft_"))
    ]
    figure, axis = plt.subplots(figsize=(6, 4.2))
    for index, curve in enumerate(curves):
        part, color = summary.sel(curve), f"C{index % 10}"
        _errorbar(
            axis,
            part["b"].values,
            part["replica_distance"],
            part["replica_distance_low"],
            part["replica_distance_high"],
            label=f"simulation {_describe(curve)}" if theory else _describe(curve),
            color=color,
            linestyle="none" if theory else "-",
        )
        if _has(part, "dmft_replica_distance"):
            legend = f"DMFT {_describe(curve)}{_unconverged(part)}"
            _theory_with_stderr(
                axis, part["b"].values, part, "dmft_replica_distance", color, legend
            )
    axis.set_xscale("log")
    axis.set_xticks(summary["b"].values, [f"{b:g}" for b in summary["b"].values])
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_yscale("symlog", linthresh=_linear_below(summary["replica_distance"]))
    axis.set_ylim(bottom=0)
    axis.set_xlabel(label("b"))
    axis.set_ylabel("replica distance |w_a - w_b|^2 / N")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7)
    lines = " and DMFT (lines, 2 s.e. bands)" if theory else ""
    what = f"Replica distance {_final_state(summary)} (same init, 95% CI){lines}"
    axis.set_title(_title(summary, what), fontsize=9)
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


def _noise_measures(
    summary: xr.Dataset, window: str, prefix: str = ""
) -> tuple[xr.DataArray, xr.DataArray]:
    """The replica distance and the effective temperature (fit ``window``) of the
    simulation (prefix '') or of the DMFT (prefix 'dmft_'), on the grid without a regime.

    With the sum normalisation the temperature is T_eff / b (the mean drift of SGD is
    b grad L). With a bundle axis ``regime`` each measure is taken from the regime where
    it was measured (T_eff: UNSAT, distance: SAT).
    """
    teff = summary[f"{prefix}T_eff"].sel(window=window)
    if _per_drift(summary):
        teff = teff / teff["b"]
    distance = summary[f"{prefix}replica_distance"]
    if "regime" in summary.dims:
        teff = teff.dropna("regime", how="all").squeeze("regime", drop=True)
        distance = distance.dropna("regime", how="all").squeeze("regime", drop=True)
    return distance, teff


def _per_drift(summary: xr.Dataset) -> bool:
    """Whether the comparable temperature is T_eff / b (gradient summed over the batch)."""
    config = study_config(summary)
    summed = config.get("optimizer", {}).get("batch_normalization") == "sum"
    return summed and "b" in summary["T_eff"].dims


def _linear_below(distance: xr.DataArray) -> float:
    """The symlog threshold of a distance axis: a decade below the smallest positive
    distance (GD's d = 0 still shows, the measured values sit on the log part)."""
    positive = distance.values[np.isfinite(distance.values) & (distance.values > 0)]
    return 10.0 ** (np.floor(np.log10(positive.min())) - 1) if positive.size else 1e-6


def teff_vs_distance(summary: xr.Dataset, out: str) -> None:
    """T_eff (UNSAT) against replica distance (SAT) at the same (b, optimizer): same trend.

    With the sum normalisation the mean drift of SGD is b grad L, so the temperature
    comparable across b is T_eff / b (docs/physics.md A7b: it grows as b decreases). Where the
    study has the DMFT, its (d, T_eff) at the same points are drawn per optimizer as a line
    with open markers of the simulation's colour, with the same normalisation. T_eff is
    read in the longest fit window measured at every point (_common_window).
    """
    window = _common_window(summary["T_eff"])
    distance, teff = _noise_measures(summary, window)
    theory = _has(summary, "dmft_replica_distance") and _has(summary, "dmft_T_eff")
    if theory:
        theory_distance, theory_teff = _noise_measures(summary, window, "dmft_")
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
                label=f"DMFT {group}{_unconverged(summary.sel(select))}",
            )
    axis.set_xscale("log")
    axis.set_yscale("log")
    bundled = "regime" in summary.dims  # each measure from its own side of the jamming line
    axis.set_xlabel("replica distance" + (" (over-parametrised)" if bundled else ""))
    quantity = "T_eff / b" if _per_drift(summary) else "T_eff"
    axis.set_ylabel(f"{quantity}, window {window}" + (" (under-parametrised)" if bundled else ""))
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7)
    lines = "; DMFT: open markers on lines" if theory else ""
    axis.set_title(
        _title(summary, f"The two noise measures move together across the grid{lines}"),
        fontsize=9,
    )
    save(figure, out)


def margins(summary: xr.Dataset, out: str) -> None:
    """Final gap densities, and kappa_eff and contacts against the replica distance.

    Where the study has the DMFT: its final gap density (dashed, the colour of the
    point's simulated density) and its contact fraction against its own replica distance
    (open markers, 2 s.e. bars over solver seeds). kappa_eff = min_mu h_mu is an extreme
    of P samples, with no N -> infinity limit: it has no DMFT value.
    """
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4.2))
    points = [p for p in _points(summary) if np.isfinite(summary["replica_distance"].sel(p))]
    for index, point in enumerate(points):
        part, color = summary.sel(point), f"C{index % 10}"
        gaps = part["gap"].values
        left.plot(gaps, part["gap_density"].values, color=color, label=_describe(point), lw=1)
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
        if _has(part, "dmft_replica_distance"):
            legend = f"DMFT{_unconverged(part)}"
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
    _legend_once(left, fontsize=5, ncol=1, loc="upper right")
    for axis, name in ((middle, "kappa_eff = min h"), (right, "contacts / P")):
        axis.set_xscale("symlog", linthresh=_linear_below(summary["replica_distance"]))
        axis.set_xlabel("replica distance")
        axis.set_ylabel(name)
        axis.grid(True, alpha=0.3)
    if _has(summary, "dmft_replica_distance"):
        _legend_once(right, fontsize=7)
    what = f"Width of the decision boundary {_final_state(summary)}"
    figure.suptitle(_title(summary, what), fontsize=10)
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
        for point in _points(summary, exclude=("temperature",)):
            selected, color = part.sel(point), f"C{index % 10}"
            index += 1
            _errorbar(
                axis,
                temperatures,
                selected["T_eff"],
                selected["T_eff_low"],
                selected["T_eff_high"],
                label=f"{window} {_describe(point)}",
                alpha=0.8,
                color=color,
                linestyle="none",
            )
            if _has(selected, "dmft_T_eff"):
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
    axis.set_title(_title(summary, "Calibration: the FDT recovers a known temperature"), fontsize=9)
    save(figure, out)
