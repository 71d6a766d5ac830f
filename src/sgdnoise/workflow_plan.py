"""Which figures each analysis of a study produces (the workflow's final targets)."""

from __future__ import annotations

FIGURES_OF_ANALYSIS: dict[str, tuple[str, ...]] = {
    "training_curves": ("training_curves",),
    "teff": ("fdt_parametric", "teff_vs_b"),
    "langevin_calibration": ("fdt_parametric", "langevin_calibration"),
    "replica_distance": ("replica_distance_vs_b", "teff_vs_distance"),
    "margins": ("margins",),
    "dmft": ("fdt_parametric", "dmft_vs_simulation"),
    "discretisation": ("fdt_parametric", "teff_vs_lr"),
    "phase_diagram": ("phase_diagram", "test_error_vs_temperature"),
    "power_laws": ("scaling_observables", "exponents_vs_chi"),
    "critical_temperature": ("critical_temperature_vs_P", "scaling_collapse"),
}

# Figures drawn from the study-level fits (results/<study>/fits.nc, rule study_fits).
FIGURES_WITH_STUDY_FITS = (
    "scaling_observables",
    "exponents_vs_chi",
    "critical_temperature_vs_P",
    "scaling_collapse",
)


def figures_of(analyses: list[str]) -> list[str]:
    """Figure names (files figures/<name>.png) of a study's analyses, in order."""
    figures: list[str] = []
    for analysis in analyses:
        for figure in FIGURES_OF_ANALYSIS.get(analysis, ()):
            if figure not in figures:
                figures.append(figure)
    return figures
