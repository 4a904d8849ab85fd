"""The ``leap`` command line: ``diagnose``, ``bench``, ``encode`` (SPEC "Public interface").

Every sub-command prints a readable table, or JSON with ``--json``. Bad input (a
missing model or file, a threshold out of range) prints one line naming the problem and
exits with code 2, without a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Sequence

from leap import files
from leap.errors import LeapError


def _exit_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("exit rule (paper Eq. 6)")
    g.add_argument("--strategy", default="convergence", choices=["convergence", "pabee", "none"])
    g.add_argument("--theta", type=float, default=0.95, help="convergence threshold in [-1, 1] (default 0.95)")
    g.add_argument("--patience", type=int, default=1, help="k: compare layer l with l-k (default 1)")
    g.add_argument(
        "--min-layer", type=int, default=None, help="l_min (default: 6, or half depth for models under 12 layers)"
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"], help="GPU only for 16-bit")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _load(args: argparse.Namespace):
    from leap.diagnostic import default_min_layer
    from leap.early_exit import EarlyExitEncoder, ExitConfig

    probe = ExitConfig(strategy=args.strategy, theta=args.theta, patience=args.patience, min_layer=args.min_layer or 1)
    dtype = None if args.dtype in (None, "float32") else args.dtype
    enc = EarlyExitEncoder.from_pretrained(args.model, exit=probe, device=args.device, dtype=dtype)
    min_layer = args.min_layer if args.min_layer is not None else default_min_layer(enc.num_layers)
    cfg = ExitConfig(strategy=args.strategy, theta=args.theta, patience=args.patience, min_layer=min_layer)
    cfg.check_layers(enc.num_layers)
    enc.exit = cfg
    return enc


def _read_lines(path: str | None) -> list[str]:
    from leap.diagnostic import builtin_sentences

    if path is None:
        return builtin_sentences()
    p = Path(path)
    if not p.is_file():
        raise LeapError(f"sentence file {path!r} does not exist (expected a text file, one sentence per line)")
    lines = p.read_text(encoding="utf-8").splitlines()
    if lines and lines[-1] == "":
        lines = lines[:-1]
    return lines


def _fmt(x: object, pct: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if pct:
        return f"{100 * float(x):.1f}%"
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def cmd_diagnose(args: argparse.Namespace) -> int:
    from leap.diagnostic import diagnose

    enc = _load(args)
    sentences = [s for s in _read_lines(args.sentences) if s.strip()]
    if len(sentences) < 2:
        raise LeapError("diagnose needs at least 2 sentences (NN@10 needs more than 10)")
    out = diagnose(enc, sentences, overhead_iters=args.overhead_iters, batch_size=args.batch_size)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    rows = [
        [str(l), _fmt(s), _fmt(st), _fmt(nn), _fmt(c, pct=True)]
        for l, s, st, nn, c in zip(out["layers"], out["similarity_to_final"], out["stability"], out["nn_at_10"], out["cumulative_exit"])
    ]
    print(f"Exit diagnostic (paper sec 5.2) for {out['model']} on {out['num_sentences']} sentences")
    e = out["exit"]
    print(f"rule: {e['strategy']}, theta {e['theta']}, k {e['patience']}, l_min {e['min_layer']}\n")
    print(_table(["layer", "sim_to_final", "stability", "NN@10", "cum_exit"], rows))
    print()
    print(f"exit rate            {_fmt(out['exit_rate'], pct=True)}")
    print(f"expected exit layer  {out['expected_exit_layer']:.2f}  (layer reduction {out['layer_reduction']:.2f}x)")
    print(f"monitoring overhead  {_fmt(out['monitoring_overhead'], pct=True)}  (batch 1, {out['device']})")
    c = out["checklist"]
    print(f"\nchecklist (sec 5.3) at target exit layer {c['target_layer']}:")
    for k in ("similarity_to_final", "nn_at_10", "exit_rate"):
        v = c[k]
        print(f"  {'PASS' if v['pass'] else 'FAIL'}  {k} = {_fmt(v['value'])} (need >= {v['threshold']})")
    print(f"\nverdict: {out['verdict'].upper()}")
    for r in out["reasons"]:
        print(f"  - {r}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from leap.latency import BenchConfig, bench

    enc = _load(args)
    sentences = [s for s in _read_lines(args.sentences) if s.strip()]
    cfg = BenchConfig(batch_sizes=tuple(args.batch_sizes), warmup=args.warmup, iters=args.iters, threads=args.threads)
    out = bench(enc, sentences, cfg)
    if args.output:
        files.write_json(args.output, out)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"Latency (paper Table 7) for {out['model']}: {out['device_name']} ({out['device']}, {out['dtype']}, "
          f"{out['threads']} threads, {out['timer']}, {out['warmup']} warm-up + {out['iters']} iterations)")
    e = out["exit"]
    print(f"rule: {e['strategy']}, theta {e['theta']}, k {e['patience']}, l_min {e['min_layer']}\n")
    rows = [
        [str(r["batch_size"]), f"{r['full_ms']:.2f}", f"{r['exit_ms']:.2f}", f"{r['monitor_ms']:.2f}",
         f"{r['speedup']:.2f}x", f"{r['layer_reduction']:.2f}x", f"{100 * r['efficiency']:.1f}%",
         f"{100 * r['monitoring_overhead']:+.1f}%"]
        for r in out["rows"]
    ]
    print(_table(["batch", "full_ms", "exit_ms", "monitor_ms", "speedup", "layer_red.", "efficiency", "overhead"], rows))
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    import numpy as np

    from leap import metrics

    if not args.output.endswith(".npy"):
        raise LeapError(f"--output must end in .npy, got {args.output!r}")
    sentences = _read_lines(args.input)
    enc = _load(args)
    emb, layers = enc.encode(sentences, batch_size=args.batch_size, return_exit_layers=True, show_progress_bar=not args.json)
    files.save_npy(args.output, emb)
    if args.exit_layers:
        files.save_npy(args.exit_layers, layers.astype(np.int64))
    summary = {
        "model": enc.name,
        "num_sentences": len(sentences),
        "dim": int(emb.shape[1]),
        "output": args.output,
        "exit_layers_output": args.exit_layers,
        "exit_rate": metrics.exit_rate(layers, enc.num_layers) if len(layers) else 0.0,
        "expected_exit_layer": metrics.expected_exit_layer(layers) if len(layers) else None,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"wrote {summary['num_sentences']} x {summary['dim']} embeddings to {args.output}; "
              f"exit rate {_fmt(summary['exit_rate'], pct=True)}, E[l] {_fmt(summary['expected_exit_layer'])}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leap", description="Early-exit embeddings (LEAP, ACL 2026): diagnose, benchmark, encode."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    d = sub.add_parser("diagnose", help="is this model exit-compatible? (paper sec 5.2, 5.3)")
    d.add_argument("model", help="SentenceTransformer / transformers folder, or a hub id")
    d.add_argument("--sentences", help="text file, one sentence per line (default: built-in list)")
    d.add_argument("--batch-size", type=int, default=32)
    d.add_argument("--overhead-iters", type=int, default=30, help="timed batch-1 iterations for the overhead")
    _exit_args(d)
    d.set_defaults(func=cmd_diagnose)

    b = sub.add_parser("bench", help="latency of full, exit and monitor-only passes (paper Table 7)")
    b.add_argument("model")
    b.add_argument("--sentences", help="text file, one sentence per line (default: built-in list)")
    b.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    b.add_argument("--warmup", type=int, default=50)
    b.add_argument("--iters", type=int, default=200)
    b.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    b.add_argument("--output", help="also write the JSON here")
    _exit_args(b)
    b.set_defaults(func=cmd_bench)

    e = sub.add_parser("encode", help="embed a text file with early exit")
    e.add_argument("model")
    e.add_argument("--input", required=True, help="text file, one sentence per line")
    e.add_argument("--output", required=True, help="embeddings, .npy [N, d] float32")
    e.add_argument("--exit-layers", help="also write the 1-based exit layers, .npy [N]")
    e.add_argument("--batch-size", type=int, default=32)
    _exit_args(e)
    e.set_defaults(func=cmd_encode)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from leap.early_exit import ExitConfig

        # check the exit rule before any file is read or model loaded
        ExitConfig(strategy=args.strategy, theta=args.theta, patience=args.patience, min_layer=args.min_layer or 1)
        return int(args.func(args) or 0)
    except LeapError as err:
        print(f"leap {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
