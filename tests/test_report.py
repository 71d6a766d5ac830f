"""The report: every figure of the workflow has a caption that renders for every study
that draws it and says what is held fixed and what to look for; the SAT-side noise figures
overlay the DMFT when a study's summary has it."""

from __future__ import annotations

import json
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
import yaml
from docutils.core import publish_parts
from jinja2 import Environment
from matplotlib.collections import PolyCollection

from sgdnoise.config import canonical_json, resolve_point
from sgdnoise.plots import FIGURES, dmft, fdt, margins, replica_distance
from sgdnoise.workflow_plan import all_figures, figures_of
from tests.conftest import REPO

CAPTIONS = REPO / "workflow" / "report"
WORKFLOW_FIGURES = all_figures()
CONFIGS = [REPO / "config.yaml", *sorted((REPO / "workflow" / "studies").glob("*.yaml"))]
MINIMAL_STUDY = {"base": {}, "grid": {}}
"""A study as the config schema's defaults leave an empty one: captions must render it."""


def _studies_drawing(figure: str) -> list[tuple[str, dict, str]]:
    """(where, config, study name) of every shipped study that draws ``figure``, plus a
    minimal study."""
    found = []
    for path in CONFIGS:
        config = yaml.safe_load(path.read_text())
        for name, study in config["studies"].items():
            if figure in figures_of(study.get("analyses", ["training_curves"])):
                found.append((f"{path.name}: {name}", config, name))
    minimal = {"results": "results", "studies": {"minimal": MINIMAL_STUDY}}
    return [*found, ("a minimal study", minimal, "minimal")]


def _render(template: str, config: dict, study: str) -> str:
    """The caption as `snakemake --report` renders it: Jinja (the report's settings) over
    the config and the figure's wildcards."""
    environment = Environment(trim_blocks=True, lstrip_blocks=True)
    snakemake = SimpleNamespace(config=config, wildcards=SimpleNamespace(study=study))
    return environment.from_string(template).render(snakemake=snakemake)


@pytest.mark.parametrize("figure", WORKFLOW_FIGURES)
def test_every_figure_has_a_caption_saying_what_is_fixed_and_what_to_look_for(figure):
    path = CAPTIONS / f"{figure}.rst"
    assert path.is_file(), f"figure {figure} has no caption {path}"
    for where, config, study in _studies_drawing(figure):
        text = _render(path.read_text(), config, study)
        assert len(text.strip().splitlines()) > 1, f"{path.name} ({where}): one line or less"
        assert study in text, f"{path.name} ({where}) does not name the study"
        for required in ("Held fixed", "Look for"):
            assert required in text, f"{path.name} ({where}) does not say {required!r}"
        # valid reStructuredText: a warning (e.g. |x| read as a substitution) fails
        publish_parts(text, writer="html", settings_overrides={"halt_level": 2, "report_level": 5})


# ----------------------------------------------------------------- SAT-side figures with the DMFT

SAT_FIGURES = ("replica_distance_vs_b", "teff_vs_distance", "margins")
B = [0.125, 0.25, 0.5]
OPTIMIZERS = ["persistent_sgd+tau=1", "sgd"]
GAPS = np.linspace(-0.5, 1.5, 9)


def noise_summary(dmft: bool, stopped: bool) -> xr.Dataset:
    """A summary shaped like stages.aggregate's over (b, optimizer): distances, T_eff (and
    T_eff / b, as stages.fit writes it), margins and t* of 4 replicas (finite when they
    ``stopped`` at zero loss), and with ``dmft`` the dmft_* variables of analysis.dmft_fits
    (the same trends, 10% apart)."""
    grid = ("b", "optimizer")
    noise_level = np.outer(B, [2.0, 1.0])  # (b, optimizer): persistence adds noise
    window = np.ones(len(fdt.FIT_WINDOWS))
    density = np.exp(-np.abs(GAPS))[None, None, :] / (1 + noise_level[..., None])
    variables = {
        "replica_distance": (grid, 0.01 * noise_level),
        "replica_distance_low": (grid, 0.008 * noise_level),
        "replica_distance_high": (grid, 0.012 * noise_level),
        "T_eff": ((*grid, "window"), 0.1 * noise_level[..., None] * window),
        "T_eff_low": ((*grid, "window"), 0.08 * noise_level[..., None] * window),
        "T_eff_high": ((*grid, "window"), 0.12 * noise_level[..., None] * window),
        "T_eff_per_drift": (
            (*grid, "window"),
            0.1 * noise_level[..., None] * window / np.array(B)[:, None, None],
        ),
        "gap_density": ((*grid, "gap"), density),
        "kappa_eff": (grid, -0.01 * noise_level),
        "kappa_eff_stderr": (grid, 0.001 * noise_level),
        "contact_fraction": (grid, 0.3 - 0.1 * noise_level),
        "t_star": ((*grid, "replica"), np.full((3, 2, 4), 50.0 if stopped else np.nan)),
    }
    if dmft:
        theory = {
            name: (dims, 1.1 * values)
            for name, (dims, values) in variables.items()
            if name not in ("t_star", "kappa_eff", "kappa_eff_stderr")
        }
        variables.update({f"dmft_{name}": value for name, value in theory.items()})
        for name in ("replica_distance", "gap_density", "contact_fraction"):
            dims, values = variables[name]
            variables[f"dmft_{name}_stderr"] = (dims, 0.01 * values)
        variables["dmft_status"] = (grid, np.full((3, 2), "converged", dtype=object))
    coords = {
        "b": B,
        "optimizer": OPTIMIZERS,
        "window": list(fdt.FIT_WINDOWS),
        "gap": GAPS,
        "replica": np.arange(4),
    }
    summary = xr.Dataset(variables, coords=coords)
    summary.attrs.update(
        example_config=canonical_json(resolve_point({"data": {"P_over_N": 3.0}})),
        grid_axes=json.dumps({"b": "optimizer.b", "optimizer": "optimizer"}),
    )
    return summary


def regime_bundle(summary: xr.Dataset) -> xr.Dataset:
    """The effective_noise shape: a bundle axis ``regime``, distances and margins from SAT
    only, T_eff from UNSAT only (NaN elsewhere)."""
    sat_only = ["replica_distance", "replica_distance_low", "replica_distance_high", "t_star"]
    sat = summary.assign({name: summary[name] * np.nan for name in summary if "T_eff" in name})
    unsat = summary.assign({name: summary[name] * np.nan for name in sat_only})
    bundle = xr.concat([sat, unsat], xr.DataArray(["SAT", "UNSAT"], dims="regime"))
    bundle.attrs["grid_axes"] = json.dumps(
        {"b": "optimizer.b", "optimizer": "optimizer", "regime": "regime"}
    )
    return bundle


@pytest.fixture
def drawn(monkeypatch, tmp_path):
    """The figures the noise modules draw, kept open (and checked to render) instead of
    saved, so that their artists can be inspected."""
    figures = []

    def keep(figure: plt.Figure, out: str) -> None:
        figure.savefig(tmp_path / "figure.png")
        figures.append(figure)

    for module in (dmft, fdt, margins, replica_distance):
        monkeypatch.setattr(module, "save", keep)
    yield figures
    for figure in figures:
        plt.close(figure)


def dmft_legend_entries(figure: plt.Figure) -> list[str]:
    """Legend texts of a figure's axes that name the DMFT."""
    legends = [axis.get_legend() for axis in figure.axes if axis.get_legend() is not None]
    texts = [text.get_text() for legend in legends for text in legend.get_texts()]
    return [text for text in texts if text.startswith("DMFT")]


@pytest.mark.parametrize("figure", SAT_FIGURES)
def test_sat_figures_overlay_the_dmft_only_when_the_summary_has_it(drawn, figure):
    FIGURES[figure](noise_summary(dmft=True, stopped=False), "unused.png")
    FIGURES[figure](noise_summary(dmft=False, stopped=False), "unused.png")
    with_dmft, without = drawn
    assert dmft_legend_entries(with_dmft), f"{figure}: no DMFT in the legend"
    assert not dmft_legend_entries(without), f"{figure}: a DMFT entry without DMFT data"


def test_each_sat_figure_draws_the_dmft_of_every_curve_and_point(drawn):
    summary = noise_summary(dmft=True, stopped=False)
    for figure in SAT_FIGURES:
        FIGURES[figure](summary, "unused.png")
    distance, relation, boundary = drawn

    def dmft_lines(axis) -> list:
        return [line for line in axis.get_lines() if line.get_label().startswith("DMFT")]

    # one DMFT line with its band per optimizer, through the DMFT distances at every b
    lines = dmft_lines(distance.axes[0])
    bands = [c for c in distance.axes[0].collections if isinstance(c, PolyCollection)]
    assert len(lines) == len(bands) == len(OPTIMIZERS)
    np.testing.assert_allclose(lines[1].get_ydata(), summary["dmft_replica_distance"][:, 1])
    # one DMFT line with open markers per optimizer, at the DMFT's (d, T_eff / b)
    lines = dmft_lines(relation.axes[0])
    assert len(lines) == len(OPTIMIZERS)
    assert all(line.get_markerfacecolor() == "none" for line in lines)
    sgd = summary.sel(optimizer="sgd", window=fdt.MAIN_WINDOW)
    np.testing.assert_allclose(lines[1].get_xdata(), sgd["dmft_replica_distance"])
    np.testing.assert_allclose(lines[1].get_ydata(), sgd["dmft_T_eff"] / sgd["b"])
    # dashed DMFT gap densities in the colour of each point's simulated one; the DMFT's
    # contact fraction against its own distance (open markers); no DMFT kappa_eff
    left, middle, right = boundary.axes[:3]
    solid, dashed = (
        [line for line in left.get_lines() if line.get_linestyle() == style]
        for style in ("-", "--")
    )
    assert len(dashed) == len(solid) == len(B) * len(OPTIMIZERS)
    assert [line.get_color() for line in dashed] == [line.get_color() for line in solid]
    open_markers = [line for line in right.get_lines() if line.get_markerfacecolor() == "none"]
    assert len(open_markers) == len(B) * len(OPTIMIZERS)
    assert not dmft_lines(middle) and middle.get_legend() is None
    assert "at the end of training" in boundary.texts[0].get_text()


def test_teff_against_distance_reads_the_longest_window_measured_everywhere(drawn):
    """A short max_lag leaves s <= 10/b empty at small b: the figure falls back to the
    longest window with a T_eff at every point, for the simulation and the DMFT alike."""
    summary = noise_summary(dmft=True, stopped=False)
    for name in ("T_eff", "dmft_T_eff", "T_eff_per_drift", "dmft_T_eff_per_drift"):
        summary[name].loc[{"b": B[0], "window": fdt.MAIN_WINDOW}] = np.nan
    replica_distance.teff_vs_distance(summary, "unused.png")
    (figure,) = drawn
    axis = figure.axes[0]
    assert "window s<=3/b" in axis.get_ylabel()
    sgd = summary.sel(optimizer="sgd", window="s<=3/b")
    dmft_line = [line for line in axis.get_lines() if line.get_label().startswith("DMFT")][1]
    np.testing.assert_allclose(dmft_line.get_ydata(), sgd["dmft_T_eff"] / sgd["b"])


@pytest.mark.parametrize("stopped", [True, False], ids=["zero_loss", "stop_never"])
def test_sat_figures_draw_the_regime_bundle_without_dmft(drawn, stopped):
    """The effective_noise shape (SAT and UNSAT on a regime axis, no DMFT) still renders;
    the titles say 'at zero loss' only when every replica with a distance stopped there."""
    summary = regime_bundle(noise_summary(dmft=False, stopped=stopped))
    for figure in SAT_FIGURES:
        FIGURES[figure](summary, "unused.png")
    distance, relation, boundary = drawn
    assert not any(dmft_legend_entries(figure) for figure in drawn)
    assert len(distance.axes[0].get_legend().get_texts()) == len(OPTIMIZERS)
    assert len(relation.axes[0].get_lines()) == len(OPTIMIZERS)
    final = "at zero loss" if stopped else "at the end of training"
    assert final in distance.axes[0].get_title()
    assert final in boundary.texts[0].get_text()


def test_a_figure_of_two_analyses_needs_both():
    """T_eff against the replica distance is drawn only when a study measures both."""
    assert "teff_vs_distance" not in figures_of(["replica_distance", "margins", "dmft"])
    assert figures_of(["teff", "replica_distance"]) == [
        "fdt_parametric",
        "teff_vs_b",
        "replica_distance_vs_b",
        "teff_vs_distance",
    ]


# ----------------------------------------------------------------- figures draw, never compute

LEARNING_RATES = [0.025, 0.05, 0.1]


def discretisation_summary() -> xr.Dataset:
    """A Langevin summary over lr at T = 0.2 whose T_eff / T is exactly 1 / (1 / 1.05 +
    0.8 lr) in every window (the simulation's) and 1 / (1 + 0.8 lr) (the DMFT's), with
    the ratios the fit stage writes (analysis.fdt.temperature_ratios)."""
    lr = np.array(LEARNING_RATES)
    windows = list(fdt.FIT_WINDOWS)
    ones = np.ones((lr.size, len(windows)))
    variables = {}
    for prefix, limit in (("", 1.05), ("dmft_", 1.0)):
        ratio = ones / (1.0 / limit + 0.8 * lr[:, None])
        for suffix, factor in (("", 1.0), ("_low", 0.95), ("_high", 1.05)):
            variables[f"{prefix}T_eff{suffix}"] = (("lr", "window"), 0.2 * factor * ratio)
            variables[f"{prefix}T_eff_over_T{suffix}"] = (("lr", "window"), factor * ratio)
    summary = xr.Dataset(variables, coords={"lr": lr, "window": windows})
    config = resolve_point(
        {"data": {"P_over_N": 3.0}, "optimizer": {"kind": "langevin", "temperature": 0.2}}
    )
    summary.attrs.update(
        example_config=canonical_json(config), grid_axes=json.dumps({"lr": "optimizer.lr"})
    )
    return summary


def test_teff_vs_lr_draws_the_extrapolation_of_the_study_fits_and_refuses_without(drawn):
    """The lr -> 0 extrapolation is a study fit (study_fits, analysis discretisation): the
    figure draws it through the exact limits and refuses, naming it, to draw without it."""
    from sgdnoise.stages.study_fits import study_fits

    summary = discretisation_summary()
    with pytest.raises(ValueError, match="zero_step_T_eff_over_T.*discretisation"):
        FIGURES["teff_vs_lr"](summary, "unused.png")
    fits = study_fits(summary, ["discretisation"])
    np.testing.assert_allclose(fits["zero_step_T_eff_over_T"], 1.05, rtol=1e-12)
    np.testing.assert_allclose(fits["dmft_zero_step_T_eff_over_T"], 1.0, rtol=1e-12)
    np.testing.assert_allclose(fits["zero_step_slope"], 0.8, rtol=1e-12)
    FIGURES["teff_vs_lr"](summary, "unused.png", fits=fits)
    (figure,) = drawn
    limits = [
        line.get_ydata()[0] for line in figure.axes[0].get_lines() if "lr -> 0" in line.get_label()
    ]
    np.testing.assert_allclose(limits, [1.05, 1.0], rtol=1e-12)


@pytest.mark.parametrize(
    ("figure", "dropped", "named"),
    [
        ("teff_vs_distance", "T_eff_per_drift", "T_eff_per_drift"),
        ("dmft_vs_simulation", "train_loss_stderr", "train_loss_stderr"),
        ("teff_vs_lr", "T_eff_over_T", "T_eff_over_T"),
    ],
)
def test_a_figure_without_its_computed_input_names_it(figure, dropped, named):
    """Unit conversions and standard errors come from the fit stage: a summary without
    them is refused with the missing variable's name, never recomputed at render time."""
    if figure == "teff_vs_lr":
        summary = discretisation_summary()
    else:
        summary = noise_summary(dmft=True, stopped=False)
        summary["train_loss_mean"] = summary["replica_distance"]
        summary["train_loss_stderr"] = summary["replica_distance"]
    with pytest.raises(ValueError, match=named):
        FIGURES[figure](summary.drop_vars(dropped), "unused.png")
