"""Report captions: every figure of the workflow has one that renders for every study that
draws it and says what is held fixed and what to look for."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import yaml
from docutils.core import publish_parts
from jinja2 import Environment

from sgdnoise.workflow_plan import FIGURES_OF_ANALYSIS, figures_of
from tests.conftest import REPO

CAPTIONS = REPO / "workflow" / "report"
FIGURES = sorted({figure for figures in FIGURES_OF_ANALYSIS.values() for figure in figures})
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


@pytest.mark.parametrize("figure", FIGURES)
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
