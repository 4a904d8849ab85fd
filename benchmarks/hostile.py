"""How far hostile traffic moves early exit, and what the monitor and fallback do about it.

On a model served with early exit (default: the packaged all-MiniLM-L6-v2 at theta 0.93,
l_min 3), for normal sentences (the built-in list) and inputs built to force early exit
(word-shuffled sentences) or to defeat it (one token repeated): exit rate, E[l], NN@10
agreement and mean cosine of the exit embeddings with full depth. Then the same traffic
through an :class:`leap.deploy.monitor.ExitMonitor` with the shadow check and fallback on: when the
fallback engages and releases, and the agreement of what is served.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/hostile.py [--model M] [--theta 0.93] [--threads 2]
"""

from __future__ import annotations

import argparse
import random

import numpy as np
import torch

from leap.core.builtin import builtin_sentences
from leap.core.exit_config import ExitConfig
from leap.deploy.calibrate import Budget, agreement
from leap.deploy.monitor import ExitMonitor, MonitorConfig, attach_monitor, detach_monitor
from leap.serving.model import load_exit_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="packaged:all-MiniLM-L6-v2")
    ap.add_argument("--theta", type=float, default=0.93)
    ap.add_argument("--min-layer", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = load_exit_model(
        a.model, exit=ExitConfig(theta=a.theta, min_layer=a.min_layer), device="cpu", backend="torch"
    )
    normal = builtin_sentences()
    rng = random.Random(0)
    traffic = {
        "normal": normal,
        "word-shuffled (forces exit)": [" ".join(rng.sample(s.split(), len(s.split()))) for s in normal],
        "repeated token (defeats exit)": [" ".join([s.split()[0]] * 30) for s in normal],
    }
    print(f"{a.model}, rule {model.exit_config}")
    print(f"{'traffic':32s} {'exit rate':>9s} {'E[l]':>6s} {'NN@10':>6s} {'cosine':>7s}")
    for name, sents in traffic.items():
        full = model.encode(sents, exit=ExitConfig(strategy="none"))
        emb, layers = model.encode_with_exit_layers(sents)
        nn, cos = agreement(emb, full)
        print(f"{name:32s} {100 * (layers < model.num_layers).mean():8.1f}% {layers.mean():6.2f} {nn:6.3f} {cos:7.3f}")

    cfg = MonitorConfig(shadow_fraction=1.0, budget=Budget(nn10=0.8, mean_cosine=0.9), window=64, fallback=True)
    mon = attach_monitor(model, ExitMonitor(model.num_layers, cfg))
    print("\nmonitor with shadow check and fallback (budget NN@10 >= 0.8, cosine >= 0.9, window 64 rows):")
    phases = [
        ("normal", normal[:96]),
        ("word-shuffled", traffic["word-shuffled (forces exit)"][:96]),
        ("normal", normal[96:192]),
    ]
    for name, sents in phases:
        served = []
        for i in range(0, len(sents), 16):
            served.append(model.encode(sents[i : i + 16]))
        full = model.encode(sents, exit=ExitConfig(strategy="none"))
        nn, cos = agreement(np.concatenate(served), full)
        st = mon.stats()
        print(
            f"  {name:14s} served NN@10 {nn:.3f}, cosine {cos:.3f}; fallback active: {st['fallback_active']}, "
            f"switches {st['fallback_switches']}, agreement alerts {st['alerts']['agreement']}"
        )
    detach_monitor(model)


if __name__ == "__main__":
    main()
