"""Which ONNX graphs `leap export` writes, and how the engine batches them: measured.

all-MiniLM-L6-v2, exit-enabled by ``leap convert`` and exported with ``--int8``; one process,
ONNX Runtime sessions on the full-depth graph, STS-B dev sentences with tokenisation:

* **graphs**: fp32; int8 with per-tensor and with per-channel weights (dynamic); static int8
  (QOperator and QDQ, calibrated on 128 other dev sentences); the optimizer's fused fp32 and
  fused int8 graphs. For each: the lowest and mean cosine to fp32 over 512 sentences, ms per
  sentence one at a time (150 sentences) and ms per request of 32 (512 sentences), medians
  over interleaved rounds with their range.
* **runs**: the requests of 32 split into length-sorted runs of 1..32 rows, each trimmed to
  its own longest row, at 1 and 2 threads: where :data:`leap.serving.onnx_runtime.TOKENS_PER_THREAD`
  comes from.

Usage:
  HF_HUB_OFFLINE=1 python benchmarks/onnx_graphs.py --data-dir ../shared/data \\
      --out results/cpu/performance/onnx_graphs
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from leap.deploy.bench import environment
from leap.deploy.convert import convert
from leap.files import write_json, write_text
from leap.serving.onnx_export import export_onnx
from leap.serving.onnx_runtime import import_onnxruntime
from leap.serving.sources import packaged_minilm_path
from leap.workflow.data import stsb_pairs
from leap.workflow.evaluate import pair_index

log = logging.getLogger("onnx_graphs")


def static_int8(src: Path, dst: Path, fmt: str, calib: list[np.ndarray]) -> None:
    """Static int8 of ``src`` (MatMul weights per channel, activations calibrated on ``calib``)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(calib)

        def get_next(self):
            f = next(self.it, None)
            return None if f is None else {"x": f[0], "attention_mask": f[1]}

    pre = dst.with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    qdq = fmt == "QDQ"
    quantize_static(
        str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ if qdq else QuantFormat.QOperator,
        per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QInt8 if qdq else QuantType.QUInt8,
        op_types_to_quantize=["MatMul"], extra_options={"ActivationSymmetric": qdq},
    )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", required=True, help="output prefix: <out>.json, <out>.md")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    log.setLevel(logging.INFO)
    ort = import_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoTokenizer

    df = stsb_pairs("local:stsb", a.data_dir)
    sents = list(pair_index(df[df["split"] == "dev"])[0])
    np.random.default_rng(0).shuffle(sents)
    one, big, cal = sents[:150], sents[150:662], sents[700:828]
    tmp = Path(tempfile.mkdtemp(prefix="onnx-graphs-"))
    folder = convert(packaged_minilm_path(), tmp / "minilm")
    manifest = export_onnx(folder, int8=True)
    o = folder / "onnx"
    tok = AutoTokenizer.from_pretrained(str(folder))

    def feats(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        f = tok(texts, padding=True, truncation=True, max_length=256, return_tensors="np")
        return f["input_ids"].astype(np.int64), f["attention_mask"].astype(np.int64)

    quantize_dynamic(str(o / "full.onnx"), str(tmp / "per_tensor.onnx"), weight_type=QuantType.QInt8)
    calib = [feats(cal[i : i + 8]) for i in range(0, len(cal), 8)]
    static_int8(o / "full.onnx", tmp / "static_qop.onnx", "QOperator", calib)
    static_int8(o / "full.onnx", tmp / "static_qdq.onnx", "QDQ", calib)
    graphs = {
        "fp32 (full.onnx)": o / "full.onnx",
        "int8 dynamic, per-tensor weights": tmp / "per_tensor.onnx",
        "int8 dynamic, per-channel weights (full.int8.onnx)": o / "full.int8.onnx",
        "int8 static, QOperator": tmp / "static_qop.onnx",
        "int8 static, QDQ": tmp / "static_qdq.onnx",
    }
    if manifest["fused"]:
        graphs["fused fp32 (full.fused.onnx)"] = o / "full.fused.onnx"
        graphs["fused int8, per-channel (full.fused.int8.onnx)"] = o / "full.fused.int8.onnx"

    def session(path: Path, threads: int):
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads, so.log_severity_level = threads, 1, 3
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def run(s, texts: list[str], rows: int = 32) -> np.ndarray:
        ids, mask = feats(texts)
        order, out = np.argsort(mask.sum(1), kind="stable"), np.empty((len(texts), 384), np.float32)
        for i in range(0, len(texts), rows):
            idx = order[i : i + rows]
            t = int(mask[idx].sum(1).max())
            out[idx] = s.run(None, {"x": ids[idx, :t], "attention_mask": mask[idx, :t]})[1]
        return out

    sessions = {name: session(p, 1) for name, p in graphs.items()}
    ref = np.concatenate([run(sessions["fp32 (full.onnx)"], big[i : i + 32]) for i in range(0, 512, 32)])
    rows_g = []
    times: dict[str, dict[str, list[float]]] = {n: {"b1": [], "b32": []} for n in graphs}
    for _ in range(a.rounds):
        for name, s in sessions.items():
            t = time.perf_counter()
            for x in one:
                run(s, [x])
            times[name]["b1"].append((time.perf_counter() - t) / len(one) * 1e3)
            t = time.perf_counter()
            for i in range(0, 512, 32):
                run(s, big[i : i + 32])
            times[name]["b32"].append((time.perf_counter() - t) / 16 * 1e3)
    for name, s in sessions.items():
        v = np.concatenate([run(s, big[i : i + 32]) for i in range(0, 512, 32)])
        cos = (v * ref).sum(1) / np.linalg.norm(v, axis=1) / np.linalg.norm(ref, axis=1)
        rows_g.append({"graph": name, "cos_min": float(cos.min()), "cos_mean": float(cos.mean()), **times[name]})
        log.info("%s done", name)
    rows_r = []
    for threads in (1, 2):
        s = session(o / "full.int8.onnx", threads)
        res: dict[int, list[float]] = {r: [] for r in (1, 2, 4, 8, 16, 32)}
        for _ in range(a.rounds):
            for r in res:
                t = time.perf_counter()
                for i in range(0, 512, 32):
                    run(s, big[i : i + 32], rows=r)
                res[r].append((time.perf_counter() - t) / 16 * 1e3)
        rows_r += [{"threads": threads, "rows_per_run": r, "ms_b32": v} for r, v in res.items()]
    write_json(f"{a.out}.json", {"graphs": rows_g, "runs": rows_r, "fused": manifest["fused"],
                                 "machine": environment(torch.device("cpu"))})  # fmt: skip

    def span(v: list[float], d: int) -> str:
        return f"{np.median(v):.{d}f} [{min(v):.{d}f}, {max(v):.{d}f}]"

    lines = [
        "# ONNX graphs and runs (all-MiniLM-L6-v2, one thread unless said)",
        "",
        f"`HF_HUB_OFFLINE=1 python benchmarks/onnx_graphs.py --data-dir {a.data_dir} --out {a.out}`; medians "
        f"over {a.rounds} interleaved rounds [range]; tokenisation included; requests of 32 in runs of 32 rows.",
        "",
        "| graph | lowest cosine to fp32 | mean cosine | ms per sentence, one at a time | ms per request of 32 |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['graph']} | {r['cos_min']:.4f} | {r['cos_mean']:.4f} | {span(r['b1'], 2)} | {span(r['b32'], 1)} |"
        for r in rows_g
    ]
    lines += ["", "Requests of 32 in length-sorted runs (full.int8.onnx):", "",
              "| threads | rows per run | ms per request of 32 |", "| --- | --- | --- |"]  # fmt: skip
    lines += [f"| {r['threads']} | {r['rows_per_run']} | {span(r['ms_b32'], 1)} |" for r in rows_r]
    text = "\n".join(lines) + "\n"
    write_text(f"{a.out}.md", text)
    print(text)


if __name__ == "__main__":
    main()
