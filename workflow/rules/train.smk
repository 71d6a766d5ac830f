# Stage train_replicas: the R replicas of one grid point, trained together.


rule point_config:
    output:
        f"{RESULTS}/{{study}}/points/{{point}}.yaml",
    params:
        config=point_config_text,
    localrule: True
    run:
        with open(output[0], "w") as handle:
            handle.write(params.config + "\n")


rule train_replicas:
    input:
        point=f"{RESULTS}/{{study}}/points/{{point}}.yaml",
        data=data_file,
    output:
        f"{RESULTS}/{{study}}/runs/{{point}}.nc",
    log:
        f"{RESULTS}/{{study}}/logs/train/{{point}}.log",
    benchmark:
        f"{RESULTS}/{{study}}/benchmarks/train/{{point}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    shell:
        "sgdnoise --threads {threads} point {input.point} --data {input.data}"
        " --out {output} --quiet > {log} 2>&1"
