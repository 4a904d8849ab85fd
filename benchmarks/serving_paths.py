"""Which serving path to pick: every path of all-MiniLM-L6-v2 and all-mpnet-base-v2 (each
exit-enabled with least-squares per-layer maps), measured by the code of
``leap calibrate --paths auto`` (:func:`leap.deploy.serving_paths.measure_paths`) on STS-B dev, at each
thread count given.

For each model and thread count: torch and ONNX Runtime, fp32 and int8, each at full depth,
cut at every layer (maps applied) and under convergence exit over a theta sweep; quality is
Spearman on the 1,500 STS-B dev pairs (and its drop against full-depth fp32), speed is
ms/sentence with tokenisation, batch 1 and 32, on 64 dev sentences, 3 interleaved rounds in
one process. The Markdown gives the full-depth rows and, for each Spearman-drop budget, the
fastest path within it; the JSON has every path; one plot per model and thread count.

Usage (after ``make mpnet``):
  HF_HUB_OFFLINE=1 python benchmarks/serving_paths.py --data-dir ../shared/data --threads 1 2 \\
      --out results/cpu/performance/serving_paths
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path

from leap.core.exit_config import ExitConfig
from leap.deploy.bench import environment
from leap.deploy.calibrate import Budget
from leap.deploy.convert import convert
from leap.deploy.path_choice import choose, in_budget
from leap.deploy.serving_paths import PathsResult, measure_paths, path_from_dict
from leap.files import write_json, write_text
from leap.serving.sources import packaged_minilm_path
from leap.workflow.data import stsb_pairs
from leap.workflow.evaluate import pair_index
from leap.workflow.figures import plot_paths

log = logging.getLogger("serving_paths_bench")
THETAS = (0.80, 0.85, 0.88, 0.90, 0.93, 0.95, 0.97)
BUDGETS = (0.005, 0.01, 0.02, 0.05)  # maximum Spearman drop against full-depth fp32


def model_sources(mpnet: str) -> dict[str, str]:
    out = {"all-MiniLM-L6-v2 + maps": packaged_minilm_path()}
    if Path(mpnet).is_dir():
        out["all-mpnet-base-v2 + maps"] = mpnet
    else:
        log.warning("%s missing (make mpnet): all-mpnet-base-v2 is left out", mpnet)
    return out


def markdown(results: list[dict]) -> str:
    lines = [
        "# Serving paths: the fastest path within a quality budget",
        "",
        "`HF_HUB_OFFLINE=1 python benchmarks/serving_paths.py --data-dir ../shared/data --threads 1 2 "
        "--out results/cpu/performance/serving_paths`. Spearman on the 1,500 STS-B dev pairs (x100); "
        "drop against full-depth fp32 (x100); ms per sentence with tokenisation, median of 3 interleaved "
        "rounds on 64 dev sentences. Every path measured is in the JSON and the plots.",
        "",
    ]

    def row(label: str, p: dict) -> str:
        return (
            f"| {label} | {p['path']} | {p['ms_b1']:.2f} | {p['ms_b32']:.2f} | {100 * p['spearman']:.1f} | "
            f"{100 * p['spearman_drop']:.2f} | {100 * p['exit_rate']:.0f}% | {p['expected_exit_layer']:.2f} |"
        )

    for r in results:
        lines += [f"## {r['model']}, {r['threads']} thread(s)", ""]
        lines += ["| | path | ms, batch 1 | ms, batch 32 | STS-B dev | drop | exit rate | E[l] |"]
        lines += ["| --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines += [row("full depth", p) for p in r["paths"] if p["kind"] == "full"]
        for b in BUDGETS:
            p = r["chosen"][str(b)]
            lines.append(row(f"fastest within drop {100 * b:g}", p) if p else f"| within drop {100 * b:g} | none | |")
        lines.append("")
    return "\n".join(lines) + "\n"


def select(name: str, threads: int, res: PathsResult, out: Path) -> dict:
    """The fastest path within each Spearman-drop budget (no NN@10 criterion), and the plot
    marking the one within 0.01."""
    chosen = {}
    for b in BUDGETS:
        for p in res.paths:
            p.meets_budget = in_budget(Budget(spearman_drop=b), p.to_dict())
        best = choose(res.paths, 1)
        chosen[str(b)] = best.to_dict() if best else None
        if b == 0.01:
            res.chosen, res.budget = best, Budget(spearman_drop=b)
            plot_paths(res, f"{out}_{name.split()[0]}_{threads}t.png")
    return {"model": name, "threads": threads, "chosen": chosen, "paths": [p.to_dict() for p in res.paths]}


def reselect(out: Path) -> None:
    """Choose again from the measured table in ``<out>.json`` (nothing is re-measured)."""
    data = json.loads(Path(f"{out}.json").read_text(encoding="utf-8"))
    results = []
    for r in data["results"]:
        paths = [path_from_dict(p) for p in r["paths"]]
        res = PathsResult(paths, None, Budget(spearman_drop=0.01), (1, 32), r["threads"], 0)
        results.append(select(r["model"], r["threads"], res, out))
    write_json(f"{out}.json", {**data, "results": results})
    write_text(f"{out}.md", markdown(results))
    print(markdown(results))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--mpnet", default="models/all-mpnet-base-v2")
    ap.add_argument("--fit", type=int, default=4000, help="STS-B train sentences the maps are fitted on")
    ap.add_argument("--out", required=True, help="output prefix: <out>.json, <out>.md, <out>_<model>_<t>t.png")
    ap.add_argument("--models", nargs="+", help="only these (all-MiniLM-L6-v2, all-mpnet-base-v2); others kept")
    ap.add_argument(
        "--reselect",
        action="store_true",
        help="no measuring: choose per budget, write Markdown and plots from <out>.json",
    )
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if a.reselect:
        return reselect(Path(a.out))
    pairs = stsb_pairs("local:stsb", a.data_dir)
    dev = pairs[pairs["split"] == "dev"]
    train = pairs[pairs["split"] == "train"]
    fit = list(dict.fromkeys(train["sentence1"].tolist() + train["sentence2"].tolist()))[: a.fit]
    sents, i1, i2 = pair_index(dev)
    gold = dev["score"].to_numpy(float)
    out = Path(a.out)
    results = []
    sources = {k: v for k, v in model_sources(a.mpnet).items() if not a.models or k.split()[0] in a.models}
    if a.models and Path(f"{out}.json").exists():  # measure these models again, keep the others' rows
        kept = json.loads(Path(f"{out}.json").read_text(encoding="utf-8"))["results"]
        results = [r for r in kept if r["model"] not in sources]
    with tempfile.TemporaryDirectory() as tmp:
        for name, src in sources.items():
            folder = convert(src, Path(tmp) / name.replace(" ", "_"), exit=ExitConfig(theta=0.9), fit_maps_on=fit)
            for t in a.threads:
                log.info("%s, %d thread(s)", name, t)
                res = measure_paths(
                    folder, sents, Budget(spearman_drop=0.01), pairs=(i1, i2, gold), thetas=THETAS,
                    batch_sizes=(1, 32), threads=t,
                )  # fmt: skip
                results.append(select(name, t, res, out))
    import torch

    order = list(model_sources(a.mpnet))
    results.sort(key=lambda r: (order.index(r["model"]) if r["model"] in order else 99, r["threads"]))
    write_json(f"{out}.json", {"results": results, "machine": environment(torch.device("cpu"))})
    write_text(f"{out}.md", markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
