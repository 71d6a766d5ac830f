# Stage aggregate: all points of a study on named dims in summary.nc.


rule grid_table:
    output:
        table=f"{RESULTS}/{{study}}/grid.tsv",
        points=directory(f"{RESULTS}/{{study}}/points"),
    log:
        f"{RESULTS}/{{study}}/logs/grid_table.log",
    params:
        study=study_text,
    localrule: True
    shell:
        "{SGDNOISE} grid {wildcards.study} --json {params.study:q} --table {output.table:q}"
        " --points {output.points:q} > {log:q} 2>&1"


rule aggregate:
    input:
        grid=f"{RESULTS}/{{study}}/grid.tsv",
        runs=study_runs,
        fits=study_fits,
    output:
        f"{RESULTS}/{{study}}/summary.nc",
    log:
        f"{RESULTS}/{{study}}/logs/aggregate.log",
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "{SGDNOISE} aggregate --grid {input.grid:q} --fits {input.fits:q} --out {output:q}"
        " {input.runs:q} > {log:q} 2>&1"
