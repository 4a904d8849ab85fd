# Training: one student per (variant, seed); the teacher never runs here, its targets come
# from the cache. Checkpoints under checkpoints/ survive a killed job and are resumed.


rule train_student:
    input:
        sentences=f"{DATA}/sentences.parquet",
        manifest=f"{TEACHER_DIR}/manifest.json",
        code=[LEAP / "train.py", LEAP / "losses.py", LEAP / "pooling.py"],
    output:
        model=directory(f"{RUN}/model"),
        projection=f"{RUN}/projection.safetensors",
        config=f"{RUN}/train_config.json",
        log=f"{RUN}/train_log.jsonl",
    log:
        f"{RESULTS}/logs/train/{{variant}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{{variant}}/seed{{seed}}.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=48 * 60,
    params:
        train=lambda wc: TRAIN_CONFIGS[(wc.variant, int(wc.seed))],
        teacher=config["teacher"].get("model", "packaged:all-MiniLM-L6-v2"),
    script:
        "../workflow_scripts/train.py"
