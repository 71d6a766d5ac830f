"""Which figures each analysis of a study produces (the workflow's final targets)."""

from __future__ import annotations

FIGURES_OF_ANALYSIS: dict[str, tuple[str, ...]] = {
    "training_curves": ("training_curves",),
}


def figures_of(analyses: list[str]) -> list[str]:
    """Figure names (files figures/<name>.png) of a study's analyses, in order."""
    figures: list[str] = []
    for analysis in analyses:
        for figure in FIGURES_OF_ANALYSIS.get(analysis, ()):
            if figure not in figures:
                figures.append(figure)
    return figures
