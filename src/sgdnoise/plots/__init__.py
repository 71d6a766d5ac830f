"""Figures of a study, drawn from its summary.nc (io only: plots never import the dynamics)."""

from __future__ import annotations

from sgdnoise.io.artifact import read_artifact
from sgdnoise.plots.training_curves import training_curves

FIGURES = {
    "training_curves": training_curves,
}


def render(figure: str, summary_path: str, out: str) -> None:
    """Draw one named figure of a study summary into a PNG file."""
    if figure not in FIGURES:
        raise ValueError(f"unknown figure {figure!r}; allowed: {', '.join(FIGURES)}")
    FIGURES[figure](read_artifact(summary_path, "summary"), out)
