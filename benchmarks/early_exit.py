"""Speed of the early-exit encoder on the real all-MiniLM-L6-v2 (issue: encoder speed targets).

Prints, on pre-tokenised STS-like sentences (the built-in list), CPU perf_counter with a
fixed thread count, paths interleaved round by round:

1. monitoring overhead: monitor-only (check at every layer, exits off) vs the model's own
   forward + pooling, batch 1 and 32 (target <= 3%);
2. forced exit at layer 3 (theta -1, l_min 3; theoretical 2.0x) at batch 1
   (target >= 0.9 x theoretical);
3. batch 32, half the rows exiting at layer 2 and half running all 6 layers: compact vs
   non-compact vs full (target: compact >= 0.9 x the sum-of-layers ratio);
4. full path of the encoder (strategy none) vs the model's own forward + pooling
   (target ratio <= 1.05);
5. batch invariance on the real model: exit layers and embeddings at batch 1 vs 32.

Usage: python benchmarks/early_exit.py [--threads 2] [--iters 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics

import numpy as np
import torch
import torch.nn.functional as F

from leap.diagnostic import builtin_sentences
from leap.early_exit import EarlyExitEncoder, ExitConfig
from leap.latency import environment, make_batches, time_paths
from leap.models import packaged_minilm_path
from leap.pooling import mean_pool


def split_sentences(enc: EarlyExitEncoder, sentences: list[str], n: int) -> tuple[list[str], float]:
    """n sentences that exit at layer 2 and n that never exit, under one theta (l_min 2)."""
    lv = enc.layer_embeddings(sentences)  # [L, N, d]
    adj = torch.stack([F.cosine_similarity(lv[l], lv[l - 1], dim=-1) for l in range(1, enc.num_layers - 1)])  # layers 2..L-1
    first, later = adj[0], adj[1:].max(dim=0).values
    for theta in np.linspace(float(first.max()), float(first.min()), 200):
        early = [i for i in range(len(sentences)) if first[i] >= theta]
        never = [i for i in range(len(sentences)) if first[i] < theta - 1e-3 and later[i] < theta - 1e-3]
        if len(early) >= n and len(never) >= n:
            return [sentences[i] for i in early[:n]] + [sentences[i] for i in never[:n]], float(theta)
    raise SystemExit("no theta splits the sentences into exit-at-2 and never-exit halves")


def summarise(t: dict[str, list[float]]) -> dict[str, float]:
    return {k: statistics.fmean(v) for k, v in t.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--iters", type=int, default=200)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    path = packaged_minilm_path()
    enc = EarlyExitEncoder.from_pretrained(path, exit=ExitConfig(strategy="none"), device="cpu")
    model = enc.model
    sentences = builtin_sentences()
    n_layers = enc.num_layers

    @torch.inference_mode()
    def own(ids, mask):
        return F.normalize(mean_pool(model(input_ids=ids, attention_mask=mask).last_hidden_state, mask), dim=-1)

    none = ExitConfig(strategy="none")
    monitor = ExitConfig(theta=0.95, min_layer=1, monitor_only=True)
    forced3 = ExitConfig(theta=-1.0, min_layer=3)
    res: dict = {"env": environment(enc.device), "iters": args.iters, "warmup": args.warmup}

    print(f"all-MiniLM-L6-v2 on {res['env']['device_name']}, {torch.get_num_threads()} threads, "
          f"{args.warmup} warm-up + {args.iters} timed iterations per path (interleaved)\n")
    for bs in (1, 32):
        batches = make_batches(enc, sentences, bs, 16, seed=bs)
        paths = {
            "own": own,
            "full": lambda i, m: enc.forward_exit(i, m, exit=none),
            "monitor": lambda i, m: enc.forward_exit(i, m, exit=monitor),
            "forced3": lambda i, m: enc.forward_exit(i, m, exit=forced3),
        }
        t = summarise(time_paths(paths, batches, enc.device, args.warmup, args.iters))
        res[f"batch{bs}"] = t
        print(f"batch {bs:2d}: own forward+pool {t['own']:.2f} ms | encoder full {t['full']:.2f} ms "
              f"(ratio {t['full'] / t['own']:.3f}, target <= 1.05) | monitor-only {t['monitor']:.2f} ms "
              f"(overhead {100 * (t['monitor'] / t['own'] - 1):+.1f}%, target <= 3%)")
        print(f"          forced exit at layer 3: {t['forced3']:.2f} ms, speedup {t['own'] / t['forced3']:.2f}x "
              f"vs theoretical {n_layers / 3:.2f}x (ratio {t['own'] / t['forced3'] / (n_layers / 3):.2f}, "
              f"target >= 0.90 at batch 1)")

    # half exit at layer 2, half run all layers
    mixed, theta = split_sentences(enc, sentences, 16)
    cfg = ExitConfig(theta=theta, min_layer=2)
    feats = enc.tokenize(mixed)
    ids, mask = feats["input_ids"], feats["attention_mask"]
    _, layers = enc.forward_exit(ids, mask, exit=cfg)
    theoretical = (len(mixed) * n_layers) / float(layers.sum())
    paths = {
        "own": own,
        "compact": lambda i, m: enc.forward_exit(i, m, exit=cfg, compact=True),
        "non_compact": lambda i, m: enc.forward_exit(i, m, exit=cfg, compact=False),
    }
    t = summarise(time_paths(paths, [(ids, mask)], enc.device, args.warmup, args.iters))
    res["mixed32"] = t | {"theta": theta, "exit_layers": layers.tolist(), "theoretical": theoretical}
    print(f"\nbatch 32, exit layers {sorted(set(layers.tolist()))} "
          f"({int((layers == 2).sum())} at 2, {int((layers == n_layers).sum())} at {n_layers}), theta {theta:.4f}:")
    print(f"  full {t['own']:.2f} ms | compact {t['compact']:.2f} ms (speedup {t['own'] / t['compact']:.2f}x, "
          f"theoretical {theoretical:.2f}x, ratio {t['own'] / t['compact'] / theoretical:.2f}, target >= 0.90) | "
          f"non-compact {t['non_compact']:.2f} ms (speedup {t['own'] / t['non_compact']:.2f}x)")

    # batch invariance on the real model
    probe = ExitConfig(theta=0.9, min_layer=2)
    e1, l1 = enc.encode(sentences, batch_size=1, return_exit_layers=True, exit=probe)
    e32, l32 = enc.encode(sentences, batch_size=32, return_exit_layers=True, exit=probe)
    res["invariance"] = {"same_layers": bool((l1 == l32).all()), "max_abs_diff": float(np.abs(e1 - e32).max()),
                         "exit_rate": float((l1 < n_layers).mean())}
    print(f"\nbatch 1 vs 32 at theta 0.9, l_min 2 on {len(sentences)} sentences: exit layers identical: "
          f"{res['invariance']['same_layers']}, max |diff| {res['invariance']['max_abs_diff']:.2e}, "
          f"exit rate {100 * res['invariance']['exit_rate']:.1f}%")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(res, fh, indent=2)


if __name__ == "__main__":
    main()
