"""The documentation's results page (``docs/results.md``), written from a finished run.

Every number on the page is read from the run's own files: ``provenance.json``,
``tables/frontier_summary.csv`` (the frontier tables, through ``readme_results.py``),
``tables/table_layer_mixing.csv``, ``tables/table7_latency.md``, ``claims.csv``, the
serving-paths records and ``performance/run_cost.json``; the documentation's build takes the
STS-B frontier figure from the run's ``figures/``. ``tests/test_docs.py`` checks that the
committed page is this script's output for the committed ``results/cpu``.

Usage:
  python benchmarks/results_page.py results/cpu --out docs/results.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme_results import model_name, retrieval_table, serving_table, stsb_table  # noqa: E402
from run_cost import markdown as cost_markdown  # noqa: E402

from leap.workflow.frontier import BAR_EXIT_RATE, BAR_REDUCTION  # noqa: E402

FIGURE = "fig3_frontier_sts_b.png"


def shown(results: Path) -> str:
    """How the page names a results folder, wherever it is read from: ``results/<name>``."""
    return f"results/{results.resolve().name}"


def _utc(ts: str | float) -> str:
    if isinstance(ts, (int, float)):
        return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    return str(ts).replace("T", " ")[:16]


def provenance(results: Path) -> str:
    p = json.loads((results / "provenance.json").read_text())
    commits = ", ".join(f"`{c[:7]}`" for c in p.get("commits_seen") or [p["commit"]])
    state = "consistent: one clean code made every number" if p["consistent"] else "NOT consistent"
    return (
        f"**Provenance.** `{shown(results)}` is one run of `config/cpu.yaml` from commit(s) {commits} (code hash "
        f"`{p['code_hash'][:8]}`, {state}), {_utc(p['start'])} to {_utc(p['end'])} UTC, on "
        f"{p['machine'].get('cores', '?')} cores of an {p['machine'].get('cpu', 'unnamed CPU')}. Every command "
        "line, the machine and the time per stage "
        f"are in `{shown(results)}/provenance.json`."
    )


def findings(results: Path) -> list[str]:
    """What the run says, each sentence computed from its tables."""
    s = pd.read_csv(results / "tables" / "frontier_summary.csv")
    sts = s[s["benchmark"] == "STS-B"]
    rule = sts["rule_at_config"].mode()[0]
    low = sts[sts["exit_rate_at_config"] < 0.05]
    top = sts.loc[sts["exit_rate_at_config"].idxmax()]
    out = [
        f"At the config's rule ({rule}), {len(low)} of {len(sts)} models exit fewer than 5% of STS-B test "
        f"sentences; the most is {model_name(top['model'])}: {100 * top['exit_rate_at_config']:.1f}% at "
        f"{top['layer_reduction_at_config']:.2f}x fewer layers, exit advantage "
        f"{top['exit_advantage_at_config']:+.3f}."
    ]
    dev = sts.dropna(subset=["dev_chosen_exit_advantage"])
    worse = dev[dev["dev_chosen_exit_advantage"] < -0.0005]
    better = dev[dev["dev_chosen_exit_advantage"] > 0.0005].sort_values("dev_chosen_exit_advantage", ascending=False)
    out.append(
        f"At the point chosen on STS-B dev (the best on dev with at least {BAR_REDUCTION}x fewer layers and "
        f"{BAR_EXIT_RATE:.0%} of inputs exiting, reported on test), truncation is the better deal for "
        f"{len(worse)} of {len(dev)} models; exit beats truncation by more than 0.0005 for "
        + ", ".join(
            f"{model_name(r['model'])} ({r['dev_chosen_exit_advantage']:+.3f} at {r['dev_chosen_quality']:.3f})"
            for _, r in better.iterrows()
        )
        + f", below the {sts['full_depth_quality'].min():.3f}-{sts['full_depth_quality'].max():.3f} of full depth."
    )
    oracle = sts.dropna(subset=["oracle_advantage_at_bar"])
    out.append(
        f"The oracle rule (not deployable: it reads the final layer) meets the bar for {len(oracle)} of "
        f"{len(sts)} models on STS-B"
        + (
            f", with advantages {oracle['oracle_advantage_at_bar'].min():+.3f} to "
            f"{oracle['oracle_advantage_at_bar'].max():+.3f}: where even it loses, the limit is the model's layers."
            if len(oracle)
            else "."
        )
    )
    ret = s[s["benchmark"] != "STS-B"]
    q = ret[ret["benchmark"].str.contains("query-only")].dropna(subset=["best_advantage_at_bar"])
    both = ret[~ret["benchmark"].str.contains("query-only")].dropna(subset=["best_advantage_at_bar"])
    out.append(
        f"Retrieval at the bar: with documents exiting too, the best advantages lie within "
        f"{both['best_advantage_at_bar'].min():+.3f} to {both['best_advantage_at_bar'].max():+.3f}; query-only "
        f"(documents at full depth), {q['best_advantage_at_bar'].min():+.3f} to "
        f"{q['best_advantage_at_bar'].max():+.3f} (picked on test: upper bounds)."
    )
    by_model = dev.set_index("model")
    pair = ("self_xd_mpnet", "published:all-mpnet-base-v2-maps")
    if all(m in by_model.index for m in pair):
        trained, fitted = by_model.loc[pair[0]], by_model.loc[pair[1]]
        out.append(
            "Exit-enabling all-mpnet-base-v2: self-distillation with trained maps (`self_xd_mpnet`) reaches "
            f"{trained['dev_chosen_quality']:.3f} at {trained['dev_chosen_layer_reduction']:.2f}x, least-squares "
            f"maps with no training (`leap convert --fit-maps`) {fitted['dev_chosen_quality']:.3f} at "
            f"{fitted['dev_chosen_layer_reduction']:.2f}x"
            + (
                ": fit the maps first."
                if fitted["dev_chosen_quality"] > trained["dev_chosen_quality"]
                else ": the training pays."
            )
        )
    mix = pd.read_csv(results / "tables" / "table_layer_mixing.csv")
    best = mix.loc[mix["Contrast - final"].idxmax()]
    out.append(
        f"Layer mixing instead of exit: the best mix beats the final layer by {best['Contrast - final']:+.3f} "
        f"({best['Model']}, {best['Benchmark']})."
    )
    claims = pd.read_csv(results / "claims.csv")["verdict"].value_counts()
    out.append(
        f"Claims against the paper ({claims.sum()} comparisons, `{shown(results)}/claims.csv`): "
        + ", ".join(f"{n} {v}" for v, n in claims.items())
        + "."
    )
    return [f"* {line}" for line in out]


HEADLINE_MODELS = ("baseline", "leap", "leap_fix", "self_xd", "published:all-mpnet-base-v2-maps")


def headline_table(results: Path) -> str:
    """The README's one small table: STS-B test for the main models, at the config's rule and
    at the point chosen on dev, each with its exit advantage over truncation."""
    s = pd.read_csv(results / "tables" / "frontier_summary.csv")
    sts = s[(s["benchmark"] == "STS-B") & s["model"].isin(HEADLINE_MODELS)].set_index("model")
    rule = sts["rule_at_config"].mode()[0]
    rows = [
        f"| model | full depth | at {rule}: exit rate, advantage | chosen on dev: quality, L/E[l], advantage |",
        "| --- | --- | --- | --- |",
    ]
    for m in HEADLINE_MODELS:
        if m not in sts.index:
            continue
        r = sts.loc[m]
        rows.append(
            f"| {model_name(m)} | {r['full_depth_quality']:.3f} | {100 * r['exit_rate_at_config']:.1f}%, "
            f"{r['exit_advantage_at_config']:+.3f} | {r['dev_chosen_quality']:.3f}, "
            f"{r['dev_chosen_layer_reduction']:.2f}x, {r['dev_chosen_exit_advantage']:+.3f} |"
        )
    return "\n".join(rows)


def page(results: Path) -> str:
    """The whole page (the documentation's build adds the run's figure as ``assets/``)."""
    students = results / "performance" / "serving_paths_students.md"
    one_thread = (
        [line for line in students.read_text().splitlines() if line.startswith("|")] if students.exists() else []
    )
    cost = json.loads((results / "performance" / "run_cost.json").read_text())
    parts = [
        "# Results at CPU scale",
        "",
        "<!-- Written by `python benchmarks/results_page.py results/cpu --out docs/results.md`; edit the script. -->",
        "",
        provenance(results),
        "",
        "Students here are the CPU scale's: 6-layer students of a 12-layer teacher (all-mpnet-base-v2), "
        "initialised from all-MiniLM-L6-v2, trained on 20,000 filtered NLI, MRPC and STS-B train sentences; the "
        "paper's are 12-layer students of a 24-layer teacher on a GPU. [The frontier](frontier.md) explains "
        "how to read the tables: every exit result stands next to cutting the same model at a fixed layer.",
        "",
        "## What the run says",
        "",
        *findings(results),
        "",
        "## STS-B test, Spearman",
        "",
        stsb_table(pd.read_csv(results / "tables" / "frontier_summary.csv")),
        "",
        f"![STS-B frontier: exit against truncation of the same model, and measured speed](assets/{FIGURE})",
        "",
        "## Retrieval test, NDCG@10",
        "",
        retrieval_table(pd.read_csv(results / "tables" / "frontier_summary.csv")),
        "",
        "## Latency (Table 7, CPU, batch 1 / 8 / 32)",
        "",
        (results / "tables" / "table7_latency.md").read_text().strip(),
        "",
        "## Serving paths of the students",
        "",
        "The workflow's `serving_paths` rule (seed 0, the config's threads), then the fastest path at batch 1 "
        "within a Spearman drop of 1, 2 and 5 points (the rule `leap calibrate --paths auto` applies):",
        "",
        serving_table(results),
        "",
        *(["The same students at one thread (`benchmarks/serving_paths_students.py`):", "", *one_thread, ""]),
        "## Cost of the run",
        "",
        f"From the run's own benchmark files and logs (`python benchmarks/run_cost.py {shown(results)} --logs "
        f"{shown(results)}/logs/run/*.log --pauses {shown(results)}/logs/run/pauses.log --by rule`):",
        "",
        cost_markdown(cost, by="rule").strip(),
        "",
    ]
    return "\n".join(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, help="a run's results folder, e.g. results/cpu")
    ap.add_argument("--out", type=Path, help="write the page here")
    args = ap.parse_args()
    text = page(args.results)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        print(text, end="")


if __name__ == "__main__":
    main()
