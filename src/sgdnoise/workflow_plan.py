"""Which figures each analysis of a study produces (the workflow's final targets)."""

from __future__ import annotations

FIGURES_OF_ANALYSIS: dict[str, tuple[str, ...]] = {
    "training_curves": ("training_curves",),
    "teff": ("fdt_parametric", "teff_vs_b"),
    "langevin_calibration": ("fdt_parametric", "langevin_calibration"),
    "replica_distance": ("replica_distance_vs_b",),
    "margins": ("margins",),
    "dmft": ("dmft_vs_simulation",),  # and a DMFT line on the figures of the other analyses
    "discretisation": ("fdt_parametric", "teff_vs_lr"),
    "phase_diagram": ("phase_diagram", "test_error_vs_temperature"),
    "power_laws": ("scaling_observables", "exponents_vs_chi"),
    "critical_temperature": ("critical_temperature_vs_P", "scaling_collapse"),
}

# Figures that need several analyses of one study (all of them asked for).
FIGURES_OF_ANALYSES_TOGETHER: dict[tuple[str, ...], tuple[str, ...]] = {
    ("teff", "replica_distance"): ("teff_vs_distance",),
}

# Figures drawn from the study-level fits (results/<study>/fits.nc, rule study_fits).
FIGURES_WITH_STUDY_FITS = (
    "scaling_observables",
    "exponents_vs_chi",
    "critical_temperature_vs_P",
    "scaling_collapse",
)


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
