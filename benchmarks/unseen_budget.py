"""Does the serving path chosen on one set keep its quality budget on pairs it never read?

all-MiniLM-L6-v2 with least-squares maps (fitted on STS-B train sentences) is calibrated the
way ``leap calibrate --paths auto --pairs --spearman-drop B`` does it
(:func:`leap.deploy.serving_paths.measure_paths`) on the 1,500 STS-B *dev* pairs, one thread.
Every path is then scored again on the 1,379 STS-B *test* pairs, which the calibration never
read. For each budget B, two choices from the same dev measurements:

* **point estimate** (the rule before intervals): in budget when the dev drop is at most B;
  the fastest, paths within 3% of it tied and the simplest kind of them served;
* **interval** (:func:`leap.deploy.path_choice.choose`): in budget when the upper end of the
  dev drop's 95% bootstrap interval is at most B; paths whose timing rounds overlap the
  fastest one's tied, and the best quality of them served.

Beside each: its test drop, whether the budget held on test, and its speed. Then, over all
paths, how many in budget on dev break the budget on test, under each reading.

Usage:
  HF_HUB_OFFLINE=1 python benchmarks/unseen_budget.py --data-dir ../shared/data \\
      --out results/cpu/performance/unseen_budget
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from leap.core.exit_config import ExitConfig
from leap.deploy.bench import environment
from leap.deploy.calibrate import Budget
from leap.deploy.convert import convert
from leap.deploy.path_choice import SIMPLER, choose, in_budget
from leap.deploy.serving_paths import PathResult, measure_paths
from leap.files import write_json, write_text
from leap.serving.sources import packaged_minilm_path
from leap.workflow.data import stsb_pairs
from leap.workflow.evaluate import pair_index

log = logging.getLogger("unseen_budget")
THETAS = (0.80, 0.85, 0.88, 0.90, 0.93, 0.95, 0.97)
BUDGETS = (0.01, 0.02, 0.05)


def point_estimate_choice(paths: Sequence[PathResult], budget: Budget, noise: float = 0.03) -> PathResult | None:
    """The choice before intervals: the dev point estimate in budget, the fastest (within
    ``noise``, the simplest kind)."""
    ok = [p for p in paths if budget.met(p.to_dict()) and (p.kind != "exit" or p.exit_rate > 0)]
    if not ok:
        return None
    fastest = min(p.ms[1] for p in ok)
    return min((p for p in ok if p.ms[1] <= fastest * (1 + noise)), key=lambda p: (SIMPLER[p.kind], p.ms[1]))


def interval_choice(paths: Sequence[PathResult], budget: Budget) -> PathResult | None:
    for p in paths:
        p.meets_budget = in_budget(budget, p.to_dict())
    return choose(paths, 1)


def row(rule: str, budget: float, dev: PathResult | None, test: dict[str, PathResult]) -> dict:
    if dev is None:
        return {"budget": budget, "rule": rule, "path": None}
    t = test[dev.name]
    return {
        "budget": budget,
        "rule": rule,
        "path": dev.name,
        "dev_drop": dev.spearman_drop,
        "dev_drop_ci": list(dev.spearman_drop_ci),
        "test_drop": t.spearman_drop,
        "held_on_test": t.spearman_drop <= budget,
        "ms_b1": dev.ms[1],
        "ms_b1_range": list(dev.ms_range[1]),
    }


def violations(dev: Sequence[PathResult], test: dict[str, PathResult], budget: float) -> dict:
    out = {"budget": budget}
    for name, ok in (
        ("point", lambda p: p.spearman_drop <= budget),
        ("interval", lambda p: p.spearman_drop_ci[1] <= budget),
    ):
        chosen = [p for p in dev if ok(p)]
        out[name] = {"in_budget": len(chosen), "over_on_test": sum(test[p.name].spearman_drop > budget for p in chosen)}
    return out


def markdown(rows: list[dict], counts: list[dict], n_dev: int, n_test: int) -> str:
    lines = [
        "# A serving path's budget on pairs the calibration never read",
        "",
        "`HF_HUB_OFFLINE=1 python benchmarks/unseen_budget.py --data-dir ../shared/data "
        "--out results/cpu/performance/unseen_budget`: all-MiniLM-L6-v2 with least-squares maps, every "
        f"serving path measured on the {n_dev} STS-B dev pairs (one thread, batch 1, 5 interleaved timing "
        f"rounds), chosen per budget, then scored on the {n_test} STS-B test pairs. Spearman drops against "
        "full-depth fp32, in points (x100); the dev interval is the 95% bootstrap over pairs.",
        "",
        "| budget | choice rule | path served | dev drop [95% interval] | test drop | held on test | "
        "ms, batch 1 [rounds] |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if r["path"] is None:
            lines.append(f"| {100 * r['budget']:g} | {r['rule']} | none in budget | | | | |")
            continue
        lo, hi = r["dev_drop_ci"]
        mlo, mhi = r["ms_b1_range"]
        lines.append(
            f"| {100 * r['budget']:g} | {r['rule']} | {r['path']} | {100 * r['dev_drop']:.2f} "
            f"[{100 * lo:.2f}, {100 * hi:.2f}] | {100 * r['test_drop']:.2f} | "
            f"{'yes' if r['held_on_test'] else '**no**'} | {r['ms_b1']:.2f} [{mlo:.2f}, {mhi:.2f}] |"
        )
    lines += [
        "",
        "Over every path: how many are in budget on dev, and how many of those are over it on test.",
        "",
        "| budget | point estimate: in budget on dev | over on test | interval: in budget on dev | over on test |",
        "| --- | --- | --- | --- | --- |",
    ]
    for c in counts:
        p, i = c["point"], c["interval"]
        lines.append(
            f"| {100 * c['budget']:g} | {p['in_budget']} | {p['over_on_test']} | {i['in_budget']} | "
            f"{i['over_on_test']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--fit", type=int, default=4000, help="STS-B train sentences the maps are fitted on")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="output prefix: <out>.json, <out>.md")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    pairs = stsb_pairs("local:stsb", a.data_dir)
    train = pairs[pairs["split"] == "train"]
    fit = list(dict.fromkeys(train["sentence1"].tolist() + train["sentence2"].tolist()))[: a.fit]
    split = {}
    for name in ("dev", "test"):
        df = pairs[pairs["split"] == name]
        sents, i1, i2 = pair_index(df)
        split[name] = (sents, (i1, i2, df["score"].to_numpy(float)))
    with tempfile.TemporaryDirectory() as tmp:
        folder = convert(packaged_minilm_path(), Path(tmp) / "minilm", exit=ExitConfig(theta=0.9), fit_maps_on=fit)
        common = {"thetas": THETAS, "batch_sizes": (1,), "threads": a.threads}
        log.info("dev: every path measured")
        budget = Budget(spearman_drop=0.01)
        dev = measure_paths(folder, split["dev"][0], budget, pairs=split["dev"][1], rounds=5, **common)
        log.info("test: every path scored (timing not used)")
        test = measure_paths(
            folder, split["test"][0], budget, pairs=split["test"][1], rounds=1,
            timing_sentences=11, resamples=2, **common,
        )  # fmt: skip
    by_name = {p.name: p for p in test.paths}
    rows, counts = [], []
    for b in BUDGETS:
        budget = Budget(spearman_drop=b)
        rows.append(row("point estimate", b, point_estimate_choice(dev.paths, budget), by_name))
        rows.append(row("interval", b, interval_choice(dev.paths, budget), by_name))
        counts.append(violations(dev.paths, by_name, b))
    import torch

    n_dev, n_test = len(split["dev"][1][2]), len(split["test"][1][2])
    out = Path(a.out)
    write_json(
        f"{out}.json",
        {
            "rows": rows,
            "counts": counts,
            "dev_paths": [p.to_dict() for p in dev.paths],
            "test_paths": [p.to_dict() for p in test.paths],
            "machine": environment(torch.device("cpu")),
        },
    )
    text = markdown(rows, counts, n_dev, n_test)
    write_text(f"{out}.md", text)
    print(text)


if __name__ == "__main__":
    main()
