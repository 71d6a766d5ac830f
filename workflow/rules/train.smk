# Stage train_replicas: the R replicas of one grid point, trained together.
# The point's full config is a param: editing it retrains the point (rerun trigger).


rule train_replicas:
    wildcard_constraints:
        study="|".join(ONE_POINT_STUDIES) or "NO_STUDY",
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


# Studies with points_per_job > 1: one rule per batch of points (its outputs are the batch's
# run artifacts, the same files train_replicas would write), trained in one process. Its log
# and timing are named by the batch's first point (an index would name other points once
# the grid changes).
for study, batches in TRAIN_BATCHES.items():
    for index, point_ids in enumerate(batches):

        rule:
            name:
                f"train_{study.replace('-', '_')}_batch{index}"
            input:
                data=sorted({data_path(study, p) for p in point_ids}),
            output:
                [run_path(study, p) for p in point_ids],
            log:
                f"{RESULTS}/{study}/logs/train/batch-{point_ids[0]}.log",
            benchmark:
                f"{RESULTS}/{study}/benchmarks/train/batch-{point_ids[0]}.tsv"
            params:
                manifest=train_batch_manifest(study, point_ids),
            threads: 1
            resources:
                mem_mb=4000,
                runtime=120 * len(point_ids),
            shell:
                "{SGDNOISE} --threads {threads} points --manifest {params.manifest:q}"
                " --quiet > {log:q} 2>&1"
