"""The calibrated folder against fastembed, side by side in one run.

fastembed (Qdrant's ONNX Runtime embedding library, the usual pick for CPU serving) is not a
dependency: it runs in a venv of its own (``--fastembed-python``; ``make fastembed-venv``
makes one), each engine in its own worker process (:mod:`benchmarks.embed_worker`), the
timing rounds interleaved across engines. For each model:

* **leap**: the model exit-enabled by ``leap convert`` (least-squares layer maps fitted on
  4,000 STS-B *train* sentences), calibrated as ``leap calibrate --paths auto --pairs
  --spearman-drop 0.01`` does on the STS-B dev pairs (one thread), served as loaded
  (``ExitSentenceTransformer(folder, backend="calibrated")``);
* **fastembed fp32 / int8**: a plain ONNX export of the same model (``torch.onnx.export`` of
  the transformers model, its ``last_hidden_state``; mean pooling and normalisation by
  fastembed), and its dynamic int8 copy with the same per-channel quantisation leap uses;
* **sentence-transformers** on torch, for reference.

Times include tokenisation: 150 shuffled STS-B dev sentences one request each (ms per
sentence) and 512 others in requests of 32 (ms per request), medians over interleaved rounds
with the range of the rounds, at each thread count. Quality: STS-B dev Spearman of each
engine's own embeddings.

Usage:
  make fastembed-venv mpnet
  HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/fastembed_compare.py --data-dir ../shared/data \\
      --fastembed-python .fastembed-venv/bin/python --out results/cpu/performance/fastembed
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from leap.core.exit_config import ExitConfig
from leap.deploy.bench import environment
from leap.deploy.calibrate import Budget
from leap.deploy.convert import convert
from leap.deploy.serving_paths import calibrate_paths
from leap.files import write_json, write_text
from leap.serving.onnx_export import quantize_int8
from leap.serving.sources import packaged_minilm_path
from leap.workflow.data import stsb_pairs
from leap.workflow.evaluate import pair_index
from leap.workflow.frontier import pair_spearman

log = logging.getLogger("fastembed_compare")
WORKER = Path(__file__).with_name("embed_worker.py")
ENGINES = ("sentence-transformers, torch", "fastembed fp32", "fastembed int8", "leap, calibrated folder")


class _LastHidden(nn.Module):
    """A transformers model as a plain export sees it: ids and mask in, ``last_hidden_state`` out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, *token_type_ids: torch.Tensor):
        kw = {"token_type_ids": token_type_ids[0]} if token_type_ids else {}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **kw).last_hidden_state


def plain_export(src: Path, out: Path) -> None:
    """``out/model.onnx`` (fp32) and ``out-int8/model.onnx``, each beside the tokenizer files."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(str(src), attn_implementation="eager").eval()
    tok = AutoTokenizer.from_pretrained(str(src))
    f = tok(["a short sentence", "a somewhat longer sentence with more words"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if "token_type_ids" in f else [])
    for d in (out, Path(f"{out}-int8")):
        d.mkdir(parents=True, exist_ok=True)
        for p in list(src.glob("*.json")) + list(src.glob("*.txt")):
            shutil.copy(p, d / p.name)
    with torch.no_grad():
        torch.onnx.export(
            _LastHidden(model), tuple(f[n] for n in names), str(out / "model.onnx"), input_names=names,
            output_names=["last_hidden_state"], opset_version=17, dynamo=False,
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]},
        )  # fmt: skip
    quantize_int8(out / "model.onnx", Path(f"{out}-int8") / "model.onnx")


class Worker:
    """One engine in its own process (:mod:`benchmarks.embed_worker`)."""

    def __init__(self, python: str, engine: str, folder: Path, threads: int, dim: int) -> None:
        args = [python, str(WORKER), engine, str(folder), str(threads), str(dim)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.ask(None)

    def ask(self, cmd: dict | None) -> dict:
        if cmd is not None:
            self.proc.stdin.write(json.dumps(cmd) + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.proc.args} stopped (exit {self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def prepare(name: str, src: Path, work: Path, fit: list[str], dev: tuple) -> dict[str, Path]:
    """The folders each engine serves: the calibrated leap folder, the plain exports."""
    folders = {"sentence-transformers, torch": src}
    leap_dir = work / f"{name}-leap"
    if not (leap_dir / "serving_paths.txt").exists():
        shutil.rmtree(leap_dir, ignore_errors=True)
        convert(src, leap_dir, exit=ExitConfig(theta=0.9), fit_maps_on=fit)
        sents, pairs = dev
        res = calibrate_paths(
            leap_dir, sents, Budget(spearman_drop=0.01), source="STS-B dev", pairs=pairs, threads=1,
            batch_sizes=(1, 32),
        )  # fmt: skip
        log.info("%s: calibration chose %s", name, res.chosen.name if res.chosen else None)
    folders["leap, calibrated folder"] = leap_dir
    plain = work / f"{name}-plain"
    if not (Path(f"{plain}-int8") / "model.onnx").exists():
        plain_export(src, plain)
    folders["fastembed fp32"], folders["fastembed int8"] = plain, Path(f"{plain}-int8")
    return folders


def worker_for(engine: str, folder: Path, threads: int, dim: int, fe_python: str) -> Worker:
    kind = {"sentence-transformers, torch": "st", "leap, calibrated folder": "leap"}.get(engine, "fastembed")
    return Worker(fe_python if kind == "fastembed" else sys.executable, kind, folder, threads, dim)


def measure(folders: dict[str, Path], dim: int, threads: list[int], one: list, big: list, dev, rounds: int, fe: str):
    """``{engine: {"spearman", "ms_b1" {t: [rounds]}, "ms_b32" {t: [rounds]}}}``."""
    sents, (i1, i2, scores) = dev
    score = pair_spearman(i1, i2, scores)
    out = {e: {"ms_b1": {}, "ms_b32": {}} for e in ENGINES}
    for t in threads:
        workers = {e: worker_for(e, folders[e], t, dim, fe) for e in ENGINES}
        try:
            if t == threads[0]:
                with tempfile.TemporaryDirectory() as tmp:
                    for e, w in workers.items():
                        w.ask({"op": "embed", "texts": sents, "out": f"{tmp}/e.npy"})
                        out[e]["spearman"] = float(score(np.load(f"{tmp}/e.npy")))
            for r in range(rounds):
                order = list(ENGINES[r % len(ENGINES) :] + ENGINES[: r % len(ENGINES)])
                for e in order:
                    b1 = workers[e].ask({"op": "time", "texts": one, "request": 1})["ms"] / len(one)
                    b32 = workers[e].ask({"op": "time", "texts": big, "request": 32})["ms"] / (len(big) // 32)
                    out[e]["ms_b1"].setdefault(t, []).append(b1)
                    out[e]["ms_b32"].setdefault(t, []).append(b32)
                log.info("threads %d round %d done", t, r + 1)
        finally:
            for w in workers.values():
                w.close()
    return out


def markdown(results: dict, served: dict, threads: list[int], command: str) -> str:
    lines = [
        "# The calibrated folder against fastembed",
        "",
        f"`{command}`",
        "",
        "Medians over interleaved rounds [fastest, slowest round]; tokenisation included; STS-B dev Spearman "
        "of each engine's own embeddings. Speed-up: fastembed int8 over the row (> 1: the row is faster).",
    ]
    for model, res in results.items():
        lines += ["", f"## {model}", "", f"leap serves: {served[model]}", ""]
        lines += ["| path | threads | STS-B dev | ms per sentence, requests of 1 | speed-up | "
                  "ms per request of 32 | speed-up |", "| --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for t in threads:
            ref = res["fastembed int8"]
            r1, r32 = np.median(ref["ms_b1"][t]), np.median(ref["ms_b32"][t])
            for e in ENGINES:
                b1, b32 = res[e]["ms_b1"][t], res[e]["ms_b32"][t]
                lines.append(
                    f"| {e} | {t} | {res[e]['spearman']:.4f} | {np.median(b1):.2f} [{min(b1):.2f}, {max(b1):.2f}] | "
                    f"{r1 / np.median(b1):.2f}x | {np.median(b32):.1f} [{min(b32):.1f}, {max(b32):.1f}] | "
                    f"{r32 / np.median(b32):.2f}x |"
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--fastembed-python", required=True, help="the python of a venv with fastembed installed")
    ap.add_argument("--models", nargs="+", default=["all-MiniLM-L6-v2", "all-mpnet-base-v2"])
    ap.add_argument("--mpnet", default="models/all-mpnet-base-v2", help="all-mpnet-base-v2 folder (`make mpnet`)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--fit", type=int, default=4000, help="STS-B train sentences the maps are fitted on")
    ap.add_argument("--work", default=None, help="folder for the models (kept: a rerun skips the calibration)")
    ap.add_argument("--out", required=True, help="output prefix: <out>.json, <out>.md")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    for name in ("fastembed_compare", "leap"):
        logging.getLogger(name).setLevel(logging.INFO)
    pairs = stsb_pairs("local:stsb", a.data_dir)
    train, dev_df = pairs[pairs["split"] == "train"], pairs[pairs["split"] == "dev"]
    fit = list(dict.fromkeys(train["sentence1"].tolist() + train["sentence2"].tolist()))[: a.fit]
    sents, i1, i2 = pair_index(dev_df)
    dev = (sents, (i1, i2, dev_df["score"].to_numpy(float)))
    pool = list(sents)
    np.random.default_rng(0).shuffle(pool)
    one, big = pool[:150], pool[150:662]
    sources = {"all-MiniLM-L6-v2": (packaged_minilm_path(), 384), "all-mpnet-base-v2": (Path(a.mpnet), 768)}
    work = Path(a.work or tempfile.mkdtemp(prefix="fastembed-compare-"))
    results, served = {}, {}
    for name in a.models:
        src, dim = sources[name]
        folders = prepare(name, Path(src), work, fit, dev)
        rec = json.loads((folders["leap, calibrated folder"] / "leap_exit.json").read_text())["serving"]
        served[name] = f"{rec['path']} (calibrated at {rec['threads']} thread, budget {rec['budget_text']})"
        results[name] = measure(folders, dim, a.threads, one, big, dev, a.rounds, a.fastembed_python)
    command = " ".join(["HF_HUB_OFFLINE=1 python benchmarks/fastembed_compare.py", *sys.argv[1:]])
    write_json(f"{a.out}.json", {"results": results, "served": served, "machine": environment(torch.device("cpu"))})
    text = markdown(results, served, a.threads, command)
    write_text(f"{a.out}.md", text)
    print(text)


if __name__ == "__main__":
    main()
