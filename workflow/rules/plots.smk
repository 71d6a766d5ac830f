# Stage render: the figures of a study, each with a caption for the report.


rule render:
    input:
        f"{RESULTS}/{{study}}/summary.nc",
    output:
        report(
            f"{RESULTS}/{{study}}/figures/{{figure}}.png",
            caption="../report/{figure}.rst",
            category="{study}",
            labels={"study": "{study}", "figure": "{figure}"},
        ),
    log:
        f"{RESULTS}/{{study}}/logs/render/{{figure}}.log",
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "sgdnoise render {wildcards.figure} {input} --out {output} > {log} 2>&1"
