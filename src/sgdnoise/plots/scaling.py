"""Figures of the scaling analyses (power_laws, critical_temperature, margin_crossover),
from summary + fits.

- scaling_observables: each observable at stopping against T, one curve per P (log-log),
  filled markers inside the power-law window, the fitted power law drawn over it;
- exponents_vs_chi: measured exponents in P and in T against chi, with the predicted
  curves gamma = 1/(1+chi), b = (3+chi)/(1+chi) and the T exponents;
- critical_temperature_vs_P: T_c against P (log-log) with intervals and the fit
  T_c ~ P^-a;
- scaling_collapse: <y>/y_0 against T P^a at the collapse exponent a;
- critical_temperature_vs_margin: T_c against the margin kappa = 1/alpha at fixed P
  (log-log) with intervals, the fit T_c ~ kappa^s and the predicted T_c = c kappa, and
  the lead observable against T per alpha with the plateau's end T = c kappa marked.

Each takes the study summary and its fits.nc (stages.study_fits): without the fits it
needs, a figure raises a ValueError naming them (it never reruns the fits).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.ticker import NullFormatter, NullLocator

from sgdnoise.analysis.power_laws import predicted_exponent
from sgdnoise.analysis.running_exponents import CORRECTIONS
from sgdnoise.analysis.scaling_data import (
    REPLICA,
    TEMPERATURE,
    complete_points,
    group_dims,
    observables_at_stop,
)
from sgdnoise.analysis.statistics import error_bar, mean_and_error
from sgdnoise.io.artifact import study_config
from sgdnoise.plots.common import fixed_parameters, require, save, selections

NAMES = {
    "signal": "signal $u_1$ at stop",
    "noise": r"noise $|u_\perp|^2/(d-1)$ at stop",
    "t_star": "training time $t^*$ (lr x steps)",
    "weight_change": r"weight change $|w^*-w_0|/|w_0|$",
    "test_error": "test error at stop",
}
SYMBOLS = {TEMPERATURE: "T", "P": "P", "N": "d"}
COMMON_FIXED = {
    "data.kind": "data",
    "model.kind": "model",
    "model.alpha": "alpha",
    "optimizer.batch_size": "B",
    "run.replicas": "seeds",
}


def log_scale_or_no_crossover(axis: plt.Axes, critical_temperatures: np.ndarray) -> None:
    """A log T_c axis where some T_c was measured; else say there is none in the range."""
    if (np.isfinite(critical_temperatures) & (critical_temperatures > 0)).any():
        axis.set_yscale("log")
        return
    axis.text(
        0.5,
        0.5,
        "no T_c in the temperature range\n(no plateau or no departure)",
        transform=axis.transAxes,
        ha="center",
        va="center",
        fontsize=8,
    )


def _fixed(summary: xr.Dataset) -> dict[str, str]:
    """Config entries a title states (path -> label): the model's own besides the common."""
    if study_config(summary).model.kind == "perceptron":
        return {**COMMON_FIXED, "data.N": "d", "data.chi": "chi"}
    return {**COMMON_FIXED, "model.depth": "depth", "model.width": "h"}


def _fits(fits: xr.Dataset | None, figure: str, analysis: str, *variables: str) -> xr.Dataset:
    """The study fits if they hold ``variables`` (ValueError naming them otherwise)."""
    source = f"the study fits of {analysis} (--fits fits.nc of `sgdnoise study-fits`)"
    return require(fits, variables, figure, source)


def _groups(values: xr.DataArray) -> list[dict]:
    """Selections of every group (fixed values of the dims other than T, P, N, replica)."""
    return selections(values, group_dims(values))


def _shown_n(values: xr.DataArray) -> dict:
    """The N shown when N is swept: the median value (the fits use all of them)."""
    if "N" not in values.dims:
        return {}
    sizes = values["N"].values
    return {"N": sizes[len(sizes) // 2]}


def _group_text(group: dict) -> str:
    """'chi=1, d=16' for a selection (the input dimension N is called d, as in the titles)."""
    names = {"N": "d"}
    return ", ".join(
        f"{names.get(k, k)}={v:g}" if isinstance(v, float) else f"{names.get(k, k)}={v}"
        for k, v in group.items()
    )


def _title(summary: xr.Dataset, what: str, shown: dict) -> str:
    fixed = fixed_parameters(summary, _fixed(summary))
    extra = f", shown at d={shown['N']}" if shown else ""
    return f"{what}\n{fixed}{extra}"


def _panels(
    observed: dict[str, xr.DataArray], names: list[str], fits: xr.Dataset
) -> tuple[plt.Figure, dict, list[tuple]]:
    """A figure of panels, one row per group and one column per observable.

    Returns the figure, the N shown (``_shown_n``) and, row by row, every panel's
    (axis, group, name, values, fit): the observable and its fits at that group and N.
    """
    groups = _groups(observed[names[0]])
    shown = _shown_n(observed[names[0]])
    figure, axes = plt.subplots(
        len(groups), len(names), figsize=(4.2 * len(names), 3.6 * len(groups)), squeeze=False
    )
    panels = [
        (
            axes[row, column],
            group,
            name,
            observed[name].sel(group).sel(shown),
            fits.sel(observable=name).sel(group).sel(shown),
        )
        for row, group in enumerate(groups)
        for column, name in enumerate(names)
    ]
    return figure, shown, panels


def scaling_observables(summary: xr.Dataset, out: str, fits: xr.Dataset | None = None) -> None:
    """Observables at stopping against T, per P, with the fitted power laws."""
    fits = _fits(fits, "scaling_observables", "power_laws", "exponent", "power_law_window")
    observed = {
        name: values
        for name, values in observables_at_stop(summary).items()
        if name in fits["observable"].values
    }
    figure, shown, panels = _panels(observed, list(observed), fits)
    for axis, group, name, values, fit in panels:
        _draw_curves(axis, values, fit, shown)
        axis.set_xscale("log")
        axis.set_yscale(
            "log" if np.nanmin(values.values) > 0 else "symlog",
            **({} if np.nanmin(values.values) > 0 else {"linthresh": 1e-3}),
        )
        axis.set_xlabel("temperature T = lr / (h B)")
        axis.set_ylabel(NAMES.get(name, name))
        exponents = ", ".join(
            f"{SYMBOLS.get(r, r)}^{fit['exponent'].sel(regressor=r).item():.2f}"
            for r in fit["regressor"].values
            if np.isfinite(fit["exponent"].sel(regressor=r).item())
        )
        axis.set_title(f"{_group_text(group)}  fit: {exponents or 'no window'}", fontsize=9)
    panels[0][0].legend(fontsize=7, title="P (filled: in fit window)", title_fontsize=7)
    figure.suptitle(
        _title(summary, "Observables at stopping against temperature", shown), fontsize=10
    )
    figure.tight_layout()
    save(figure, out)


def _draw_curves(axis, values: xr.DataArray, fit: xr.Dataset, shown: dict) -> None:
    """One curve per P: seed mean +- standard error, window points filled, fit line."""
    sizes = values["P"].values if "P" in values.dims else [None]
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(sizes)))
    temperatures = values[TEMPERATURE].values
    for colour, size in zip(colours, sizes, strict=True):
        curve = values.sel(P=size) if size is not None else values
        data = curve.transpose(TEMPERATURE, REPLICA).values
        complete = complete_points(data)
        # geometric seed means where every value is positive: the fits average log y
        positive = bool((data[np.isfinite(data)] > 0).all())
        mean, low, high = error_bar(data.T, geometric=positive)
        window = (
            fit["power_law_window"].sel(P=size).values
            if size is not None
            else (fit["power_law_window"].values)
        )
        label = f"P={size:g}" if size is not None else None
        axis.errorbar(
            temperatures,
            mean,
            yerr=np.stack([mean - low, high - mean]),
            color=colour,
            ls="-",
            lw=0.8,
            marker="o",
            ms=5,
            mfc="white",
            label=label,
        )
        inside = (np.nan_to_num(np.asarray(window, dtype=float)) > 0) & complete
        axis.plot(temperatures[inside], mean[inside], "o", color=colour, ms=5, zorder=4)
        if inside.any() and np.isfinite(fit["log_amplitude"].item()):
            line_t = temperatures[inside]
            at = {TEMPERATURE: line_t, "P": size, **shown}
            log_y = fit["log_amplitude"].item() + sum(
                fit["exponent"].sel(regressor=r).item() * np.log(at[r])
                for r in fit["regressor"].values
                if np.isfinite(fit["exponent"].sel(regressor=r).item())
            )
            axis.plot(line_t, np.exp(log_y) * np.ones(line_t.size), color="black", lw=1.0, ls="--")
        excluded = ~complete
        if excluded.any():
            axis.plot(
                temperatures[excluded],
                mean_and_error(data[excluded], axis=1)[0],
                "x",
                color=colour,
                ms=6,
            )


def exponents_vs_chi(summary: xr.Dataset, out: str, fits: xr.Dataset | None = None) -> None:
    """Measured exponents in P and T against chi, with paper B's predicted curves."""
    fits = _fits(fits, "exponents_vs_chi", "power_laws", "exponent", "exponent_predicted")
    names = [
        n
        for n in ("signal", "noise", "t_star", "weight_change", "test_error")
        if n in fits["observable"].values
    ]
    regressors = [r for r in ("P", TEMPERATURE, "N") if r in fits["regressor"].values]
    figure, axes = plt.subplots(
        len(regressors),
        len(names),
        figsize=(3.8 * len(names), 3.3 * len(regressors)),
        squeeze=False,
    )
    data = study_config(summary).data
    if "chi" in fits.dims:
        chis = fits["chi"].values.astype(float)
    elif data.kind == "depleted_sign":
        chis = np.array([data.chi])
    else:  # no chi: one position per group of the other swept axes
        chis = np.array([0.0])
    curve_chi = np.linspace(0.0, max(3.0, np.nanmax(chis)) if np.isfinite(chis).any() else 3.0, 100)
    others = [d for d in fits["exponent"].dims if d not in ("observable", "regressor", "chi")]
    for row, regressor in enumerate(regressors):
        for column, name in enumerate(names):
            axis = axes[row, column]
            pick = fits.sel(observable=name, regressor=regressor)
            for index, rest in enumerate(selections(pick, others)):
                part = pick.sel(rest)
                measured = np.atleast_1d(part["exponent"].values)
                low = np.atleast_1d(part["exponent_low"].values)
                high = np.atleast_1d(part["exponent_high"].values)
                axis.errorbar(
                    chis + 0.04 * index,
                    measured,
                    yerr=[measured - low, high - measured],
                    fmt="o",
                    capsize=3,
                    label=("measured " + _group_text(rest)).strip(),
                )
            predicted = [predicted_exponent(name, regressor, c) for c in curve_chi]
            if (
                np.isfinite(predicted).any()
                and np.isfinite(
                    fits["exponent_predicted"].sel(observable=name, regressor=regressor).values
                ).any()
            ):
                axis.plot(curve_chi, predicted, "k--", lw=1, label="scaling prediction")
            if data.kind == "depleted_sign":
                axis.set_xlabel(r"depletion exponent $\chi$")
            else:
                axis.set_xticks([])
            axis.set_ylabel(f"exponent of {SYMBOLS.get(regressor, regressor)}")
            axis.set_title(NAMES.get(name, name), fontsize=9)
            if row == 0 and column == 0:
                axis.legend(fontsize=7)
    figure.suptitle(
        "Power-law exponents in the noise-dominated regime (95% intervals, stat + window)\n"
        + fixed_parameters(summary, _fixed(summary)),
        fontsize=10,
    )
    figure.tight_layout()
    save(figure, out)


def running_exponents(summary: xr.Dataset, out: str, fits: xr.Dataset | None = None) -> None:
    """Running exponents in P against P, their extrapolation to P -> infinity, the
    global fit and the prediction: the finite-size view of the exponents in P. When d is
    swept, a second row: the running exponents in d against d, one line per P, beside the
    prediction's d-exponent (whether the d-factors approach it as P grows). One such pair
    of rows per group of the other swept axes (e.g. per chi), so each panel holds one
    prediction."""
    fits = _fits(
        fits, "running_exponents", "power_laws", "running_exponent", "exponent_extrapolated"
    )
    names = [
        n
        for n in ("signal", "t_star", "weight_change", "noise", "test_error")
        if n in fits["observable"].values
        and np.isfinite(fits["running_exponent"].sel(observable=n).values).any()
    ]
    if not names:
        raise ValueError(
            "running_exponents needs a finite running exponent: two successive P with "
            "temperatures inside the power-law window at both"
        )
    in_d = "running_exponent_N" in fits and np.isfinite(fits["running_exponent_N"].values).any()
    facet_dims = [
        d for d in fits["running_exponent"].dims if d not in ("observable", "size_pair", "N")
    ]
    facets = selections(fits, facet_dims)
    kinds = ["P", "d"] if in_d else ["P"]
    figure, axes = plt.subplots(
        len(facets) * len(kinds),
        len(names),
        figsize=(4.2 * len(names), 3.6 * len(facets) * len(kinds)),
        squeeze=False,
    )
    rows = iter(axes)
    for facet in facets:
        label = f" ({_group_text(facet)})" if facet else ""
        for kind in kinds:
            for column, (axis, name) in enumerate(zip(next(rows), names, strict=True)):
                pick = fits.sel(observable=name, **facet)
                if kind == "P":
                    _draw_running_in_p(axis, pick)
                    axis.set_title(
                        f"{NAMES.get(name, name)}{label}\n(dashed: prediction, dotted: global fit)",
                        fontsize=9,
                    )
                else:
                    _draw_running_in_d(axis, pick)
                    axis.set_title(
                        f"{NAMES.get(name, name)}, in d{label}\n(dashed: prediction)", fontsize=9
                    )
                if column == 0:
                    axis.legend(fontsize=6)
    figure.suptitle(
        "Running exponents between successive sizes P"
        + (" and input dimensions d" if in_d else "")
        + ", window temperatures (95% intervals over seeds)\n"
        + fixed_parameters(summary, _fixed(summary)),
        fontsize=10,
    )
    height = figure.get_size_inches()[1]
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.55 / height))  # the two-line title's room
    save(figure, out)


def _draw_running_in_p(axis: plt.Axes, pick: xr.Dataset) -> None:
    """One observable's running exponents in P per group, extrapolations at 'inf'."""
    others = [d for d in pick["running_exponent"].dims if d != "size_pair"]
    middle = pick["P_mid"].values
    infinity = middle.max() * 4  # where P -> infinity is drawn
    for index, rest in enumerate(selections(pick, others)):
        part = pick.sel(rest)
        colour = f"C{index}"
        running = part["running_exponent"].values
        axis.errorbar(
            middle,
            running,
            yerr=[running - part["running_exponent_low"].values,
                  part["running_exponent_high"].values - running],
            fmt="o-", color=colour, capsize=3, label=_group_text(rest) or "running",
        )  # fmt: skip
        for offset, (omega, marker) in enumerate(zip(CORRECTIONS, "s^", strict=True)):
            at = part.sel(correction=omega)
            value = float(at["exponent_extrapolated"])
            axis.errorbar(
                [infinity * (1 + 0.15 * offset)],
                [value],
                yerr=[[value - float(at["exponent_extrapolated_low"])],
                      [float(at["exponent_extrapolated_high"]) - value]],
                fmt=marker, color=colour, capsize=3, mfc="white",
                label=f"P -> inf, corrections P^-{omega:g}" if index == 0 else None,
            )  # fmt: skip
        predicted = float(part["exponent_predicted"].sel(regressor="P"))
        if np.isfinite(predicted):
            axis.axhline(predicted, color=colour, ls="--", lw=1)
        axis.axhline(float(part["exponent"].sel(regressor="P")), color=colour, ls=":", lw=1)
    axis.set_xscale("log")
    axis.xaxis.set_minor_locator(NullLocator())
    axis.set_xticks([*middle, infinity], [f"{p:.0f}" for p in middle] + ["inf"])
    axis.tick_params(axis="x", labelrotation=45, labelsize=7)
    axis.set_xlabel("training-set size P (midpoint of a pair of sizes)")
    axis.set_ylabel("running exponent in P")


def _draw_running_in_d(axis: plt.Axes, pick: xr.Dataset) -> None:
    """One observable's running exponents in d within one group, one line per P."""
    middle = pick["N_mid"].values
    sizes = list(pick["P"].values)
    for index, size in enumerate(sizes):
        part = pick.sel(P=size)
        running = part["running_exponent_N"].values
        if not np.isfinite(running).any():
            continue
        axis.errorbar(
            middle * (1 + 0.02 * index),  # side by side, not on top
            running,
            yerr=[running - part["running_exponent_N_low"].values,
                  part["running_exponent_N_high"].values - running],
            fmt="o-", color=plt.cm.viridis(index / max(len(sizes) - 1, 1)), capsize=2, ms=3,
            label=f"P={size}",
        )  # fmt: skip
    predicted = float(pick["exponent_predicted"].sel(regressor="N"))
    if np.isfinite(predicted):
        axis.axhline(predicted, color="k", ls="--", lw=1)
    axis.set_xscale("log")
    axis.xaxis.set_minor_locator(NullLocator())
    axis.set_xticks(middle, [f"{n:.0f}" for n in middle])
    axis.set_xlabel("input dimension d (midpoint of a pair of dimensions)")
    axis.set_ylabel("running exponent in d")


def critical_temperature_vs_p(
    summary: xr.Dataset, out: str, fits: xr.Dataset | None = None
) -> None:
    """T_c against P (log-log) for every observable, with the fitted T_c ~ P^-a."""
    fits = _fits(
        fits,
        "critical_temperature_vs_P",
        "critical_temperature",
        "critical_temperature",
        "critical_temperature_log_amplitude",
    )
    names = [
        n
        for n in fits["observable"].values
        if np.isfinite(fits["critical_temperature"].sel(observable=n).values).any()
    ]
    names = names or list(fits["observable"].values)
    figure, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8), squeeze=False)
    others = [d for d in fits["critical_temperature"].dims if d not in ("observable", "P")]
    for axis, name in zip(axes[0], names, strict=True):
        pick = fits.sel(observable=name)
        for rest in selections(pick, others):
            part = pick.sel(rest)
            sizes = part["P"].values.astype(float)
            tc = part["critical_temperature"].values
            low, high = (
                part["critical_temperature_low"].values,
                part["critical_temperature_high"].values,
            )
            a_text = ""
            if "a" in part and np.isfinite(part["a"].item()):
                a = part["a"].item()
                a_text = f": a={a:.2f} [{part['a_low'].item():.2f}, {part['a_high'].item():.2f}]"
                amplitude = part["critical_temperature_log_amplitude"].item()
                if np.isfinite(amplitude):
                    axis.plot(
                        sizes, np.exp(amplitude - a * np.log(sizes)), "--", lw=0.8, color="grey"
                    )
            axis.errorbar(
                sizes,
                tc,
                yerr=[tc - low, high - tc],
                fmt="o-",
                capsize=3,
                label=(_group_text(rest) + a_text).strip(": ") or "T_c",
            )
        axis.set_xscale("log")
        log_scale_or_no_crossover(axis, pick["critical_temperature"].values)
        axis.set_xlabel("training set size P")
        axis.set_ylabel("crossover temperature $T_c$")
        axis.set_title(f"from {NAMES.get(name, name)}", fontsize=9)
        axis.legend(fontsize=7)
    threshold = fits.attrs.get("critical_temperature_threshold", "")
    figure.suptitle(
        f"Crossover temperature: first T where |<y>/y(T_min) - 1| reaches {threshold} "
        "(95% intervals)\n" + fixed_parameters(summary, _fixed(summary)),
        fontsize=10,
    )
    figure.tight_layout()
    save(figure, out)


def scaling_collapse(summary: xr.Dataset, out: str, fits: xr.Dataset | None = None) -> None:
    """<y>/y_0 against T P^a at the collapse exponent a, one curve per P."""
    fits = _fits(fits, "scaling_collapse", "critical_temperature", "collapse_exponent")
    observed = observables_at_stop(summary)
    names = [
        n for n in observed if np.isfinite(fits["collapse_exponent"].sel(observable=n).values).any()
    ] or list(observed)
    figure, shown, panels = _panels(observed, names, fits)
    for axis, group, name, values, part in panels:
        a = float(part["collapse_exponent"].item())
        sizes = values["P"].values if "P" in values.dims else []
        colours = plt.cm.viridis(np.linspace(0, 0.9, max(len(sizes), 1)))
        for colour, size in zip(colours, sizes, strict=False):
            data = values.sel(P=size).transpose(TEMPERATURE, REPLICA).values
            keep = complete_points(data)
            mean = mean_and_error(data[keep], axis=1)[0]
            if mean.size == 0 or mean[0] == 0:
                continue
            scale = float(size) ** (a if np.isfinite(a) else 0.0)
            axis.plot(
                values[TEMPERATURE].values[keep] * scale,
                mean / mean[0],
                "o-",
                ms=3.5,
                lw=0.8,
                color=colour,
                label=f"P={size:g}",
            )
        axis.set_xscale("log")
        axis.set_yscale("log")
        interval = (
            f"[{part['collapse_exponent_low'].item():.2f}, "
            f"{part['collapse_exponent_high'].item():.2f}]"
        )
        axis.set_xlabel(f"$T P^a$, a = {a:.2f} {interval}")
        axis.set_ylabel(f"{NAMES.get(name, name)} / plateau")
        axis.set_title(_group_text(group), fontsize=9)
    panels[0][0].legend(fontsize=7)
    figure.suptitle(
        _title(summary, "Collapse of the departure from the T -> 0 plateau in T P^a", shown),
        fontsize=10,
    )
    figure.tight_layout()
    save(figure, out)


def critical_temperature_vs_margin(
    summary: xr.Dataset, out: str, fits: xr.Dataset | None = None
) -> None:
    """T_c against the margin kappa = 1/alpha (log-log) for every observable, one series per
    group, with the fitted T_c ~ kappa^s and the prediction s = 1 (top row); the lead
    observable against T, one curve per alpha, the plateau ending at T = c kappa (bottom)."""
    fits = _fits(
        fits,
        "critical_temperature_vs_margin",
        "margin_crossover",
        "margin_critical_temperature",
        "margin_crossover_slope",
        "margin_crossover_ratio",
    )
    alpha_dim = fits["kappa"].dims[0]
    critical = fits["margin_critical_temperature"]
    names = [
        n for n in fits["observable"].values if np.isfinite(critical.sel(observable=n)).any()
    ] or list(fits["observable"].values)
    groups = selections(fits, [d for d in fits["margin_crossover_slope"].dims if d != "observable"])
    columns = max(len(names), len(groups))
    figure, axes = plt.subplots(2, columns, figsize=(4.2 * columns, 7.4), squeeze=False)
    for axis, name in zip(axes[0], names, strict=False):
        _draw_margin_fits(axis, fits.sel(observable=name), groups)
        axis.set_title(f"from {NAMES.get(name, name)}", fontsize=9)
    lead = "signal" if "signal" in names else names[0]
    observed = observables_at_stop(summary)[lead]
    for axis, group in zip(axes[1], groups, strict=False):
        _draw_plateaus(axis, observed.sel(group), fits.sel(observable=lead).sel(group), alpha_dim)
        axis.set_ylabel(NAMES.get(lead, lead))
        axis.set_title(f"{_group_text(group)}  dashed: T = c kappa", fontsize=9)
    for axis in [*axes[0, len(names) :], *axes[1, len(groups) :]]:
        axis.set_visible(False)
    threshold = fits.attrs.get("margin_crossover_threshold", "")
    fixed = fixed_parameters(summary, {**_fixed(summary), "data.P": "P"})
    figure.suptitle(
        f"Crossover temperature against the margin kappa = 1/alpha: first T where "
        f"|<y>/y(T_min) - 1| reaches {threshold} (95% intervals)\nheld fixed: {fixed}",
        fontsize=10,
    )
    figure.tight_layout()
    save(figure, out)


def _draw_margin_fits(axis, fit: xr.Dataset, groups: list[dict]) -> None:
    """T_c against kappa with intervals, the fitted line and the line T_c = c kappa."""
    kappa = fit["kappa"].values.astype(float)
    predicted = float(fit["margin_crossover_predicted_slope"])
    for index, group in enumerate(groups):
        part = fit.sel(group)
        colour = f"C{index}"
        tc = part["margin_critical_temperature"].values
        low = part["margin_critical_temperature_low"].values
        high = part["margin_critical_temperature_high"].values
        slope = part["margin_crossover_slope"].item()
        text = _group_text(group) or "T_c"
        if np.isfinite(slope):
            interval = (
                f"[{part['margin_crossover_slope_low'].item():.2f}, "
                f"{part['margin_crossover_slope_high'].item():.2f}]"
            )
            systematic = part["margin_crossover_slope_plateau_systematic"].item()
            text += f": s={slope:.2f} {interval} ± {systematic:.2f} (plateau)"
            line = np.exp(part["margin_crossover_log_amplitude"].item()) * kappa**slope
            axis.plot(kappa, line, "-", lw=0.8, color=colour)
            if np.isfinite(predicted):
                ratio = part["margin_crossover_ratio"].item()
                axis.plot(kappa, ratio * kappa**predicted, ":", lw=1.2, color="black")
        axis.errorbar(
            kappa, tc, yerr=[tc - low, high - tc], fmt="o", capsize=3, color=colour, label=text
        )
    if np.isfinite(predicted):
        axis.plot([], [], ":", color="black", label=f"prediction s = {predicted:g} (T_c = c kappa)")
    axis.set_xscale("log")
    log_scale_or_no_crossover(axis, fit["margin_critical_temperature"].values)
    axis.set_xlabel(r"margin $\kappa = 1/\alpha$")
    axis.set_ylabel("crossover temperature $T_c$ (units of T)")
    axis.legend(fontsize=7)


def _draw_plateaus(axis, values: xr.DataArray, fit: xr.Dataset, alpha_dim: str) -> None:
    """One observable against T, one curve per alpha (seed mean +- standard error over the
    points where every seed completed), a dashed line at T = c kappa of each alpha."""
    alphas = values[alpha_dim].values
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(alphas)))
    ratio = fit["margin_crossover_ratio"].item()
    temperatures = values[TEMPERATURE].values
    for colour, alpha in zip(colours, alphas, strict=True):
        data = values.sel({alpha_dim: alpha}).transpose(TEMPERATURE, REPLICA).values
        keep = complete_points(data)
        mean, error = mean_and_error(data[keep], axis=1)
        kappa = 1.0 / float(alpha)
        axis.errorbar(
            temperatures[keep],
            mean,
            yerr=error,
            fmt="o-",
            ms=3.5,
            lw=0.8,
            color=colour,
            label=f"alpha={alpha:g} (kappa={kappa:.2g})",
        )
        if np.isfinite(ratio):
            axis.axvline(ratio * kappa, color=colour, ls="--", lw=0.8)
    axis.set_xscale("log")
    axis.xaxis.set_minor_formatter(NullFormatter())
    axis.set_yscale("log" if np.nanmin(values.values) > 0 else "linear")
    axis.set_xlabel("temperature T = lr / (h B)")
    axis.legend(fontsize=7)
