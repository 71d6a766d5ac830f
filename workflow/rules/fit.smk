# Stage fit: per-point analyses (T_eff with CI, replica distance, margins, the DMFT beside).


rule fit:
    input:
        unpack(fit_inputs),
    output:
        f"{RESULTS}/{{study}}/fits/{{point}}.nc",
    log:
        f"{RESULTS}/{{study}}/logs/fit/{{point}}.log",
    params:
        options=fit_options,
    resources:
        mem_mb=2000,
        runtime=20,
    shell:
        "{SGDNOISE} fit {input.run:q} {params.options} --out {output:q} > {log:q} 2>&1"
