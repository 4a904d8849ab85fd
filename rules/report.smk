# Every table and figure whose runs exist, claims versus measured, and the report.


rule tables:
    input:
        evals=ALL_EVALS,
        diagnostics=DIAGNOSTICS,
        configs=[
            f"{RESULTS}/{v}/seed{seeds_of(v)[0]}/train_config.json" for v in TRAINED
        ],
        code=LEAP / "tables.py",
    output:
        index=f"{RESULTS}/tables/index.json",
    log:
        f"{RESULTS}/logs/tables.log",
    localrule: True
    conda:
        ENV
    params:
        names=list(PUBLISHED),
        variants=TRAINED,
    script:
        "../workflow_scripts/tables.py"


rule figures:
    input:
        evals=ALL_EVALS,
        code=LEAP / "figures.py",
    output:
        index=f"{RESULTS}/figures/index.json",
    log:
        f"{RESULTS}/logs/figures.log",
    localrule: True
    conda:
        ENV
    params:
        theta=EXIT["theta"],
    script:
        "../workflow_scripts/figures.py"


rule claims_report:
    input:
        evals=ALL_EVALS,
        diagnostics=DIAGNOSTICS,
        tables=f"{RESULTS}/tables/index.json",
        figures=f"{RESULTS}/figures/index.json",
        stats=f"{DATA}/stats.json",
        code=LEAP / "report.py",
    output:
        claims=f"{RESULTS}/claims.csv",
        report=f"{RESULTS}/report.md",
    log:
        f"{RESULTS}/logs/claims_report.log",
    localrule: True
    conda:
        ENV
    params:
        names=list(PUBLISHED),
        experiment=EXPERIMENT,
    script:
        "../workflow_scripts/report.py"
