# Evaluation: the exit diagnostic of published checkpoints (paper sec 5.2, Table 2).


rule diagnose_published:
    input:
        code=[LEAP / "early_exit.py", LEAP / "diagnostic.py", LEAP / "metrics.py"],
    output:
        json=f"{RESULTS}/published/{{name}}/eval/diagnostic.json",
    log:
        f"{RESULTS}/logs/diagnose_published/{{name}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/diagnose_published/{{name}}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        model=lambda wc: PUBLISHED[wc.name],
        theta=config["diagnostic"]["theta"],
        patience=config["diagnostic"]["patience"],
        min_layer=config["diagnostic"]["min_layer"],
        overhead_iters=config["diagnostic"]["overhead_iters"],
        sentences=config["diagnostic"]["sentences"],
    script:
        "../workflow_scripts/diagnose.py"
