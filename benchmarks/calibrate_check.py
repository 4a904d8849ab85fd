"""Does a rule calibrated on dev sentences keep its budget on test sentences?

For each model: copy the folder, run ``leap calibrate`` (the command a user runs) on a
sample of STS-B *dev* sentences with an NN@10 budget, then measure the chosen rule on the
same number of STS-B *test* sentences: NN@10 overlap with full depth (the 10 nearest
neighbours among the test sentences), mean cosine, exit rate, E[l]; beside it, static
truncation at the depth nearest that E[l] (the same maps), measured the same way.

Models: ``--model NAME=FOLDER`` (repeatable); by default the packaged all-MiniLM-L6-v2 with
least-squares maps (the workflow's ``results/cpu/published/all-MiniLM-L6-v2-maps/model``,
else fitted here on 4,000 STS-B train sentences), and the CPU-scale students
``results/cpu/{self_xd,leap_fix,baseline}/seed0/model`` where they exist.

Usage:
  HF_HUB_OFFLINE=1 python benchmarks/calibrate_check.py --data-dir ../shared/data --nn10 0.9 \\
      --out results/cpu/performance/calibrate
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from leap.core import metrics
from leap.core.early_exit import simulate_exit
from leap.core.exit_config import ExitConfig
from leap.deploy.calibrate import agreement
from leap.deploy.convert import convert
from leap.files import write_json, write_text
from leap.serving.model import load_exit_model
from leap.serving.sources import packaged_minilm_path
from leap.workflow.data import stsb_pairs

ROOT = Path(__file__).resolve().parents[1]


def measure(folder: Path, sentences: list[str], rule: ExitConfig) -> dict:
    """NN@10 and cosine to full depth of ``rule`` and of truncation at its nearest depth."""
    m = load_exit_model(str(folder), device="cpu", backend="torch")
    v = m.layer_embeddings(sentences, batch_size=64)
    ev = m.embed_vectors(v)
    full = F.normalize(ev[-1].float(), dim=-1).numpy()
    emb, layers = simulate_exit(v, rule, embed_vectors=ev)
    L = m.num_layers
    k = int(min(L, max(1, round(float(layers.mean())))))
    cut = F.normalize(ev[k - 1].float(), dim=-1).numpy()

    nn, cos = agreement(emb, full)  # the monitor's and calibrate's own measure
    tnn, tcos = agreement(cut, full)
    return {
        "n": len(sentences),
        "exit_rate": metrics.exit_rate(layers, L),
        "expected_exit_layer": metrics.expected_exit_layer(layers),
        "nn10": nn,
        "mean_cosine": cos,
        "truncation_layer": k,
        "truncation_nn10": tnn,
        "truncation_mean_cosine": tcos,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=FOLDER")
    ap.add_argument("--nn10", type=float, nargs="+", default=[0.9, 0.8], help="NN@10 budgets given to leap calibrate")
    ap.add_argument("--n", type=int, default=1000, help="sentences sampled from dev (calibration) and test")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="write OUT.json and OUT.md")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pairs = stsb_pairs("local:stsb", args.data_dir)

    def sample(split: str, seed: int) -> list[str]:
        df = pairs[pairs.split == split]
        s = list(dict.fromkeys(list(df.sentence1) + list(df.sentence2)))
        return [s[i] for i in np.random.default_rng(seed).permutation(len(s))[: args.n]]

    dev, test = sample("dev", 0), sample("test", 0)
    train = pairs[pairs.split == "train"]
    fit = list(dict.fromkeys(list(train.sentence1) + list(train.sentence2)))[:4000]
    models = dict(m.split("=", 1) for m in args.model)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not models:
            maps = ROOT / "results" / "cpu" / "published" / "all-MiniLM-L6-v2-maps" / "model"
            if not (maps / "modules.json").exists():
                convert(packaged_minilm_path(), tmp / "minilm_maps", fit_maps_on=fit)
                maps = tmp / "minilm_maps"
            models = {"all-MiniLM-L6-v2 + least-squares maps": str(maps)}
            for v in ("self_xd", "leap_fix", "baseline"):
                f = ROOT / "results" / "cpu" / v / "seed0" / "model"
                if (f / "modules.json").exists():
                    models[f"cpu {v} seed0"] = str(f)
        (tmp / "dev.txt").write_text("\n".join(dev) + "\n", encoding="utf-8")
        for i, (name, src) in enumerate((n, s) for n, s in models.items() for _ in args.nn10):
            budget = args.nn10[i % len(args.nn10)]
            folder = tmp / f"m{i}"
            shutil.copytree(src, folder)
            cmd = [
                sys.executable,
                "-m",
                "leap",
                "calibrate",
                str(folder),
                "--data",
                str(tmp / "dev.txt"),
                "--nn10",
                str(budget),
                "--json",
            ]
            out = subprocess.run(cmd, capture_output=True, text=True, check=True)
            result = json.loads(out.stdout)
            rule = ExitConfig.load(folder) if result.get("chosen") else None
            row = {
                "model": name,
                "budget_nn10": budget,
                "chosen": rule.to_dict() if rule else None,
                "command": " ".join(["leap", *cmd[3:]]).replace(str(tmp), "$TMP"),
            }
            if rule is not None:
                row["dev"] = measure(folder, dev, rule)
                row["test"] = measure(folder, test, rule)
            rows.append(row)
            print(json.dumps(row, indent=1))
    lines = [
        "# Calibrated on STS-B dev, measured on STS-B test (benchmarks/calibrate_check.py)",
        "",
        f"`leap calibrate MODEL --data dev.txt --nn10 B` on {args.n} STS-B dev sentences; the chosen rule "
        f"measured on {args.n} STS-B test sentences (NN@10 among them, cosine to full depth); beside it static "
        "truncation at the depth nearest the rule's E[l].",
        "",
        "| model | budget B | chosen rule | dev NN@10 | test NN@10 | budget met on test | test exit rate | test E[l] "
        "| test cosine | truncation (layer) NN@10 / cosine |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if r["chosen"] is None:
            lines.append(f"| {r['model']} | {r['budget_nn10']} | none meets the budget (full depth) | | | | | | | |")
            continue
        c, d, t = r["chosen"], r["dev"], r["test"]
        lines.append(
            f"| {r['model']} | {r['budget_nn10']} | theta {c['theta']}, l_min {c['min_layer']} | {d['nn10']:.3f} | "
            f"{t['nn10']:.3f} | {'yes' if t['nn10'] >= r['budget_nn10'] else 'no'} | {100 * t['exit_rate']:.1f}% | "
            f"{t['expected_exit_layer']:.2f} | {t['mean_cosine']:.3f} | ({t['truncation_layer']}) "
            f"{t['truncation_nn10']:.3f} / {t['truncation_mean_cosine']:.3f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        write_json(f"{args.out}.json", rows)
        write_text(f"{args.out}.md", text)


if __name__ == "__main__":
    main()
