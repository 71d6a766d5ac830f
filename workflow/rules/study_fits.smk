# Stage study_fits: study-level analyses of the aggregated summary (power laws, critical
# temperature and collapse) in fits.nc, and the figures drawn from summary and fits.
from sgdnoise.stages.study_fits import STUDY_ANALYSES
from sgdnoise.workflow_plan import FIGURES_WITH_STUDY_FITS


def study_level_analyses(wildcards):
    """The study-level analyses a study asks for (arguments of `sgdnoise study-fits`)."""
    analyses = config["studies"][wildcards.study].get("analyses", [])
    return " ".join(name for name in analyses if name in STUDY_ANALYSES)


rule study_fits:
    input:
        f"{RESULTS}/{{study}}/summary.nc",
    output:
        f"{RESULTS}/{{study}}/fits.nc",
    log:
        f"{RESULTS}/{{study}}/logs/study_fits.log",
    params:
        analyses=study_level_analyses,
    resources:
        mem_mb=4000,
        runtime=60,
    shell:
        "sgdnoise study-fits {input} --analyses {params.analyses} --out {output} > {log} 2>&1"


rule render_with_study_fits:
    input:
        summary=f"{RESULTS}/{{study}}/summary.nc",
        fits=f"{RESULTS}/{{study}}/fits.nc",
    output:
        report(
            f"{RESULTS}/{{study}}/figures/{{figure}}.png",
            caption="../report/{figure}.rst",
            category="{study}",
            labels={"study": "{study}", "figure": "{figure}"},
        ),
    wildcard_constraints:
        figure="|".join(FIGURES_WITH_STUDY_FITS),
    log:
        f"{RESULTS}/{{study}}/logs/render/{{figure}}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "sgdnoise render {wildcards.figure} {input.summary} --fits {input.fits} --out {output}"
        " > {log} 2>&1"


ruleorder: render_with_study_fits > render
