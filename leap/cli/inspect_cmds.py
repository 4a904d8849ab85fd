"""``leap diagnose`` (paper sec 5.2, 5.3), ``leap bench`` (Table 7) and ``leap encode``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from leap import files
from leap.cli.common import (
    exit_args,
    load_model,
    read_lines,
    rule_text,
)
from leap.core.exit_config import SERVING_BACKENDS
from leap.core.text_table import fmt, table
from leap.errors import LeapError


def cmd_diagnose(args: argparse.Namespace) -> int:
    from leap.deploy.diagnose import diagnose

    model = load_model(args)
    sentences = [s for s in read_lines(args.sentences) if s.strip()]
    if len(sentences) < 2:
        raise LeapError("diagnose needs at least 2 sentences (NN@10 needs more than 10)")
    out = diagnose(model, sentences, overhead_iters=args.overhead_iters, batch_size=args.batch_size)
    out["model"] = args.model
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    cols = [out["layers"], out["similarity_to_final"], out["stability"], out["nn_at_10"], out["cumulative_exit"]]
    header = ["layer", "sim_to_final", "stability", "NN@10", "cum_exit"]
    if out["layer_maps"]:  # the checklist reads the mapped vectors the model serves
        cols += [out["as_served"]["similarity_to_final"], out["as_served"]["nn_at_10"]]
        header += ["served_sim", "served_NN@10"]
    rows = [[str(row[0]), *(fmt(x, pct=i == 3) for i, x in enumerate(row[1:]))] for row in zip(*cols)]
    print(f"Exit diagnostic (paper sec 5.2) for {args.model} on {out['num_sentences']} sentences")
    print(rule_text(out["exit"]) + "\n")
    if out["layer_maps"]:
        print("raw: the layer vectors the rule reads; served: what an exiting row returns (per-layer maps applied)")
    print(table(header, rows))
    print()
    print(f"exit rate            {fmt(out['exit_rate'], pct=True)}")
    print(f"expected exit layer  {out['expected_exit_layer']:.2f}  (layer reduction {out['layer_reduction']:.2f}x)")
    print(f"monitoring overhead  {fmt(out['monitoring_overhead'], pct=True)}  (batch 1, {out['device']})")
    c = out["checklist"]
    where = f"target exit layer {c['target_layer']}" if c["target_layer"] else "no target layer: no sentence exits"
    print(
        f"\nchecklist (sec 5.3) at {where} (exit rate {fmt(out['exit_rate'], pct=True)}, "
        f"E[l] {out['expected_exit_layer']:.2f}{'; served vectors' if out['layer_maps'] else ''}):"
    )
    for k in ("similarity_to_final", "nn_at_10", "exit_rate"):
        v = c[k]
        print(f"  {'PASS' if v['pass'] else 'FAIL'}  {k} = {fmt(v['value'])} (need >= {v['threshold']})")
    print(f"\nverdict: {out['verdict'].upper()}")
    for r in out["reasons"]:
        print(f"  - {r}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from leap.deploy.bench import BenchConfig, bench

    if args.output:
        files.check_writable(args.output)
    model = load_model(args)
    sentences = [s for s in read_lines(args.sentences) if s.strip()]
    cfg = BenchConfig(
        batch_sizes=tuple(args.batch_sizes),
        warmup=args.warmup,
        iters=args.iters,
        rounds=min(args.rounds, args.iters),
        threads=args.threads,
        tight=args.tight,
    )
    out = bench(model, sentences, cfg)
    out["model"] = args.model
    if args.output:
        files.write_json(args.output, out)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(
        f"Latency (paper Table 7) for {args.model}: {out['device_name']} ({out['device']}, {out['dtype']}, "
        f"{out['threads']} threads, {out['timer']}, {out['warmup']} warm-up + {out['iters']} calls in "
        f"{out['rounds']} interleaved rounds; medians)"
    )
    print(rule_text(out["exit"]) + "\n")
    rows = [
        [
            str(r["batch_size"]),
            f"{r['full_ms']:.2f}",
            f"{r['exit_ms']:.2f}",
            f"{r['monitor_ms']:.2f}",
            f"{r['speedup']:.2f}x [{r['speedup_ci95'][0]:.2f}, {r['speedup_ci95'][1]:.2f}]",
            f"{r['layer_reduction']:.2f}x",
            f"{100 * r['efficiency']:.1f}%",
            f"{100 * r['monitoring_overhead']:+.1f}%",
        ]
        for r in out["rows"]
    ]
    print(
        table(
            ["batch", "full_ms", "exit_ms", "monitor_ms", "speedup [95% CI]", "layer_red.", "efficiency", "overhead"],
            rows,
        )
    )
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    import numpy as np

    from leap.core import metrics

    for flag, path in (("--output", args.output), ("--exit-layers", args.exit_layers)):
        if path is not None and not path.endswith(".npy"):
            raise LeapError(f"{flag} must end in .npy, got {path!r}")
    files.check_writable(*(p for p in (args.output, args.exit_layers) if p))
    sentences = read_lines(args.input)
    if not sentences:
        raise LeapError(f"input file {args.input!r} is empty; it needs one sentence per line")
    model = load_model(args, backend=args.backend)
    emb, layers = model.encode_with_exit_layers(sentences, batch_size=args.batch_size, show_progress_bar=not args.json)
    files.save_npy(args.output, emb)
    if args.exit_layers:
        files.save_npy(args.exit_layers, layers.astype(np.int64))
    summary = {
        "model": args.model,
        "backend": model.backend,
        "serving": model.serving_path,
        "num_sentences": len(sentences),
        "dim": int(emb.shape[1]),
        "output": args.output,
        "exit_layers_output": args.exit_layers,
        "exit": model.exit_config.to_dict(),
        "exit_rate": metrics.exit_rate(layers, model.num_layers) if len(layers) else 0.0,
        "expected_exit_layer": metrics.expected_exit_layer(layers) if len(layers) else None,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"wrote {summary['num_sentences']} x {summary['dim']} embeddings to {args.output} "
            f"(served by {summary['serving']}); "
            f"exit rate {fmt(summary['exit_rate'], pct=True)}, E[l] {fmt(summary['expected_exit_layer'])}"
        )
    return 0


def add_parsers(sub: Any) -> None:
    """Register this module's sub-commands on the ``leap`` parser."""
    d = sub.add_parser("diagnose", help="is this model exit-compatible? (paper sec 5.2, 5.3)")
    d.add_argument("model", help="SentenceTransformer / transformers folder, or a hub id")
    d.add_argument("--sentences", help="text file, one sentence per line (default: built-in list)")
    d.add_argument("--batch-size", type=int, default=32)
    d.add_argument("--overhead-iters", type=int, default=30, help="timed batch-1 iterations for the overhead")
    exit_args(d)
    d.set_defaults(func=cmd_diagnose)
    b = sub.add_parser("bench", help="latency of full, exit and monitor-only passes (paper Table 7)")
    b.add_argument("model")
    b.add_argument("--sentences", help="text file, one sentence per line (default: built-in list)")
    b.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    b.add_argument("--warmup", type=int, default=50)
    b.add_argument("--iters", type=int, default=200)
    b.add_argument("--rounds", type=int, default=10, help="interleaved rounds the iterations are split into")
    b.add_argument(
        "--tight",
        type=float,
        default=None,
        help="stop a batch size after 4+ rounds once every ratio to full depth is known within this fraction "
        "(95%% interval; e.g. 0.02)",
    )
    b.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    b.add_argument("--output", help="also write the JSON here")
    exit_args(b)
    b.set_defaults(func=cmd_bench)
    e = sub.add_parser("encode", help="embed a text file with early exit")
    e.add_argument("model")
    e.add_argument("--input", required=True, help="text file, one sentence per line")
    e.add_argument("--output", required=True, help="embeddings, .npy [N, d] float32")
    e.add_argument("--exit-layers", help="also write the 1-based exit layers, .npy [N]")
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument(
        "--backend",
        default="torch",
        choices=[*SERVING_BACKENDS, "calibrated"],
        help="torch (default), ONNX Runtime on the `leap export` graphs (plain or fused, fp32 or int8), or "
        "calibrated: the "
        "engine and threads `leap calibrate --paths auto` chose for the folder",
    )
    exit_args(e)
    e.set_defaults(func=cmd_encode)
