# Stage generate_data: one data artifact per data spec (kind + hash of the data section).


rule generate_data:
    output:
        f"{RESULTS}/{{study}}/data/{{spec}}.nc",
    log:
        f"{RESULTS}/{{study}}/logs/data/{{spec}}.log",
    benchmark:
        f"{RESULTS}/{{study}}/benchmarks/data/{{spec}}.tsv"
    params:
        config=spec_point_config_text,
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "{SGDNOISE} data --json {params.config:q} --out {output:q} > {log:q} 2>&1"
