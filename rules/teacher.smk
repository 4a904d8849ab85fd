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
        # distinct (init, depth, layer map): a new variant with the same shape
        # leaves this param, and so the cache, untouched
        students=sorted(
            {
                (c["student"], c["n_layers"], tuple(c["loss"]["layer_map"] or ()))
                for c in TRAIN_CONFIGS.values()
            },
            key=str,
        ),
    script:
        "../workflow_scripts/teacher_cache.py"
