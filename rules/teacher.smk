# Teacher embedding cache: every training sentence through the teacher once; the pooled
# vectors of the layers any student's losses read (pi(1..L_s) and L_t), float16. One cache
# per teacher: the config's, and each student initialisation that self-distils.


rule teacher_cache:
    input:
        sentences=f"{DATA}/sentences.parquet",
        code=code("teacher_cache.py"),
    output:
        manifest=intermediate(f"{TEACHER_DIR}/manifest.json"),
    log:
        f"{RESULTS}/logs/teacher_cache/{{teacher}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/teacher_cache/{{teacher}}.tsv"
    priority: 40  # the head of the longest chain (cache -> training -> evaluation)
    conda:
        ENV
    threads: CFG.threads
    resources:
        gpu=GPU,
        mem_mb=16000,
        runtime=24 * 60,
    params:
        teacher=lambda wc: {**to_plain(CFG.teacher), "model": TEACHERS[wc.teacher]},
        # distinct (init, depth, layer map): a new variant with the same shape
        # leaves this param, and so the cache, untouched
        students=lambda wc: students_of(wc.teacher),
    script:
        "../workflow_scripts/teacher_cache.py"
