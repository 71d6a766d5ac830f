# Stage fit: per-point analyses (T_eff with CI, replica distance, margins).


rule fit:
    input:
        unpack(fit_inputs),
    output:
        f"{RESULTS}/{{study}}/fits/{{point}}.nc",
    log:
        f"{RESULTS}/{{study}}/logs/fit/{{point}}.log",
    params:
        two_time=two_time_option,
    resources:
        mem_mb=2000,
        runtime=20,
    shell:
        "sgdnoise fit {input.run} {params.two_time} --out {output} > {log} 2>&1"
