# Evaluation: STS-B, QQP and BEIR on exited embeddings, layer-wise analyses, DeeBERT-style
# off-ramps, latency, and the exit diagnostic of published checkpoints (sec 4, 5.2).


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


# Scored pair sets (STS-B; QQP for the main models where configured): one rule, one
# JSON per set.
rule eval_pairs:
    input:
        model=f"{RUN}/model",
        pairs=f"{DATA}/{{pairset}}.parquet",
        code=[LEAP / "evaluate.py", LEAP / "early_exit.py", LEAP / "metrics.py"],
    output:
        json=f"{RUN}/eval/{{pairset}}.json",
    log:
        f"{RESULTS}/logs/eval_{{pairset}}/{{variant}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/eval_{{pairset}}/{{variant}}/seed{{seed}}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        exit=EXIT,
        batch_size=EVAL["batch_size"],
    script:
        "../workflow_scripts/eval_pairs.py"


rule eval_layers:
    input:
        model=f"{RUN}/model",
        pairs=f"{DATA}/stsb.parquet",
        code=[LEAP / "evaluate.py", LEAP / "early_exit.py", LEAP / "metrics.py"],
    output:
        json=f"{RUN}/eval/layers.json",
    log:
        f"{RESULTS}/logs/eval_layers/{{variant}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/eval_layers/{{variant}}/seed{{seed}}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        exit=EXIT,
        batch_size=EVAL["batch_size"],
        max_sentences=EVAL["layer_sentences"],
    script:
        "../workflow_scripts/eval_layers.py"


rule eval_beir:
    input:
        model=f"{RUN}/model",
        corpus=f"{DATA}/retrieval/{{dataset}}/corpus.jsonl",
        code=[LEAP / "evaluate.py", LEAP / "early_exit.py"],
    output:
        json=f"{RUN}/eval/beir_{{dataset}}.json",
    log:
        f"{RESULTS}/logs/eval_beir/{{variant}}/seed{{seed}}/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/eval_beir/{{variant}}/seed{{seed}}/{{dataset}}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=4 * 60,
    params:
        exit=EXIT,
        batch_size=EVAL["batch_size"],
    script:
        "../workflow_scripts/eval_beir.py"


rule eval_exit_heads:
    input:
        model=f"{RESULTS}/baseline/seed{{seed}}/model",
        nli=f"{DATA}/nli.parquet",
        pairs=f"{DATA}/stsb.parquet",
        leap=f"{RESULTS}/leap/seed{{seed}}/eval/stsb.json",
        code=[LEAP / "evaluate.py"],
    output:
        json=f"{RESULTS}/{HEADS}/seed{{seed}}/eval/stsb_heads.json",
    log:
        f"{RESULTS}/logs/eval_exit_heads/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/eval_exit_heads/seed{{seed}}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        epochs=EVAL["heads_epochs"],
        batch_size=EVAL["batch_size"],
    script:
        "../workflow_scripts/eval_exit_heads.py"


rule latency_bench:
    input:
        model=f"{RUN}/model",
        code=[LEAP / "latency.py", LEAP / "early_exit.py"],
    output:
        json=f"{RUN}/eval/latency.json",
    log:
        f"{RESULTS}/logs/latency/{{variant}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/latency/{{variant}}/seed{{seed}}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        gpu=1,
        mem_mb=4000,
        runtime=60,
        exclusive=1,
    params:
        exit=EXIT,
        bench=LATENCY,
    script:
        "../workflow_scripts/latency.py"
