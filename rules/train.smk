# Training: one student per (variant, seed); the teacher never runs here, its targets come
# from the cache. Checkpoints under checkpoints/ survive a killed job and are resumed.
# The saved model carries the evaluation's exit rule (leap_exit.json).


rule train_student:
    input:
        sentences=f"{DATA}/sentences.parquet",
        manifest=lambda wc: f"{cache_of(wc.variant, wc.seed)}/manifest.json",
        code=train_code,
    output:
        model=intermediate(directory(f"{RUN}/model")),
        projection=f"{RUN}/projection.safetensors",
        config=f"{RUN}/train_config.json",
        log=f"{RUN}/train_log.jsonl",
    log:
        f"{RESULTS}/logs/train/{{variant}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{variant}}/seed{{seed}}.tsv"
    priority: 10
    conda:
        ENV
    threads: CFG.threads
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=48 * 60,
    params:
        train=lambda wc: TRAIN_CONFIGS[(wc.variant, int(wc.seed))],
        teacher=lambda wc: teacher_of(TRAIN_CONFIGS[(wc.variant, int(wc.seed))]),
        exit=EXIT,
    script:
        "../workflow_scripts/train.py"
