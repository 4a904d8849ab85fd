"""LEAP loss overhead vs the baseline loss per training step, and training throughput, for
a 6-layer 384-d student (all-MiniLM-L6-v2) at batch 32 on CPU (target: <= 10%); and with
``--precision bf16``, each loss's step in bf16 autocast beside fp32 (the CPU run's precision).

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/train.py [--steps 20]
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/train.py --precision bf16 --threads 1 --max-seq-length 32

A step = student forward with every layer pooled, loss, backward, optimizer step; teacher
targets are random tensors of the cached shape (the teacher never runs in training).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from leap.training.config import PAPER_TERMS, LeapLossConfig
from leap.training.losses.base import pooled_layers
from leap.training.losses.leap_loss import leap_loss
from leap.training.student import hf_model, load_student
from leap.workflow.data import demo_sentences
from leap.workflow.variants import BASELINE_TERMS, make_train_config


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-seq-length", type=int, default=64)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="also time bf16 autocast (CPU)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    cfg = make_train_config({"student": "packaged:all-MiniLM-L6-v2", "max_seq_length": a.max_seq_length}, "leap", 0)
    st = load_student(cfg)
    hf_model(st).config.output_hidden_states = True
    st.train()
    proj = torch.nn.Linear(384, 768, bias=False)
    opt = torch.optim.AdamW(list(st.parameters()) + list(proj.parameters()), lr=1e-5)
    sents = demo_sentences(a.batch_size * 8, seed=3)
    batches = [st.preprocess(sents[i : i + a.batch_size]) for i in range(0, len(sents), a.batch_size)]
    teacher = {l: torch.randn(a.batch_size, 768) for l in (2, 4, 6, 8, 10, 12)}
    losses = {
        "baseline": LeapLossConfig(focus_layer=3, terms=BASELINE_TERMS, layer_map=(2, 4, 6, 8, 10, 12)),
        "leap": LeapLossConfig(focus_layer=3, terms=PAPER_TERMS, layer_map=(2, 4, 6, 8, 10, 12)),
    }
    configs = {**losses, **({f"{k} bf16": v for k, v in losses.items()} if a.precision == "bf16" else {})}
    times: dict[str, list[float]] = {k: [] for k in configs}
    for step in range(a.steps + 3):
        for name in list(configs) if step % 2 == 0 else list(configs)[::-1]:  # interleaved
            feats = dict(batches[step % len(batches)])
            t0 = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name.endswith("bf16")):
                out = leap_loss(pooled_layers(st, feats), teacher, configs[name], progress=0.5, projection=proj)
            opt.zero_grad()
            out["total"].backward()
            opt.step()
            if step >= 3:
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"student all-MiniLM-L6-v2 (6 layers, 384-d), batch {a.batch_size}, seq <= {a.max_seq_length}, "
        f"{a.threads} threads, {a.steps} timed steps each (median)"
    )
    for k, v in med.items():
        print(f"  {k:8s} step {1000 * v:7.1f} ms   {a.batch_size / v:6.1f} sentences/s")
    print(f"  LEAP loss overhead vs baseline: {100 * (med['leap'] / med['baseline'] - 1):+.1f}% (target <= 10%)")
    for k in losses:
        if f"{k} bf16" in med:
            print(f"  {k}: bf16 step {med[k] / med[f'{k} bf16']:.2f}x faster than fp32")


if __name__ == "__main__":
    main()
