# Stage dmft: the theory (N -> infinity, same finite lr) at a study's grid points, for
# studies that ask for the analysis `dmft`; the fit stage puts it beside the simulation.


rule dmft:
    output:
        f"{RESULTS}/{{study}}/dmft/{{point}}.nc",
    log:
        f"{RESULTS}/{{study}}/logs/dmft/{{point}}.log",
    benchmark:
        f"{RESULTS}/{{study}}/benchmarks/dmft/{{point}}.tsv"
    params:
        config=point_config_text,
        solver=dmft_solver_options,
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    shell:
        "{SGDNOISE} --threads {threads} dmft --json {params.config:q} {params.solver}"
        " --out {output:q} > {log:q} 2>&1"
