# Stage study_fits: study-level analyses of the aggregated summary (power laws, critical
# temperature and collapse) in fits.nc; plots.smk draws the figures from summary and fits.
def study_level_analyses(wildcards):
    """The study-level analyses a study asks for (arguments of `sgdnoise study-fits`)."""
    analyses = config["studies"][wildcards.study].get("analyses", [])
    return " ".join(analyses_of_stage(analyses, "study_fits"))


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
        "{SGDNOISE} study-fits {input:q} --analyses {params.analyses} --out {output:q}"
        " > {log:q} 2>&1"
