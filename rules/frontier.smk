# The frontier (the project's headline measurement): for every model and benchmark, each
# exit rule over its sweep against static truncation of the same model at the same mean
# exit layer; measured speedups from the latency stage beside. Table + one figure per
# benchmark.


rule frontier:
    input:
        evals=ALL_EVALS,
        code=code("frontier.py"),
    output:
        table=report(
            f"{RESULTS}/tables/frontier.csv",
            caption="../report/frontier.rst",
            category="1 Frontier",
            subcategory="Every operating point",
        ),
        summary=report(
            f"{RESULTS}/tables/frontier_summary.csv",
            caption="../report/frontier_summary.rst",
            category="1 Frontier",
            subcategory="Exit advantage per model",
        ),
        figures=[
            report(
                f"{RESULTS}/figures/{frontier_figure_name(b)}.png",
                caption="../report/fig3_frontier.rst",
                category="1 Frontier",
                subcategory="Figure 3",
                labels={"benchmark": b},
            )
            for b in BENCHMARKS
        ],
    log:
        f"{RESULTS}/logs/frontier.log",
    localrule: True
    conda:
        ENV
    params:
        benchmarks=BENCHMARKS,
    script:
        "../workflow_scripts/frontier.py"
