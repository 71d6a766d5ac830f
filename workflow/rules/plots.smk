# Stage render: the figures of a study, each with its own caption for the report.
# One rule per figure (a report caption cannot be chosen by a wildcard); figures of
# study-level fits also read results/<study>/fits.nc.
import shlex

from sgdnoise.workflow_plan import FIGURES_WITH_STUDY_FITS, all_figures

ALL_FIGURES = all_figures()


def figure_inputs(figure):
    """Input function of one figure's rule: the summary, and fits.nc where needed."""

    def inputs(wildcards):
        files = {"summary": f"{RESULTS}/{wildcards.study}/summary.nc"}
        if figure in FIGURES_WITH_STUDY_FITS:
            files["fits"] = f"{RESULTS}/{wildcards.study}/fits.nc"
        return files

    return inputs


def fits_option(wildcards, input):
    """The --fits option of `sgdnoise render` (empty for figures of the summary alone;
    the path quoted for the shell)."""
    return f"--fits {shlex.quote(input.fits)}" if "fits" in input.keys() else ""


for figure_name in ALL_FIGURES:

    rule:
        name:
            f"render_{figure_name}"
        input:
            unpack(figure_inputs(figure_name)),
        output:
            report(
                f"{RESULTS}/{{study}}/figures/{figure_name}.png",
                caption=f"../report/{figure_name}.rst",
                category="{study}",
                labels={"study": "{study}", "figure": figure_name},
            ),
        log:
            f"{RESULTS}/{{study}}/logs/render/{figure_name}.log",
        params:
            fits=fits_option,
            figure=figure_name,
        resources:
            mem_mb=2000,
            runtime=10,
        shell:
            "{SGDNOISE} render {params.figure} {input.summary:q} {params.fits}"
            " --out {output:q} > {log:q} 2>&1"
