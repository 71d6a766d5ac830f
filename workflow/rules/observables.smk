# Stage correlation_response: C(t, t_w) and the exact response chi, by exact replay.


rule correlation_response:
    input:
        run=f"{RESULTS}/{{study}}/runs/{{point}}.nc",
        data=data_file,
    output:
        f"{RESULTS}/{{study}}/two_time/{{point}}.nc",
    log:
        f"{RESULTS}/{{study}}/logs/two_time/{{point}}.log",
    benchmark:
        f"{RESULTS}/{{study}}/benchmarks/two_time/{{point}}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    shell:
        "{SGDNOISE} --threads {threads} correlation-response {input.run:q}"
        " --data {input.data:q} --out {output:q} > {log:q} 2>&1"
