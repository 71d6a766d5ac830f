"""Figures of the alpha-trick networks (docs/physics.md B5): the (alpha, T) phase diagram of
the test error, the test error against T at fixed alpha for several P, and the optimal
temperature T_opt against alpha with its exponent k (from the study fits)."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.patches import Patch

from sgdnoise.analysis.optimal_temperature import DEPTH
from sgdnoise.analysis.phase_diagram import (
    ALPHA,
    LAZY_KERNEL_CHANGE,
    NOISE_FACTOR,
    SAMPLES,
    TEMPERATURE,
    cell_statistics,
    phase_diagram,
    swept_dimension,
)
from sgdnoise.io.artifact import grid_axes, study_config
from sgdnoise.plots.common import errorbar, require, save, selections

LOG2_ALPHA = "log2 alpha (alpha: output scale of F = alpha (f - f0))"
LOG2_TEMPERATURE = "log2 T (T = lr / (h B), dimensionless)"


def network_setting(summary: xr.Dataset, swept: set[str]) -> str:
    """What every cell shares: architecture, data, batch size, seeds (title text)."""
    config = study_config(summary)
    model, data, optimizer = config.model, config.data, config.optimizer
    architecture = f"{model.kind}"
    if model.kind == "fcn" and DEPTH not in swept:
        architecture += f" L={model.depth}"
    architecture += f" h={model.width} {model.activation}"
    parts = [architecture, data.kind]
    if SAMPLES not in swept:
        parts.append(f"P={data.P}")
    parts += [
        f"P_test={data.P_test}",
        f"B={optimizer.batch_size}",
        f"{config.loss.kind} at margin 1/alpha",
        f"{config.run.replicas} seeds",
    ]
    return ", ".join(parts)


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres (midpoints; the outer cells mirrored)."""
    if len(centres) == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    middle = 0.5 * (centres[1:] + centres[:-1])
    return np.concatenate([[2 * centres[0] - middle[0]], middle, [2 * centres[-1] - middle[-1]]])


def _panels(statistics: xr.Dataset, keep: tuple[str, ...]) -> list[dict]:
    """Every combination of the dims other than ``keep``, as selection dicts."""
    return selections(statistics, [d for d in statistics.dims if d not in keep])


def _draw_cells(axis, cell: xr.Dataset, alpha_dim: str, temperature_dim: str, image_range):
    """Heat map of the mean test error, hatched where replicas diverged or did not finish."""
    cell = cell.sortby(alpha_dim).sortby(temperature_dim).transpose(temperature_dim, alpha_dim)
    x = np.log2(cell[alpha_dim].values.astype(float))
    y = np.log2(cell[temperature_dim].values.astype(float))
    x_edges, y_edges = _edges(x), _edges(y)
    error = cell["test_error"].values
    axis.set_facecolor("0.75")  # cells where every replica diverged: no predictor
    image = axis.pcolormesh(
        x_edges, y_edges, error, cmap="viridis", vmin=image_range[0], vmax=image_range[1]
    )
    for i, j in itertools.product(range(len(y)), range(len(x))):
        box = dict(
            xy=(x_edges[j], y_edges[i]),
            width=x_edges[j + 1] - x_edges[j],
            height=y_edges[i + 1] - y_edges[i],
            fill=False,
            lw=0,
        )
        if cell["diverged_fraction"].values[i, j] > 0:
            axis.add_patch(plt.Rectangle(hatch="xx", edgecolor="red", **box))
        elif cell["unfinished_fraction"].values[i, j] > 0:
            axis.add_patch(plt.Rectangle(hatch="//", edgecolor="white", **box))
        if np.isfinite(error[i, j]) and len(x) * len(y) <= 150:
            axis.text(  # in the upper part of the cell, clear of the boundary markers
                x[j],
                y[i] + 0.3 * (y_edges[i + 1] - y_edges[i]),
                f"{error[i, j]:.3f}",
                ha="center",
                va="center",
                fontsize=7,
                color="k" if error[i, j] > np.mean(image_range) else "white",
            )
    axis.set_xlim(x_edges[0], x_edges[-1])
    axis.set_ylim(y_edges[0], y_edges[-1])
    return image


def phase_diagram_figure(summary: xr.Dataset, out: str) -> None:
    """Test error (seed mean) over log2 alpha and log2 T, one panel per other grid value.

    Red cross-hatched cells: at least one replica diverged (the mean is over the others;
    grey where all did); white hatching: at least one replica exhausted its budget before
    zero training loss. Lines: the lazy/feature crossover (kernel change = 1) and the
    noise boundary (weight change doubled by noise); stars: the best temperature.
    """
    diagram = phase_diagram(summary)
    alpha_dim, temperature_dim = diagram.attrs["alpha_dim"], diagram.attrs["temperature_dim"]
    panels = _panels(diagram, (alpha_dim, temperature_dim))
    # colour scale from the cells whose replicas all reached zero loss (the survivors of
    # diverged or unfinished cells can be wild; they saturate the scale)
    finished = (diagram["diverged_fraction"] == 0) & (diagram["unfinished_fraction"] == 0)
    errors = diagram["test_error"].where(finished).values
    image_range = (np.nanmin(errors), np.nanmax(errors)) if np.isfinite(errors).any() else (0, 1)
    figure, axes = plt.subplots(
        1, len(panels), figsize=(1.0 + 5.2 * len(panels), 4.6), squeeze=False
    )
    for axis, panel in zip(axes[0], panels, strict=True):
        cell = diagram.sel(panel)
        image = _draw_cells(axis, cell, alpha_dim, temperature_dim, image_range)
        log2_t = np.log2(cell[temperature_dim].values.astype(float))
        log2_alpha = np.log2(cell[alpha_dim].values.astype(float))
        lazy = cell["lazy_feature_log2_alpha"].values
        axis.plot(
            lazy,
            log2_t,
            "o--",
            color="white",
            lw=1.5,
            ms=4,
            label=f"lazy/feature: kernel change = {LAZY_KERNEL_CHANGE:g}",
        )
        noise = cell["noise_log2_temperature"].values
        axis.plot(
            log2_alpha,
            noise,
            "^-",
            color="orange",
            lw=1.5,
            ms=5,
            label=f"noise: weight change x{NOISE_FACTOR:g} its T->0 value",
        )
        best = np.log2(cell["best_temperature"].values.astype(float))
        axis.plot(
            log2_alpha,
            best,
            "*",
            color="magenta",
            ms=10,
            mec="k",
            mew=0.5,
            label="best T (lowest test error)",
        )
        axis.set_xlabel(LOG2_ALPHA)
        axis.set_ylabel(LOG2_TEMPERATURE)
        if panel:
            axis.set_title(", ".join(f"{k} = {v}" for k, v in panel.items()))
    handles, labels = axes[0, 0].get_legend_handles_labels()
    handles += [
        Patch(facecolor="none", edgecolor="red", hatch="xx", label="some replicas diverged"),
        Patch(facecolor="none", edgecolor="0.3", hatch="//", label="some replicas unfinished"),
    ]
    figure.colorbar(image, ax=axes[0, -1], label="test error (fraction, mean over seeds)")
    figure.legend(
        handles=handles,
        loc="lower center",
        ncol=3,
        fontsize=8,
        bbox_to_anchor=(0.5, -0.12),
        facecolor="0.9",
    )
    swept = set(grid_axes(summary).values())
    figure.suptitle(
        f"Test error in the (alpha, T) plane\nfixed: {network_setting(summary, swept)}",
        fontsize=10,
    )
    save(figure, out)


def test_error_vs_temperature(summary: xr.Dataset, out: str) -> None:
    """Test error (seed mean +- s.e.) against log2 T: one panel per alpha, one curve per P.

    Without a P axis, one panel with one curve per alpha. Curves join the cells where no
    replica diverged; hollow markers: some replica did not reach zero training loss;
    red crosses: some replica diverged (the mean of the others, if any). The error axis
    spans the cells where every replica reached zero loss; the others (seeds stalled at
    chance level above the stability edge) are drawn at its top.
    """
    statistics = cell_statistics(summary)
    trained = statistics["test_error"].where(
        (statistics["diverged_fraction"] == 0) & (statistics["unfinished_fraction"] == 0)
    )
    bottom, top = float(trained.min()), float(trained.max())
    top += 0.25 * (top - bottom) if top > bottom else 0.01
    top = top if np.isfinite(top) else np.inf  # no cell fully trained: nothing is clipped
    temperature_dim = swept_dimension(summary, TEMPERATURE)
    alpha_dim, samples_dim = swept_dimension(summary, ALPHA), swept_dimension(summary, SAMPLES)
    if temperature_dim is None:
        raise ValueError("test_error_vs_temperature needs a grid over optimizer.temperature")
    panel_dim, curve_dim = (alpha_dim, samples_dim) if samples_dim else (None, alpha_dim)
    panels = statistics[panel_dim].values.tolist() if panel_dim else [None]
    figure, axes = plt.subplots(
        1, len(panels), figsize=(max(6.5, 4.4 * len(panels)), 4.0), squeeze=False, sharey=True
    )
    for axis, panel in zip(axes[0], panels, strict=True):
        part = statistics.sel({panel_dim: panel}) if panel_dim else statistics
        curves = part[curve_dim].values.tolist() if curve_dim else [None]
        for curve in curves:
            line = part.sel({curve_dim: curve}) if curve_dim else part
            extra = [d for d in line.dims if d != temperature_dim]
            line = line.isel(dict.fromkeys(extra, 0)).sortby(temperature_dim)
            log2_t = np.log2(line[temperature_dim].values.astype(float))
            error = np.minimum(line["test_error"].values, top)
            diverged = line["diverged_fraction"].values > 0
            unfinished = (line["unfinished_fraction"].values > 0) & ~diverged
            drawn = axis.errorbar(
                log2_t,
                np.where(diverged, np.nan, error),
                yerr=line["test_error_stderr"].values,
                marker="o",
                ms=4,
                capsize=2,
                label=f"{curve_dim} = {curve:g}" if curve_dim else None,
            )
            colour = drawn[0].get_color()
            axis.plot(log2_t[unfinished], error[unfinished], "o", ms=8, mfc="w", color=colour)
            axis.plot(log2_t[diverged], error[diverged], "x", ms=8, mew=2, color="red")
        axis.set_xlabel(LOG2_TEMPERATURE)
        if np.isfinite(top):
            axis.set_ylim(bottom - 0.05 * (top - bottom), top * 1.01)
        if panel_dim:
            axis.set_title(f"alpha = {panel:g}")
        axis.grid(True, alpha=0.3)
    axes[0, 0].set_ylabel("test error (fraction, mean +- s.e. over seeds)")
    if curve_dim:
        axes[0, -1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1))
    swept = set(grid_axes(summary).values())
    figure.suptitle(
        "Test error against temperature (hollow: some replicas unfinished; red x: some "
        f"diverged; at the top: off scale)\nfixed: {network_setting(summary, swept)}",
        fontsize=10,
    )
    figure.tight_layout()
    save(figure, out)


def _fitted_power_law(axis, alpha: np.ndarray, part: xr.Dataset, prefix: str, **style) -> str:
    """The fitted line A alpha^k of ``prefix`` (``optimal_temperature`` or ``stability_edge``)
    over its fitted alphas; returns the legend text of k and its interval ('' if no fit)."""
    exponent = {end: part[f"{prefix}_exponent{end}"].item() for end in ("", "_low", "_high")}
    if not np.isfinite(exponent[""]):
        return ""
    fitted = alpha[part[f"{prefix}_in_fit"].values.astype(bool)]
    amplitude = np.exp(part[f"{prefix}_log_amplitude"].item())
    text = f"{exponent['']:.2f} [{exponent['_low']:.2f}, {exponent['_high']:.2f}]"
    axis.plot(fitted, amplitude * fitted ** exponent[""], **style)
    return text


def optimal_temperature_figure(
    summary: xr.Dataset, out: str, fits: xr.Dataset | None = None
) -> None:
    """T_opt and the stability edge T_edge against alpha (log-log, 95% intervals), one panel
    per value of the other grid axes (e.g. the depth D), from the study fits
    (analysis.optimal_temperature).

    Filled circles: the alphas of the fit of k; hollow: an interior T_opt left out of it;
    triangles: a minimum at the grid edge, drawn at that edge temperature, a bound pointing
    where T_opt lies. Squares: T_edge, where half the seeds stop reaching zero loss (T_opt
    is at or below it). Solid line: the fitted T_opt = A alpha^k; dashed: the fitted
    T_edge ~ alpha^k_edge; dotted: the predicted slope (D-1)/(D+1) through the centre of
    the fitted T_opt (or, without a fit of k, of the fitted T_edge).
    """
    names = [
        *(f"optimal_temperature{end}" for end in ("", "_low", "_high", "_status")),
        "optimal_temperature_grid_minimum",
        "optimal_temperature_predicted_exponent",
        *(f"stability_edge{end}" for end in ("", "_low", "_high")),
        *(
            f"{prefix}_{name}"
            for prefix in ("optimal_temperature", "stability_edge")
            for name in ("in_fit", "exponent", "exponent_low", "exponent_high", "log_amplitude")
        ),
    ]
    fits = require(fits, names, "optimal_temperature", "the study fit optimal_temperature")[names]
    alpha_dim = swept_dimension(summary, ALPHA)
    panels = _panels(fits, (alpha_dim,))
    figure, axes = plt.subplots(
        1, len(panels), figsize=(5.6 * len(panels) + 1.5, 7.0), squeeze=False, sharey=True
    )
    for axis, panel in zip(axes[0], panels, strict=True):
        part = fits.sel(panel).sortby(alpha_dim)
        alpha = part[alpha_dim].values.astype(float)
        centre = part["optimal_temperature"].values
        interval = part["optimal_temperature_low"].values, part["optimal_temperature_high"].values
        in_fit = part["optimal_temperature_in_fit"].values.astype(bool)
        errorbar(axis, alpha, np.where(in_fit, centre, np.nan), *interval, color="C0", ls="none")
        errorbar(
            axis,
            alpha,
            np.where(in_fit, np.nan, centre),
            *interval,
            color="C0",
            ls="none",
            mfc="white",
        )
        status = part["optimal_temperature_status"].values.astype(str)
        bound = part["optimal_temperature_grid_minimum"].values
        for edge, marker in (("highest", "^"), ("lowest", "v")):
            at_edge = status == f"minimum_at_{edge}_temperature"
            axis.plot(alpha[at_edge], bound[at_edge], marker, color="C0", mfc="white", ms=8)
        errorbar(
            axis,
            alpha,
            part["stability_edge"].values,
            part["stability_edge_low"].values,
            part["stability_edge_high"].values,
            color="C3",
            ls="none",
            marker="s",
            mfc="white",
            label="T_edge: half the seeds stop reaching zero loss",
        )
        k_text = _fitted_power_law(axis, alpha, part, "optimal_temperature", color="C0", ls="-")
        edge_text = _fitted_power_law(axis, alpha, part, "stability_edge", color="C3", ls="--")
        axis.plot([], [], "o", color="C0", label="T_opt (interior minimum; fitted)")
        if k_text:
            axis.plot([], [], "-", color="C0", label=f"T_opt ~ alpha^k: k = {k_text}")
        if edge_text:
            axis.plot([], [], "--", color="C3", label=f"T_edge ~ alpha^k: k = {edge_text}")
        predicted = part["optimal_temperature_predicted_exponent"].item()
        through = "optimal_temperature" if k_text else "stability_edge"
        fitted = part[f"{through}_in_fit"].values.astype(bool)
        if np.isfinite(predicted) and fitted.any():
            log_alpha = np.log(alpha[fitted])
            log_centre = np.log(part[through].values[fitted]).mean()
            line = np.exp(log_centre + predicted * (log_alpha - log_alpha.mean()))
            axis.plot(
                alpha[fitted],
                line,
                ":",
                lw=2,
                color="k",
                label=f"predicted k = (D-1)/(D+1) = {predicted:.2f}",
            )
        axis.plot([], [], "o", color="C0", mfc="white", label="interior T_opt outside the fit")
        axis.plot(
            [], [], "^", color="C0", mfc="white", label="minimum at the highest T: T_opt above"
        )
        axis.plot(
            [], [], "v", color="C0", mfc="white", label="minimum at the lowest T: T_opt below"
        )
        axis.set_xscale("log", base=2)
        axis.set_yscale("log", base=2)
        axis.set_xlabel("alpha (output scale of F = alpha (f - f0), dimensionless)")
        axis.set_title(", ".join(f"{k} = {v:g}" for k, v in panel.items()), fontsize=9)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    axes[0, 0].set_ylabel("temperature T = lr / (h B) (dimensionless)")
    swept = set(grid_axes(summary).values())
    figure.suptitle(
        "Optimal temperature and stability edge against alpha (95% intervals over seeds)\n"
        f"fixed: {network_setting(summary, swept)}",
        fontsize=10,
    )
    figure.tight_layout()
    save(figure, out)
