"""Early exit on ONNX Runtime, fp32 and int8, against what CPU users run today.

One process, real STS-B dev sentences, interleaved rounds (median, and the spread over
rounds), batch 1 and 32, each thread count given. For every model:

* sentence-transformers on torch at full depth (and its ONNX backend where optimum installs);
* ONNX Runtime fp32 and int8 at full depth (one graph);
* static truncation at the layer nearest the exit rule's E[l], on ONNX Runtime fp32 and int8
  (one graph of layers 1..k: the trivial alternative, without segment overhead);
* our early exit on torch (``ExitSentenceTransformer``) and on ONNX Runtime fp32 and int8
  (``ExitSentenceTransformer(folder, backend="onnx")`` over the depth segments), and the same exits scored
  at common depth (:mod:`leap.core.common_depth`: the layer stacks kept, pairs met at the depth
  both reached);

each with its STS-B dev Spearman, exit rate and E[l] next to its speed. Times include
tokenisation (every path encodes the same list of strings). The goals of the issue are
printed with their measured values: exit on ONNX Runtime reaches >= 90% of its layer
reduction L/E[l] over ONNX Runtime at full depth; exit + int8 is the fastest row within
0.02 STS-B of the full-depth fp32 model.

Models (``--model NAME=FOLDER``, repeatable; each served by its ``leap_exit.json``); by
default the packaged all-MiniLM-L6-v2 twice, exit-enabled by ``leap convert``: untouched
(the default rule, no maps) and with least-squares layer maps fitted on 4,000 STS-B
*train* sentences at ``--theta`` (the best exit model of the frontier exploration).

Usage:
  HF_HUB_OFFLINE=1 python benchmarks/serving_onnx.py --data-dir ../shared/data --threads 1 2 \\
      --out results/cpu/performance/onnx
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from sentence_transformers import SentenceTransformer

from leap.core import common_depth
from leap.core.exit_config import ExitConfig
from leap.deploy.bench import environment, interleaved_ms
from leap.deploy.convert import convert
from leap.files import write_json, write_text
from leap.serving.model import ExitSentenceTransformer, load_exit_model
from leap.serving.onnx_export import export_onnx
from leap.serving.sources import packaged_minilm_path
from leap.workflow.data import stsb_pairs
from leap.workflow.evaluate import pair_index
from leap.workflow.frontier import pair_spearman

log = logging.getLogger("onnx_bench")


def stsb_quality(encode, df: pd.DataFrame) -> float:
    """STS-B Spearman (in [-1, 1]) of an ``encode(list[str]) -> [N, d]`` on the pairs in ``df``."""
    sents, i1, i2 = pair_index(df)
    e = np.asarray(encode(sents), dtype=np.float32)
    return pair_spearman(i1, i2, df["score"].to_numpy(float))(e / np.linalg.norm(e, axis=1, keepdims=True))


def stsb_quality_common_depth(encode_stack, df: pd.DataFrame) -> float:
    """STS-B Spearman when pairs are compared at their common depth (``encode_stack(list[str])
    -> (stack [N, L, d], layers [N])``, :mod:`leap.core.common_depth`)."""
    sents, i1, i2 = pair_index(df)
    stack, layers = encode_stack(sents)
    return float(spearmanr(common_depth.pair_similarity(stack, layers, i1, i2), df["score"].to_numpy(float)).statistic)


def prepare(models: dict[str, str], theta: float, fit: list[str], work: Path) -> dict[str, Path]:
    """Copy each model folder (converted when needed) under ``work`` and export its segments."""
    out = {}
    base = packaged_minilm_path()
    if not models:
        models = {
            "MiniLM-L6 untouched (default rule)": f"convert:{base}",
            f"MiniLM-L6 + least-squares maps, theta {theta}": f"maps:{base}",
        }
    for i, (name, ref) in enumerate(models.items()):
        kind, _, path = ref.partition(":") if ref.split(":")[0] in ("convert", "maps") else ("folder", "", ref)
        dest = work / f"m{i}"
        if kind == "maps":
            convert(path, dest, exit=ExitConfig(theta=theta), fit_maps_on=fit)
        else:
            convert(path if kind == "convert" else ref, dest)
        out[name] = dest
    return out


def bench_model(
    name: str, folder: Path, dev: pd.DataFrame, timed: dict[int, list[str]], threads: list[int], rounds: int
) -> list[dict]:
    torch_exit = load_exit_model(str(folder), device="cpu", backend="torch")
    L, rule = torch_exit.num_layers, torch_exit.exit_config
    full = ExitConfig(strategy="none")
    _, probe = torch_exit.encode_with_exit_layers(timed[32], batch_size=32)
    k = int(min(L - 1, max(1, round(float(probe.mean())))))
    export_onnx(folder, int8=True, truncations=[k])
    cut = ExitConfig(strategy="truncate", min_layer=k)
    plain = SentenceTransformer(str(folder), device="cpu")
    st_onnx_note = None
    try:
        SentenceTransformer(str(folder), device="cpu", backend="onnx")
    except Exception as err:  # optimum is not installable next to transformers 5 (optimum-onnx pins <4.58)
        st_onnx_note = f"sentence-transformers backend='onnx' unavailable: {str(err).splitlines()[0][:160]}"
        log.info(st_onnx_note)

    def rows_for(t: int) -> dict:
        ort32 = ExitSentenceTransformer(folder, backend="onnx", threads=t)
        ort8 = ExitSentenceTransformer(folder, backend="onnx-int8", threads=t)
        return (
            {
                "sentence-transformers, torch, full depth": (lambda s, b: plain.encode(s, batch_size=b), None),
                "ONNX Runtime fp32, full depth": (lambda s, b: ort32.encode(s, batch_size=b, exit=full), None),
                "ONNX Runtime int8, full depth": (lambda s, b: ort8.encode(s, batch_size=b, exit=full), None),
                f"ONNX Runtime fp32, truncated at layer {k}": (lambda s, b: ort32.encode(s, batch_size=b, exit=cut), k),
                f"ONNX Runtime int8, truncated at layer {k}": (lambda s, b: ort8.encode(s, batch_size=b, exit=cut), k),
                "early exit, torch": (lambda s, b: torch_exit.encode(s, batch_size=b), "exit"),
                "early exit, ONNX Runtime fp32": (lambda s, b: ort32.encode(s, batch_size=b), "exit_ort32"),
                "early exit, ONNX Runtime int8": (lambda s, b: ort8.encode(s, batch_size=b), "exit_ort8"),
                "early exit + common depth, ONNX Runtime fp32": (
                    lambda s, b: ort32.encode_with_layer_stack(s, b),
                    "common_ort32",
                ),
                "early exit + common depth, ONNX Runtime int8": (
                    lambda s, b: ort8.encode_with_layer_stack(s, b),
                    "common_ort8",
                ),
            },
            ort32,
            ort8,
        )

    paths, ort32, ort8 = rows_for(1)
    quality, depth = {}, {}
    for row, (fn, kind) in paths.items():
        if isinstance(kind, str) and kind.startswith("common"):
            quality[row] = stsb_quality_common_depth(lambda s, fn=fn: fn(s, 32), dev)
            depth[row] = depth[row.replace(" + common depth", "")]
            continue
        quality[row] = stsb_quality(lambda s, fn=fn: fn(s, 32), dev)
        if kind is None:
            depth[row] = (0.0, float(L))
        elif isinstance(kind, int):
            depth[row] = (1.0, float(kind))
        else:
            eng = {"exit": torch_exit, "exit_ort32": ort32, "exit_ort8": ort8}[kind]
            _, lay = eng.encode_with_exit_layers(timed[32], batch_size=32)
            depth[row] = (float((lay < L).mean()), float(lay.mean()))
    results = []
    for t in threads:
        torch.set_num_threads(t)
        paths = rows_for(t)[0]
        for bs, sents in timed.items():
            ms = interleaved_ms({r: fn for r, (fn, _) in paths.items()}, sents, bs, rounds)
            for row, v in ms.items():
                results.append(
                    {
                        "model": name,
                        "threads": t,
                        "batch_size": bs,
                        "row": row,
                        "ms_per_sentence": float(np.median(v)),
                        "ms_min": float(min(v)),
                        "ms_max": float(max(v)),
                        "stsb_dev": quality[row],
                        "exit_rate": depth[row][0],
                        "mean_layers": depth[row][1],
                        "layers": L,
                        "rule": rule.to_dict(),
                        "note": st_onnx_note,
                    }
                )
            log.info(
                "%s, %d threads, batch %d: %s", name, t, bs, {r: round(float(np.median(v)), 2) for r, v in ms.items()}
            )
    return results


def summarise(df: pd.DataFrame) -> tuple[str, dict]:
    lines, goals = [], {}
    for (model, t, bs), g in df.groupby(["model", "threads", "batch_size"], sort=False):
        g = g.set_index("row")
        st = g.loc["sentence-transformers, torch, full depth", "ms_per_sentence"]
        ort_full = g.loc["ONNX Runtime fp32, full depth"]
        lines.append(
            f"\n**{model}**, {t} thread(s), batch {bs} (STS-B dev; ms per sentence, median of rounds [min, max])\n"
        )
        lines.append("| path | ms / sentence | vs ST torch | STS-B dev | exit rate | E[l] |")
        lines.append("| --- | --- | --- | --- | --- | --- |")
        for row, r in g.iterrows():
            lines.append(
                f"| {row} | {r.ms_per_sentence:.2f} [{r.ms_min:.2f}, {r.ms_max:.2f}] | "
                f"{st / r.ms_per_sentence:.2f}x | {r.stsb_dev:.3f} | {100 * r.exit_rate:.1f}% | "
                f"{r.mean_layers:.2f} |"
            )
        ex = g.loc["early exit, ONNX Runtime fp32"]
        speed = ort_full.ms_per_sentence / ex.ms_per_sentence
        reduction = ex.layers / ex.mean_layers
        fastest = g[g.stsb_dev >= ort_full.stsb_dev - 0.02].ms_per_sentence.idxmin()
        key = f"{model} | {t} thread(s) | batch {bs}"
        goals[key] = {
            "exit_ort_speedup_vs_ort_full": round(float(speed), 3),
            "layer_reduction": round(float(reduction), 3),
            "efficiency": round(float(speed / reduction), 3),
            "fastest_within_0.02": fastest,
        }
        lines.append(
            f"\nexit on ONNX Runtime fp32 vs full depth on ONNX Runtime fp32: {speed:.2f}x for a layer "
            f"reduction of {reduction:.2f}x (efficiency {speed / reduction:.2f}, goal >= 0.90); fastest "
            f"row within 0.02 STS-B of full-depth fp32: {fastest}"
        )
    return "\n".join(lines), goals


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/data", help="folder with stsbenchmark/ (the local STS-B)")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=FOLDER")
    ap.add_argument("--theta", type=float, default=0.88, help="rule of the default maps model (l_min 3)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n1", type=int, default=150, help="sentences timed at batch 1")
    ap.add_argument("--n32", type=int, default=512, help="sentences timed at batch 32")
    ap.add_argument("--dev-pairs", type=int, help="STS-B dev pairs scored (default all 1,500)")
    ap.add_argument("--out", help="write OUT.json and OUT.md")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logging.getLogger("leap").setLevel(logging.WARNING)
    pairs = stsb_pairs("local:stsb", args.data_dir)
    dev, train = pairs[pairs.split == "dev"], pairs[pairs.split == "train"]
    dev = dev.iloc[: args.dev_pairs] if args.dev_pairs else dev
    fit = list(dict.fromkeys(list(train.sentence1) + list(train.sentence2)))[:4000]
    dev_sents = list(dict.fromkeys(list(dev.sentence1) + list(dev.sentence2)))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(dev_sents))
    timed = {1: [dev_sents[i] for i in order[: args.n1]], 32: [dev_sents[i] for i in order[: args.n32]]}
    models = dict(m.split("=", 1) for m in args.model)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, folder in prepare(models, args.theta, fit, Path(tmp)).items():
            results += bench_model(name, folder, dev, timed, args.threads, args.rounds)
    df = pd.DataFrame(results)
    text, goals = summarise(df)
    env = environment(torch.device("cpu"))
    head = (
        f"# Early exit on ONNX Runtime (benchmarks/serving_onnx.py)\n\n{env['device_name']}; "
        f"torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}; {args.rounds} "
        f"interleaved rounds; {args.n1} STS-B dev sentences at batch 1, {args.n32} at batch 32; quality on the "
        f"{len(dev):,} STS-B dev pairs.\n"
    )
    note = df["note"].dropna().unique()
    text = head + ("\n" + note[0] + "\n" if len(note) else "") + text
    print(text)
    if args.out:
        write_json(f"{args.out}.json", {"env": env, "args": vars(args), "rows": results, "goals": goals})
        write_text(f"{args.out}.md", text + "\n")


if __name__ == "__main__":
    main()
