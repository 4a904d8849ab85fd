# Teacher embedding cache: every training sentence through the teacher once; the pooled
# vectors of the layers any student's losses read (pi(1..L_s) and L_t), float16.


rule teacher_cache:
    input:
        sentences=f"{DATA}/sentences.parquet",
        code=[LEAP / "teacher.py", LEAP / "early_exit.py"],
    output:
        manifest=f"{TEACHER_DIR}/manifest.json",
    log:
        f"{RESULTS}/logs/teacher_cache.log",
    benchmark:
        f"{RESULTS}/benchmarks/teacher_cache.tsv"
    conda:
        ENV
    threads: config["threads"]
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=24 * 60,
    params:
        teacher={
            "model": "packaged:all-MiniLM-L6-v2",
            "batch_size": 64,
            "shard_size": 8192,
            "max_seq_length": None,
            "dtype": None,
            **config["teacher"],
        },
        students=[
            (c["student"], c["n_layers"], c["loss"]["layer_map"])
            for c in TRAIN_CONFIGS.values()
        ],
    script:
        "../workflow_scripts/teacher_cache.py"
