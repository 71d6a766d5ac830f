"""Figures of a study, drawn from its summary.nc and, for the study-level analyses, its
fits.nc (io only: plots never import the dynamics; a figure that lacks what an analysis
computes for it raises a ValueError naming the missing input, it never recomputes it)."""

from __future__ import annotations

from sgdnoise.io.artifact import read_artifact
from sgdnoise.plots import dmft, fdt, margins, replica_distance, scaling
from sgdnoise.plots.phase_diagram import (
    optimal_temperature_figure,
    phase_diagram_figure,
    test_error_vs_temperature,
)
from sgdnoise.plots.training_curves import training_curves

FIGURES = {
    "training_curves": training_curves,
    "fdt_parametric": fdt.fdt_parametric,
    "teff_vs_b": fdt.teff_vs_b,
    "dmft_vs_simulation": dmft.dmft_vs_simulation,
    "replica_distance_vs_b": replica_distance.replica_distance_vs_b,
    "teff_vs_distance": replica_distance.teff_vs_distance,
    "margins": margins.margins,
    "langevin_calibration": fdt.langevin_calibration,
    "teff_vs_lr": fdt.teff_vs_lr,
    "phase_diagram": phase_diagram_figure,
    "test_error_vs_temperature": test_error_vs_temperature,
    "optimal_temperature": optimal_temperature_figure,
    "scaling_observables": scaling.scaling_observables,
    "exponents_vs_chi": scaling.exponents_vs_chi,
    "running_exponents": scaling.running_exponents,
    "critical_temperature_vs_P": scaling.critical_temperature_vs_p,
    "scaling_collapse": scaling.scaling_collapse,
    "critical_temperature_vs_margin": scaling.critical_temperature_vs_margin,
}


def render(figure: str, summary_path: str, out: str, fits_path: str | None = None) -> None:
    """Draw one named figure of a study summary (and its study fits.nc) into a PNG file."""
    if figure not in FIGURES:
        raise ValueError(f"unknown figure {figure!r}; allowed: {', '.join(FIGURES)}")
    extra = {"fits": read_artifact(fits_path, "fit")} if fits_path else {}
    FIGURES[figure](read_artifact(summary_path, "summary"), out, **extra)
