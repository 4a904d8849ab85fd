"""Speed of early exit served as a sentence-transformers model, on the real all-MiniLM-L6-v2.

Prints, on pre-tokenised sentences (the built-in list), every path timed by
``torch.utils.benchmark`` with a fixed thread count, interleaved round by round (medians):

1. the exit model at strategy ``none`` vs plain ``SentenceTransformer.forward`` of the
   original model (target ratio <= 1.05);
2. monitoring overhead: every check, no exit, vs plain forward, batch 1 and 32 (target <= 3%);
3. forced exit at layer 3 (theta -1, l_min 3; theoretical 2.0x) at batch 1 and 32: its
   efficiency, speedup / layer reduction (target >= 0.90 at batch 1);
4. batch 32 with half the rows exiting at layer 2 and half running all 6: compact vs
   non-compact (target: compact >= 0.90 of the sum-of-layers ratio);
5. batch invariance on the real model: exit layers and embeddings at batch 1 vs 32.

Usage: python benchmarks/early_exit.py [--threads 2] [--iters 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer

from leap.core.builtin import builtin_sentences
from leap.core.early_exit import exit_forward
from leap.core.exit_config import ExitConfig
from leap.deploy.bench import environment, make_batches, ratio_interval, time_paths
from leap.serving.model import load_exit_model
from leap.serving.sources import packaged_minilm_path


def split_sentences(model, sentences: list[str], n: int) -> tuple[list[str], float]:
    """n sentences that exit at layer 2 and n that never exit, under one theta (l_min 2)."""
    lv = model.layer_embeddings(sentences)  # [L, N, d]
    adj = torch.stack([F.cosine_similarity(lv[l], lv[l - 1], dim=-1) for l in range(1, model.num_layers - 1)])
    first, later = adj[0], adj[1:].max(dim=0).values
    for theta in np.linspace(float(first.max()), float(first.min()), 200):
        early = [i for i in range(len(sentences)) if first[i] >= theta]
        never = [i for i in range(len(sentences)) if first[i] < theta - 1e-3 and later[i] < theta - 1e-3]
        if len(early) >= n and len(never) >= n:
            return [sentences[i] for i in early[:n]] + [sentences[i] for i in never[:n]], float(theta)
    raise SystemExit("no theta splits the sentences into exit-at-2 and never-exit halves")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    path = packaged_minilm_path()
    model = load_exit_model(path, exit=ExitConfig(strategy="none"), device="cpu", backend="torch")
    plain = SentenceTransformer(path, device="cpu").eval()
    sentences = builtin_sentences()
    L = model.num_layers
    res: dict = {"env": environment(model.device), "iters": args.iters, "warmup": args.warmup, "rounds": args.rounds}

    def rule(cfg: ExitConfig):
        @torch.inference_mode()
        def run(feats: dict) -> object:
            return model.forward(dict(feats), exit=cfg)["sentence_embedding"]

        return run

    @torch.inference_mode()
    def st(feats: dict) -> object:
        return plain.forward(dict(feats))["sentence_embedding"]

    print(
        f"all-MiniLM-L6-v2 on {res['env']['device_name']}, {torch.get_num_threads()} threads, {args.warmup} warm-up + "
        f"{args.iters} timed calls per path in {args.rounds} interleaved rounds (medians)\n"
    )
    paths = {
        "st": st,
        "none": rule(ExitConfig(strategy="none")),
        "monitor": rule(ExitConfig(theta=0.95, min_layer=1, monitor_only=True)),
        "forced3": rule(ExitConfig(theta=-1.0, min_layer=3)),
    }
    for bs in (1, 32):
        batches = make_batches(model, sentences, bs, 16, seed=bs)
        t = time_paths(paths, batches, args.warmup, args.iters, args.rounds, args.threads)
        med = {k: float(np.median(v)) for k, v in t.items()}
        ratio, r_lo, r_hi = ratio_interval(t["none"], t["st"])
        over, o_lo, o_hi = ratio_interval(t["monitor"], t["st"])
        sp, s_lo, s_hi = ratio_interval(t["st"], t["forced3"])
        res[f"batch{bs}"] = {
            "median_ms": med,
            "none_vs_st": [ratio, r_lo, r_hi],
            "overhead": [over - 1, o_lo - 1, o_hi - 1],
            "forced3_speedup": [sp, s_lo, s_hi],
            "forced3_efficiency": sp / (L / 3),
        }
        print(
            f"batch {bs:2d}: SentenceTransformer {med['st']:.2f} ms | exit model, strategy none {med['none']:.2f} ms "
            f"(ratio {ratio:.3f} [{r_lo:.3f}, {r_hi:.3f}], target <= 1.05) | monitor-only {med['monitor']:.2f} ms "
            f"(overhead {100 * (over - 1):+.1f}% [{100 * (o_lo - 1):+.1f}, {100 * (o_hi - 1):+.1f}], target <= 3%)"
        )
        print(
            f"          forced exit at layer 3: {med['forced3']:.2f} ms, speedup {sp:.2f}x [{s_lo:.2f}, {s_hi:.2f}] vs "
            f"theoretical {L / 3:.2f}x (efficiency {sp / (L / 3):.2f}, target >= 0.90 at batch 1)"
        )

    # half exit at layer 2, half run all layers: compact vs non-compact on one batch of 32
    mixed, theta = split_sentences(model, sentences, 16)
    cfg = ExitConfig(theta=theta, min_layer=2)
    feats = model.features(mixed)
    hf = model.exit_module.model
    layers = exit_forward(hf, feats["input_ids"], feats["attention_mask"], cfg).exit_layers
    theoretical = (len(mixed) * L) / float(layers.sum())

    def loop(compact: bool):
        return lambda f: exit_forward(hf, f["input_ids"], f["attention_mask"], cfg, compact=compact)

    t = time_paths(
        {"st": st, "compact": loop(True), "non_compact": loop(False)},
        [feats],
        args.warmup,
        args.iters,
        args.rounds,
        args.threads,
    )
    c, _, _ = ratio_interval(t["st"], t["compact"])
    nc, _, _ = ratio_interval(t["st"], t["non_compact"])
    res["mixed32"] = {
        "theta": theta,
        "exit_layers": layers.tolist(),
        "theoretical": theoretical,
        "compact": c,
        "non_compact": nc,
    }
    print(
        f"\nbatch 32, {int((layers == 2).sum())} rows exit at 2 and {int((layers == L).sum())} run all {L} "
        f"(theta {theta:.4f}): compact {c:.2f}x vs theoretical {theoretical:.2f}x (ratio {c / theoretical:.2f}, "
        f"target >= 0.90); non-compact {nc:.2f}x"
    )

    probe = ExitConfig(theta=0.9, min_layer=2)
    e1, l1 = model.encode_with_exit_layers(sentences, batch_size=1, exit=probe)
    e32, l32 = model.encode_with_exit_layers(sentences, batch_size=32, exit=probe)
    res["invariance"] = {
        "same_layers": bool((l1 == l32).all()),
        "max_abs_diff": float(np.abs(e1 - e32).max()),
        "exit_rate": float((l1 < L).mean()),
    }
    print(
        f"\nbatch 1 vs 32 at theta 0.9, l_min 2 on {len(sentences)} sentences: exit layers identical: "
        f"{res['invariance']['same_layers']}, max |diff| {res['invariance']['max_abs_diff']:.2e}, "
        f"exit rate {100 * res['invariance']['exit_rate']:.1f}%"
    )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
