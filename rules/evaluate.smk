# Evaluation (paper sec 4): STS-B, QQP and BEIR on exited embeddings, each with the
# frontier of its exit rules against static truncation of the same model; layer-wise
# analyses; DeeBERT-style off-ramps; latency; and the exit diagnostic of published
# checkpoints (sec 5.2). {run} is a trained student ({variant}/seed{seed}) or a published
# checkpoint (published/{name}). Evaluations outrank training (priority 30 > 10): a model's
# evaluations run before the next model trains, so a run stopped in between loses little.


rule diagnose_published:
    input:
        code=code("diagnose.py"),
    output:
        json=f"{RESULTS}/published/{{name}}/eval/diagnostic.json",
    log:
        f"{RESULTS}/logs/diagnose_published/{{name}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/diagnose_published/{{name}}.tsv"
    conda:
        ENV
    threads: CFG.threads
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        model=lambda wc: PUBLISHED[wc.name],
        theta=CFG.diagnostic.theta,
        patience=CFG.diagnostic.patience,
        min_layer=CFG.diagnostic.min_layer,
        overhead_iters=CFG.diagnostic.overhead_iters,
        sentences=CFG.diagnostic.sentences,
    script:
        "../workflow_scripts/diagnose.py"


# A published checkpoint exit-enabled with least-squares per-layer maps fitted on a sample of
# the training sentences (published_models[].fit_maps), evaluated like any other run.
rule exit_enable_published:
    input:
        sentences=f"{DATA}/sentences.parquet",
        code=code("exit_enable.py"),
    output:
        model=intermediate(directory(f"{RESULTS}/published/{{name}}/model")),
    log:
        f"{RESULTS}/logs/exit_enable_published/{{name}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/exit_enable_published/{{name}}.tsv"
    conda:
        ENV
    threads: CFG.threads
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=60,
    params:
        model=lambda wc: PUBLISHED[wc.name],
        n=lambda wc: FIT_MAPS[wc.name],
        seed=CFG.data.seed,
        exit=EXIT,
        device=EVAL.device,
    script:
        "../workflow_scripts/exit_enable.py"


# STS-B with its frontier, and the layer analyses from the same full pass (one job, one
# model load); QQP for the main models where configured.
rule eval_stsb:
    input:
        model=model_input,
        pairs=f"{DATA}/stsb.parquet",
        code=code("eval_stsb.py"),
    output:
        json=f"{EVAL_RUN}/stsb.json",
        layers=f"{EVAL_RUN}/layers.json",
    log:
        f"{RESULTS}/logs/eval_stsb/{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/eval_stsb/{{run}}.tsv"
    priority: 30
    conda:
        ENV
    threads: CFG.threads
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=60,
    params:
        model=model_of,
        exit=EXIT,
        batch_size=EVAL.batch_size,
        max_sentences=EVAL.layer_sentences,
        device=EVAL.device,
        engine=EVAL.engine,
    script:
        "../workflow_scripts/eval_stsb.py"


rule eval_qqp:
    input:
        model=model_input,
        pairs=f"{DATA}/qqp.parquet",
        code=code("eval_pairs.py"),
    output:
        json=f"{EVAL_RUN}/qqp.json",
    log:
        f"{RESULTS}/logs/eval_qqp/{{run}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/eval_qqp/{{run}}.tsv"
    priority: 30
    conda:
        ENV
    threads: CFG.threads
    resources:
        gpu=GPU,
        mem_mb=8000,
        runtime=60,
    params:
        model=model_of,
        exit=EXIT,
        batch_size=EVAL.batch_size,
        device=EVAL.device,
        engine=EVAL.engine,
    script:
        "../workflow_scripts/eval_pairs.py"


# One pass over a BEIR set for a checkpoint evaluated both as published and with fitted maps
# (the maps act after pooling): the raw vectors of every layer, read by both evaluations.
rule published_vectors:
    input:
        corpus=f"{DATA}/retrieval/{{dataset}}/corpus.jsonl",
        code=code("published_vectors.py"),
    output:
        vectors=intermediate(
            f"{RESULTS}/layer_vectors/{{checkpoint}}/beir_{{dataset}}.safetensors"
        ),
    log:
        f"{RESULTS}/logs/published_vectors/{{checkpoint}}/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/published_vectors/{{checkpoint}}/{{dataset}}.tsv"
    priority: 40
    conda:
        ENV
    threads: CFG.threads
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=4 * 60,
    params:
        model=lambda wc: VECTOR_MODELS[wc.checkpoint],
        batch_size=EVAL.batch_size,
        max_seq_length=EVAL.retrieval_max_seq_length,
        device=EVAL.device,
        engine=EVAL.engine,
    script:
        "../workflow_scripts/published_vectors.py"


rule eval_beir:
    input:
        model=model_input,
        corpus=f"{DATA}/retrieval/{{dataset}}/corpus.jsonl",
        vectors=lambda wc: PLAN.vectors_of(wc.run, wc.dataset),
        code=code("eval_beir.py"),
    output:
        json=f"{EVAL_RUN}/beir_{{dataset}}.json",
    log:
        f"{RESULTS}/logs/eval_beir/{{run}}/{{dataset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/eval_beir/{{run}}/{{dataset}}.tsv"
    priority: 40  # the longest evaluations start first: no core idles at the tail beside a lone BEIR job
    conda:
        ENV
    threads: CFG.threads
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=4 * 60,
    params:
        model=model_of,
        exit=EXIT,
        batch_size=EVAL.batch_size,
        max_seq_length=EVAL.retrieval_max_seq_length,
        device=EVAL.device,
        engine=EVAL.engine,
        vectors=lambda wc: PLAN.vectors_of(wc.run, wc.dataset),
    script:
        "../workflow_scripts/eval_beir.py"


rule eval_exit_heads:
    input:
        model=f"{RESULTS}/baseline/seed{{seed}}/model",
        nli=f"{DATA}/nli.parquet",
        pairs=f"{DATA}/stsb.parquet",
        reference=f"{RESULTS}/{EVAL.heads_reference}/seed{{seed}}/eval/stsb.json",
        code=code("eval_exit_heads.py"),
    output:
        json=f"{RESULTS}/{HEADS}/seed{{seed}}/eval/stsb_heads.json",
    log:
        f"{RESULTS}/logs/eval_exit_heads/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/eval_exit_heads/seed{{seed}}.tsv"
    priority: 30
    conda:
        ENV
    threads: CFG.threads
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        min_layer=EXIT["min_layer"],
        batch_size=EVAL.batch_size,
        device=EVAL.device,
        engine=EVAL.engine,
    script:
        "../workflow_scripts/eval_exit_heads.py"


# Every serving path of a timed student on a sample of STS-B dev pairs: torch and ONNX Runtime
# int8, each at full depth, cut at every layer and under exit (the frontier figure's speed
# panels). The model is exported in a scratch copy; its folder stays as training wrote it.
rule serving_paths:
    input:
        model=f"{RUN}/model",
        pairs=f"{DATA}/stsb.parquet",
        code=code("serving_paths.py"),
    output:
        json=f"{RUN}/eval/serving_paths.json",
    log:
        f"{RESULTS}/logs/serving_paths/{{variant}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/serving_paths/{{variant}}/seed{{seed}}.tsv"
    priority: 30
    conda:
        ENV
    threads: CFG.threads
    resources:
        mem_mb=4000,
        runtime=60,
        exclusive=1,
    params:
        latency=LATENCY,
    script:
        "../workflow_scripts/serving_paths.py"


rule latency_bench:
    input:
        model=f"{RUN}/model",
        code=code("latency.py"),
    output:
        json=f"{RUN}/eval/latency.json",
    log:
        f"{RESULTS}/logs/latency/{{variant}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/latency/{{variant}}/seed{{seed}}.tsv"
    priority: 30
    conda:
        ENV
    threads: CFG.threads
    resources:
        gpu=GPU,
        mem_mb=4000,
        runtime=60,
        exclusive=1,
    params:
        exit=EXIT,
        bench=LATENCY,
    script:
        "../workflow_scripts/latency.py"
