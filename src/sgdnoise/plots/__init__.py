"""Figures of a study, drawn from its summary.nc (io only: plots never import the dynamics)."""

from __future__ import annotations

from sgdnoise.io.artifact import read_artifact
from sgdnoise.plots import noise, scaling
from sgdnoise.plots.phase_diagram import phase_diagram_figure, test_error_vs_temperature
from sgdnoise.plots.training_curves import training_curves

FIGURES = {
    "training_curves": training_curves,
    "fdt_parametric": noise.fdt_parametric,
    "teff_vs_b": noise.teff_vs_b,
    "dmft_vs_simulation": noise.dmft_vs_simulation,
    "replica_distance_vs_b": noise.replica_distance_vs_b,
    "teff_vs_distance": noise.teff_vs_distance,
    "margins": noise.margins,
    "langevin_calibration": noise.langevin_calibration,
    "teff_vs_lr": noise.teff_vs_lr,
    "phase_diagram": phase_diagram_figure,
    "test_error_vs_temperature": test_error_vs_temperature,
    "scaling_observables": scaling.scaling_observables,
    "exponents_vs_chi": scaling.exponents_vs_chi,
    "critical_temperature_vs_P": scaling.critical_temperature_vs_p,
    "scaling_collapse": scaling.scaling_collapse,
}


def render(figure: str, summary_path: str, out: str, fits_path: str | None = None) -> None:
    """Draw one named figure of a study summary (and its study fits.nc) into a PNG file."""
    if figure not in FIGURES:
        raise ValueError(f"unknown figure {figure!r}; allowed: {', '.join(FIGURES)}")
    extra = {"fits": read_artifact(fits_path, "fit")} if fits_path else {}
    FIGURES[figure](read_artifact(summary_path, "summary"), out, **extra)
