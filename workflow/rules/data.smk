# Stage generate_data: one data artifact per data spec (kind + hash of the data section).


rule generate_data:
    input:
        point=spec_point_config,
    output:
        f"{RESULTS}/{{study}}/data/{{spec}}.nc",
    log:
        f"{RESULTS}/{{study}}/logs/data/{{spec}}.log",
    benchmark:
        f"{RESULTS}/{{study}}/benchmarks/data/{{spec}}.tsv"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "sgdnoise data {input.point} --out {output} > {log} 2>&1"
