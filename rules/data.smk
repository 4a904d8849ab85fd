# Data extraction and filtering (paper sec 4.1, B.2): unique sentences longer than 20
# characters from every configured source, every evaluation sentence removed; a dev split
# of each BEIR set carved from its training queries (for tuning; test is read once).


rule extract_data:
    input:
        code=code("extract.py"),
    output:
        sentences=intermediate(f"{DATA}/sentences.parquet"),
        stats=f"{DATA}/stats.json",
        stsb=intermediate(f"{DATA}/stsb.parquet"),
        qqp=intermediate(f"{DATA}/qqp.parquet") if CFG.data.qqp else [],
        nli=intermediate(f"{DATA}/nli.parquet") if CFG.data.nli else [],
        retrieval=[
            intermediate(f)
            for f in expand(
                f"{DATA}/retrieval/{{dataset}}/corpus.jsonl", dataset=RETRIEVAL
            )
        ],
    log:
        f"{RESULTS}/logs/extract_data.log",
    benchmark:
        f"{RESULTS}/benchmarks/extract_data.tsv"
    # downloads (Hub datasets, BEIR zips): retried, and run where the workflow runs
    # (cluster compute nodes often have no internet)
    retries: 2
    localrule: True
    conda:
        ENV
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        data={**to_plain(CFG.data), "data_dir": CFG.data_dir},
    script:
        "../workflow_scripts/extract.py"
