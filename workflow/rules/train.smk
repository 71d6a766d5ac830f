# Stage train_replicas: the R replicas of one grid point, trained together.
# The point's full config is a param: editing it retrains the point (rerun trigger).


rule train_replicas:
    input:
        data=data_file,
    output:
        f"{RESULTS}/{{study}}/runs/{{point}}.nc",
    log:
        f"{RESULTS}/{{study}}/logs/train/{{point}}.log",
    benchmark:
        f"{RESULTS}/{{study}}/benchmarks/train/{{point}}.tsv"
    params:
        config=point_config_text,
        coordinates=point_coordinates_text,
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    shell:
        "{SGDNOISE} --threads {threads} point --json {params.config:q} --data {input.data:q}"
        " --coordinates {params.coordinates:q} --out {output:q} --quiet > {log:q} 2>&1"
