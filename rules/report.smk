# Tables, figures and the claims report.


rule table2_cross_distillation:
    input:
        diagnostics=expand(
            f"{RESULTS}/published/{{name}}/eval/diagnostic.json", name=list(PUBLISHED)
        ),
        code=LEAP / "tables.py",
    output:
        csv=f"{RESULTS}/tables/table2_cross_distillation.csv",
        md=f"{RESULTS}/tables/table2_cross_distillation.md",
    log:
        f"{RESULTS}/logs/table2_cross_distillation.log",
    localrule: True
    conda:
        ENV
    params:
        names=list(PUBLISHED),
    script:
        "../workflow_scripts/table2.py"
