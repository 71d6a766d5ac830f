"""What the workflow asks of the package: the analyses, their needs and figures, and
the planning helpers of workflow/rules/common.smk.

One registry (``ANALYSES``) read by the config validation (a study whose points cannot
feed an analysis is refused before any job runs), by the workflow (which stage computes
what, which figures are its final targets) and by the study-level fits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sgdnoise.config.point import PointConfig

Points = Sequence[Any]  # the study's GridPoints (config.grid.GridPoint)


def _measures_response(points: Points, axes: Sequence[str]) -> str | None:
    if any(point.config.run.response.waiting_times for point in points):
        return None
    return "the exact response: give run.response.waiting_times (t_w < run.max_time)"


def _has_same_init_pairs(points: Points, axes: Sequence[str]) -> str | None:
    if any(point.config.run.pairing == "same_init" for point in points):
        return None
    return "same-init replica pairs: set run.pairing: same_init (and an even run.replicas)"


def _has_stabilities(points: Points, axes: Sequence[str]) -> str | None:
    if all(point.config.model.kind != "torch" for point in points):
        return None
    return (
        "the stabilities h = y f of the perceptron or the alpha-trick networks "
        "(model.kind torch has none)"
    )


def _inside_the_theory(points: Points, axes: Sequence[str]) -> str | None:
    from sgdnoise.theory.problem import UnsupportedPointError, problem_from_point

    for point in points:
        try:
            problem_from_point(point.config)
        except UnsupportedPointError as error:
            return f"every point inside the theory; point {point.point_id} is not: {error}"
    return None


def _sweeps(*paths: str) -> Callable[[Points, Sequence[str]], str | None]:
    def check(points: Points, axes: Sequence[str]) -> str | None:
        for path in paths:
            if path not in axes:
                return f"a grid axis {path} (the grid sweeps: {', '.join(axes) or 'nothing'})"
        return None

    return check


def _sweeps_temperature_to_zero_loss(points: Points, axes: Sequence[str]) -> str | None:
    if "optimizer.temperature" not in axes and "optimizer.lr" not in axes:
        return (
            "the SGD temperature as a grid axis (optimizer.temperature or optimizer.lr; "
            f"the grid sweeps: {', '.join(axes) or 'nothing'})"
        )
    if not all(point.config.optimizer.kind == "minibatch_sgd" for point in points):
        return "optimizer.kind minibatch_sgd at every point (T = lr / (width x batch_size))"
    if not all(point.config.run.stop == "zero_loss" for point in points):
        return "run.stop: zero_loss at every point (t* and the weights at the stop)"
    return None


def _several_sizes(points: Points, axes: Sequence[str]) -> str | None:
    sizes = sorted({point.config.data.P for point in points})
    if len(sizes) < 2:
        return (
            "at least two training-set sizes data.P (its exponents in P and the running "
            f"exponents between successive P; the grid has P = {', '.join(map(str, sizes))})"
        )
    return None


def _all_of(
    *checks: Callable[[Points, Sequence[str]], str | None],
) -> Callable[[Points, Sequence[str]], str | None]:
    """A needs check met when every one of ``checks`` is (else the first unmet need)."""

    def check(points: Points, axes: Sequence[str]) -> str | None:
        return next((need for need in (c(points, axes) for c in checks) if need), None)

    return check


@dataclass(frozen=True)
class Analysis:
    """An analysis: its figures, the stages that compute it, what its points must provide.

    ``stages``: "fit" (per point, fits/<point>.nc) and/or "study_fits" (the study's
    fits.nc); none: drawn from summary.nc alone. ``study_fit_figures``: the figures that
    also read fits.nc. ``needs(points, axes)`` returns None when the study can feed the
    analysis, else a phrase saying what is missing (shown in the validation error).
    """

    figures: tuple[str, ...]
    stages: tuple[str, ...] = ()
    needs: Callable[[Points, Sequence[str]], str | None] | None = None
    study_fit_figures: tuple[str, ...] = ()


PER_POINT, STUDY_LEVEL = ("fit",), ("study_fits",)
SCALING_FIGURES = ("scaling_observables", "exponents_vs_chi", "running_exponents")
CROSSOVER_FIGURES = ("critical_temperature_vs_P", "scaling_collapse")

ANALYSES: dict[str, Analysis] = {
    "training_curves": Analysis(("training_curves",)),
    "teff": Analysis(("fdt_parametric", "teff_vs_b"), PER_POINT, _measures_response),
    "langevin_calibration": Analysis(
        ("fdt_parametric", "langevin_calibration"), PER_POINT, _measures_response
    ),
    "replica_distance": Analysis(("replica_distance_vs_b",), PER_POINT, _has_same_init_pairs),
    "margins": Analysis(("margins",), PER_POINT, _has_stabilities),
    # and a DMFT line on the figures of the other analyses
    "dmft": Analysis(("dmft_vs_simulation",), PER_POINT, _inside_the_theory),
    # T_eff per point, then its extrapolation to lr -> 0 across the study
    "discretisation": Analysis(
        ("fdt_parametric", "teff_vs_lr"),
        PER_POINT + STUDY_LEVEL,
        _measures_response,
        study_fit_figures=("teff_vs_lr",),
    ),
    "phase_diagram": Analysis(
        ("phase_diagram", "test_error_vs_temperature"),
        needs=_sweeps("model.alpha", "optimizer.temperature"),
    ),
    # the test error against T at fixed alpha (one curve per P): the lazy-regime sweep
    "temperature_sweep": Analysis(
        ("test_error_vs_temperature",), needs=_sweeps("optimizer.temperature")
    ),
    "power_laws": Analysis(
        SCALING_FIGURES,
        STUDY_LEVEL,
        _all_of(_sweeps_temperature_to_zero_loss, _several_sizes),
        SCALING_FIGURES,
    ),
    "critical_temperature": Analysis(
        CROSSOVER_FIGURES, STUDY_LEVEL, _sweeps_temperature_to_zero_loss, CROSSOVER_FIGURES
    ),
    # T_c against the margin kappa = 1/alpha at fixed P (the perceptron's crossover)
    "margin_crossover": Analysis(
        ("critical_temperature_vs_margin",),
        STUDY_LEVEL,
        _all_of(_sweeps("model.alpha", "optimizer.temperature"), _sweeps_temperature_to_zero_loss),
        ("critical_temperature_vs_margin",),
    ),
    # T_opt(alpha) in the feature regime and its exponent k, beside (D-1)/(D+1)
    "optimal_temperature": Analysis(
        ("optimal_temperature",),
        STUDY_LEVEL,
        _sweeps("model.alpha", "optimizer.temperature"),
        ("optimal_temperature",),
    ),
}

FIGURES_OF_ANALYSIS: dict[str, tuple[str, ...]] = {
    name: analysis.figures for name, analysis in ANALYSES.items()
}

# Figures that need several analyses of one study (all of them asked for).
FIGURES_OF_ANALYSES_TOGETHER: dict[tuple[str, ...], tuple[str, ...]] = {
    ("teff", "replica_distance"): ("teff_vs_distance",),
}

# Figures drawn from the study-level fits (results/<study>/fits.nc, rule study_fits).
FIGURES_WITH_STUDY_FITS = tuple(
    figure for analysis in ANALYSES.values() for figure in analysis.study_fit_figures
)


def analyses_of_stage(analyses: Sequence[str], stage: str) -> list[str]:
    """The analyses among ``analyses`` that ``stage`` computes, in order."""
    return [name for name in analyses if stage in ANALYSES[name].stages]


def unmet_needs(analyses: Sequence[str], points: Points, axes: Sequence[str]) -> list[str]:
    """One sentence per asked analysis that the study's points cannot feed."""
    problems = []
    for name in analyses:
        needs = ANALYSES[name].needs
        missing = None if needs is None else needs(points, axes)
        if missing is not None:
            problems.append(f"analysis {name} needs {missing}")
    return problems


def figures_of(analyses: list[str]) -> list[str]:
    """Figure names (files figures/<name>.png) of a study's analyses, in order (then the
    figures of analyses asked for together)."""
    figures: list[str] = []
    joint = [
        figure
        for needed, drawn in FIGURES_OF_ANALYSES_TOGETHER.items()
        if set(needed) <= set(analyses)
        for figure in drawn
    ]
    for figure in [
        f for analysis in analyses for f in FIGURES_OF_ANALYSIS.get(analysis, ())
    ] + joint:
        if figure not in figures:
            figures.append(figure)
    return figures


def all_figures() -> list[str]:
    """Every figure some study can ask for, sorted."""
    tables = (FIGURES_OF_ANALYSIS, FIGURES_OF_ANALYSES_TOGETHER)
    return sorted({f for table in tables for figures in table.values() for f in figures})


def data_spec_id(point: PointConfig) -> str:
    """File id of a point's data set (kind and hash of its spec): points that share it
    share one data artifact."""
    from sgdnoise.stages.generate_data import data_spec_id as spec_id

    return spec_id(point)
