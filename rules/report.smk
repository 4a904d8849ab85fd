# Every table and figure of the paper, model cards, claims versus measured, and the report
# (Markdown report.md here; `snakemake --report` gives the HTML one, every table and figure
# captioned and grouped by stage).


rule tables:
    input:
        evals=ALL_EVALS,
        diagnostics=DIAGNOSTICS,
        configs=[
            f"{RESULTS}/{v}/seed{seeds_of(v)[0]}/train_config.json" for v in TRAINED
        ],
        code=code("tables.py"),
    output:
        index=TABLES_DONE,
        csv=[reported(f"{RESULTS}/tables/{n}.csv", n, "tables") for n in TABLE_NAMES],
        md=[f"{RESULTS}/tables/{n}.md" for n in TABLE_NAMES],
    log:
        f"{RESULTS}/logs/tables.log",
    localrule: True
    conda:
        ENV
    params:
        names=DIAGNOSED,
        variants=TRAINED,
    script:
        "../workflow_scripts/tables.py"


rule figures:
    input:
        evals=ALL_EVALS,
        code=code("figures.py"),
    output:
        index=FIGURES_DONE,
        png=[reported(f"{RESULTS}/figures/{n}.png", n, "figures") for n in FIGURE_NAMES],
        pdf=[f"{RESULTS}/figures/{n}.pdf" for n in FIGURE_NAMES],
    log:
        f"{RESULTS}/logs/figures.log",
    localrule: True
    conda:
        ENV
    params:
        theta=EXIT["theta"],
    script:
        "../workflow_scripts/figures.py"


rule model_card:
    input:
        model=f"{RUN}/model",
        config=f"{RUN}/train_config.json",
        stsb=f"{RUN}/eval/stsb.json",
        code=code("model_card.py"),
    output:
        card=report(
            f"{RUN}/model_card.md",
            caption="../report/model_card.rst",
            category="9 Model cards",
            subcategory="{variant}",
            labels={"variant": "{variant}", "seed": "{seed}"},
        ),
    log:
        f"{RESULTS}/logs/model_card/{{variant}}/seed{{seed}}.log",
    priority: 30
    localrule: True
    conda:
        ENV
    script:
        "../workflow_scripts/model_card.py"


# The run's provenance: the git commit and code hash of every invocation that ran jobs
# (recorded on start, rules/common.smk), config hashes, commands, machine, time per stage.
# The commit is a parameter, so a new commit rewrites it; `consistent` says whether one
# code made every number.
rule provenance:
    input:
        evals=ALL_EVALS,
        tables=TABLES_DONE,
        figures=FIGURES_DONE,
        frontier=FRONTIER,
        code=code("provenance.py"),
    output:
        json=report(
            f"{RESULTS}/provenance.json",
            caption="../report/provenance.rst",
            category="0 Claims versus measured",
            subcategory="Provenance",
        ),
    log:
        f"{RESULTS}/logs/provenance.log",
    localrule: True
    conda:
        ENV
    params:
        commit=COMMIT,
        invocations=INVOCATIONS,
        benchmarks=f"{RESULTS}/benchmarks",
    script:
        "../workflow_scripts/provenance.py"


rule claims_report:
    input:
        evals=ALL_EVALS,
        provenance=f"{RESULTS}/provenance.json",
        diagnostics=DIAGNOSTICS,
        tables=TABLES_DONE,
        figures=FIGURES_DONE,
        frontier=FRONTIER,
        cards=MODEL_CARDS,
        stats=f"{DATA}/stats.json",
        claims_file=ROOT / "leap/workflow/resources/claims.yaml",  # the paper's claims, as data
        code=code("report.py"),
    output:
        claims=report(
            f"{RESULTS}/claims.csv",
            caption="../report/claims.rst",
            category="0 Claims versus measured",
        ),
        report=f"{RESULTS}/report.md",
    log:
        f"{RESULTS}/logs/claims_report.log",
    localrule: True
    conda:
        ENV
    params:
        names=DIAGNOSED,
        experiment=EXPERIMENT,
        pooling=PLAN.pooling,  # how each published checkpoint is loaded (leap.workflow.checkpoints)
    script:
        "../workflow_scripts/report.py"
