"""The ``leap`` command line (SPEC "Public interface"): ``diagnose``, ``bench``, ``encode``,
``convert``, ``calibrate``, ``amortize`` (and ``python -m leap``).

Every sub-command prints a readable table, or JSON with ``--json``. The exit rule is the
model's own (``leap_exit.json`` in an exit-enabled folder, else :class:`ExitConfig`'s
defaults, ``l_min`` from the depth); ``--strategy/--theta/--patience/--min-layer``
override single fields. Bad input (a missing model or file, a threshold out of range)
prints one line naming the problem and exits with code 2, without a traceback. Messages
go through :mod:`logging` (``--verbose`` shows them).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from leap import __version__, files
from leap.early_exit import STRATEGIES, ExitConfig
from leap.errors import LeapError

_DEFAULTS = ExitConfig()
DEFAULT_NN10 = 0.95  # calibrate's budget when the user names none


def _exit_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("exit rule (paper Eq. 6; default: the model's saved rule)")
    g.add_argument(
        "--strategy", default=None, choices=list(STRATEGIES), help=f"exit strategy (default {_DEFAULTS.strategy})"
    )
    g.add_argument(
        "--theta", type=float, default=None, help=f"convergence threshold in [-1, 1] (default {_DEFAULTS.theta})"
    )
    g.add_argument(
        "--patience", type=int, default=None, help=f"k: compare layer l with l-k (default {_DEFAULTS.patience})"
    )
    g.add_argument(
        "--min-layer", type=int, default=None, help="l_min (default: 6, or half depth for models under 12 layers)"
    )
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtype", default=None, choices=["float32", "float16", "bfloat16"], help="GPU only for 16-bit")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = {"strategy": "strategy", "theta": "theta", "patience": "patience", "min_layer": "min_layer"}
    return {k: getattr(args, a) for k, a in keys.items() if getattr(args, a, None) is not None}


def _load(args: argparse.Namespace):
    from leap.exit_model import load_exit_model

    dtype = None if args.dtype in (None, "float32") else args.dtype
    model = load_exit_model(args.model, device=args.device, dtype=dtype)
    over = _overrides(args)
    if over:
        model.with_exit(dataclasses.replace(model.exit_config, **over))
    return model


def _read_lines(path: str | None) -> list[str]:
    from leap.builtin import builtin_sentences

    if path is None:
        return builtin_sentences()
    p = Path(path)
    if p.is_dir():
        raise LeapError(f"{path!r} is a folder; give a text file, one sentence per line")
    if not p.is_file():
        raise LeapError(f"sentence file {path!r} does not exist (expected a text file, one sentence per line)")
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise LeapError(
            f"sentence file {path!r} is not UTF-8 text (byte {err.start}: {err.reason}); convert it to UTF-8"
        ) from None
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

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) for c, w in zip(cells, widths))

    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _rule(e: dict) -> str:
    return f"rule: {e['strategy']}, theta {e['theta']}, k {e['patience']}, l_min {e['min_layer']}"


def cmd_diagnose(args: argparse.Namespace) -> int:
    from leap.diagnostic import diagnose

    model = _load(args)
    sentences = [s for s in _read_lines(args.sentences) if s.strip()]
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
    rows = [[str(row[0]), *(_fmt(x, pct=i == 3) for i, x in enumerate(row[1:]))] for row in zip(*cols)]
    print(f"Exit diagnostic (paper sec 5.2) for {args.model} on {out['num_sentences']} sentences")
    print(_rule(out["exit"]) + "\n")
    if out["layer_maps"]:
        print("raw: the layer vectors the rule reads; served: what an exiting row returns (per-layer maps applied)")
    print(_table(header, rows))
    print()
    print(f"exit rate            {_fmt(out['exit_rate'], pct=True)}")
    print(f"expected exit layer  {out['expected_exit_layer']:.2f}  (layer reduction {out['layer_reduction']:.2f}x)")
    print(f"monitoring overhead  {_fmt(out['monitoring_overhead'], pct=True)}  (batch 1, {out['device']})")
    c = out["checklist"]
    where = f"target exit layer {c['target_layer']}" if c["target_layer"] else "no target layer: no sentence exits"
    print(
        f"\nchecklist (sec 5.3) at {where} (exit rate {_fmt(out['exit_rate'], pct=True)}, "
        f"E[l] {out['expected_exit_layer']:.2f}{'; served vectors' if out['layer_maps'] else ''}):"
    )
    for k in ("similarity_to_final", "nn_at_10", "exit_rate"):
        v = c[k]
        print(f"  {'PASS' if v['pass'] else 'FAIL'}  {k} = {_fmt(v['value'])} (need >= {v['threshold']})")
    print(f"\nverdict: {out['verdict'].upper()}")
    for r in out["reasons"]:
        print(f"  - {r}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from leap.latency import BenchConfig, bench

    model = _load(args)
    sentences = [s for s in _read_lines(args.sentences) if s.strip()]
    cfg = BenchConfig(
        batch_sizes=tuple(args.batch_sizes),
        warmup=args.warmup,
        iters=args.iters,
        rounds=min(args.rounds, args.iters),
        threads=args.threads,
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
    print(_rule(out["exit"]) + "\n")
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
        _table(
            ["batch", "full_ms", "exit_ms", "monitor_ms", "speedup [95% CI]", "layer_red.", "efficiency", "overhead"],
            rows,
        )
    )
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    import numpy as np

    from leap import metrics

    if not args.output.endswith(".npy"):
        raise LeapError(f"--output must end in .npy, got {args.output!r}")
    sentences = _read_lines(args.input)
    if not sentences:
        raise LeapError(f"input file {args.input!r} is empty; it needs one sentence per line")
    if args.backend == "torch":
        model = _load(args)
    else:
        from leap.config import ExitConfig
        from leap.exit_model import load_exit_model

        if args.device not in (None, "cpu") or args.dtype not in (None, "float32"):
            raise LeapError(f"--backend {args.backend} runs on the CPU in float32; drop --device/--dtype")

        rule = ExitConfig.load(args.model) or ExitConfig()
        over = _overrides(args)
        model = load_exit_model(
            args.model, exit=dataclasses.replace(rule, **over) if over else None, backend=args.backend
        )
    emb, layers = model.encode_with_exit_layers(sentences, batch_size=args.batch_size, show_progress_bar=not args.json)
    files.save_npy(args.output, emb)
    if args.exit_layers:
        files.save_npy(args.exit_layers, layers.astype(np.int64))
    summary = {
        "model": args.model,
        "backend": args.backend,
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
            f"wrote {summary['num_sentences']} x {summary['dim']} embeddings to {args.output}; "
            f"exit rate {_fmt(summary['exit_rate'], pct=True)}, E[l] {_fmt(summary['expected_exit_layer'])}"
        )
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    from leap.convert import convert

    over = _overrides(args)
    fit = [s for s in _read_lines(args.fit_maps)] if args.fit_maps else None
    if fit is not None and len(fit) < 2:
        raise LeapError(f"--fit-maps needs at least 2 sentences, {args.fit_maps!r} has {len(fit)}")
    out = convert(args.model, args.output, exit=ExitConfig(**over), fit_maps_on=fit, device=args.device or "cpu")
    cfg = ExitConfig.load(out)
    summary = {
        "model": args.model,
        "output": str(out),
        "exit": cfg.to_dict() if cfg else None,
        "layer_maps": (Path(out) / "layer_maps.safetensors").exists(),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"exit-enabled {args.model} -> {out} ({_rule(summary['exit'])}"
            f"{', per-layer maps fitted on ' + str(len(fit)) + ' sentences' if fit else ''})"
        )
    return 0


def _read_pairs(path: str) -> tuple[list[str], tuple]:
    """A TSV of ``sentence1 <tab> sentence2 <tab> score`` -> unique sentences and (i1, i2, gold)."""
    import numpy as np

    rows = [line.split("\t") for line in _read_lines(path) if line.strip()]
    bad = [i + 1 for i, r in enumerate(rows) if len(r) != 3]
    if bad:
        raise LeapError(f"{path}: line {bad[0]} is not 'sentence1<TAB>sentence2<TAB>score'")
    try:
        gold = np.asarray([float(r[2]) for r in rows])
    except ValueError:
        raise LeapError(f"{path}: the third column must be a number (the pair's score)") from None
    sents = list(dict.fromkeys([r[0] for r in rows] + [r[1] for r in rows]))
    pos = {s: i for i, s in enumerate(sents)}
    return sents, (np.asarray([pos[r[0]] for r in rows]), np.asarray([pos[r[1]] for r in rows]), gold)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from leap.config import EXIT_CONFIG_FILE
    from leap.deploy import Budget, calibrate_folder

    folder = Path(args.model)
    if not folder.is_dir():
        raise LeapError(
            f"calibrate writes the chosen rule into the model folder; {args.model!r} is not a local folder "
            "(run `leap convert` first to make one)"
        )
    if not (folder / EXIT_CONFIG_FILE).exists() and not args.in_place:
        raise LeapError(
            f"{args.model!r} is not exit-enabled (no {EXIT_CONFIG_FILE}); make an exit-enabled copy with "
            f"`leap convert {args.model} OUT`, or pass --in-place to write the rule into this folder"
        )
    if args.pairs is False and args.spearman_drop is not None:
        raise LeapError("--spearman-drop needs scored pairs: pass --pairs and a sentence1<TAB>sentence2<TAB>score file")
    pairs = None
    if args.pairs:
        sentences, pairs = _read_pairs(args.data)
    else:
        sentences = _read_lines(args.data)
    nn10 = args.nn10
    if nn10 is None and args.mean_cosine is None and args.spearman_drop is None:
        nn10 = DEFAULT_NN10  # no criterion given: the NN@10 budget, said in the output
    budget = Budget(nn10=nn10, mean_cosine=args.mean_cosine, spearman_drop=args.spearman_drop)
    kw = {"thetas": tuple(args.thetas)} if args.thetas else {}
    if args.min_layers:
        kw["min_layers"] = tuple(args.min_layers)
    res = calibrate_folder(str(folder), sentences, budget, source=args.data, pairs=pairs, **kw)
    chosen = res["chosen"]
    if args.json:
        print(json.dumps({**res, "chosen": chosen.to_dict() if chosen else None}, indent=2, default=float))
        return 0
    cols = ["theta", "min_layer", "exit_rate", "expected_exit_layer", "layer_reduction", "nn10", "mean_cosine"]
    if pairs is not None:
        cols.append("spearman_drop")
    rows = [
        [_fmt(r[c], pct=c == "exit_rate") for c in cols] + ["yes" if r["meets_budget"] else ""] for r in res["sweep"]
    ]
    print(f"Calibration of {args.model} on {res['n']} sentences of {args.data}")
    print(f"budget (every criterion checked): {budget.describe()}\n")
    print(_table([*cols, "meets"], rows))
    if chosen is None:
        print("\nno rule meets the budget: the model folder is unchanged (serve it at full depth, or relax the budget)")
    else:
        print(f"\nchosen (fastest within budget): {_rule(chosen.to_dict())}; written to {folder / 'leap_exit.json'}")
    return 0


def _bench_rows(path: str) -> list[dict]:
    """The rows of a ``leap bench --output`` JSON, or one error saying what is wrong with the file."""
    p = Path(path)
    if not p.is_file():
        raise LeapError(f"--bench {path!r} does not exist; write one with `leap bench MODEL --output {path}`")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LeapError(f"--bench {path!r} is not JSON ({err}); give a `leap bench --output` file") from None
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and {"full_ms", "exit_ms"} <= set(r) for r in rows):
        raise LeapError(f"--bench {path!r} has no rows with full_ms and exit_ms; give a `leap bench --output` file")
    return rows


def cmd_amortize(args: argparse.Namespace) -> int:
    from leap.deploy import amortize

    full, ex = args.full_ms, args.exit_ms
    if args.bench:
        rows = [r for r in _bench_rows(args.bench) if r.get("batch_size") == args.batch_size]
        if not rows:
            raise LeapError(f"{args.bench} has no row for batch size {args.batch_size}")
        full, ex = rows[0]["full_ms"], rows[0]["exit_ms"]
    if full is None or ex is None:
        raise LeapError("give --full-ms and --exit-ms, or --bench with a `leap bench --output` JSON")
    hours = args.train_hours
    if args.train_benchmark:
        import csv

        if not Path(args.train_benchmark).is_file():
            raise LeapError(f"--train-benchmark {args.train_benchmark!r} does not exist (a Snakemake benchmark TSV)")
        with open(args.train_benchmark, encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows or "s" not in rows[0]:
            raise LeapError(f"--train-benchmark {args.train_benchmark!r} is no Snakemake benchmark TSV (no 's' column)")
        hours = sum(float(r["s"]) for r in rows) / 3600 * args.train_devices
    if hours is None:
        raise LeapError("give --train-hours, or --train-benchmark with the training job's Snakemake benchmark TSV")
    out = amortize(args.requests_per_day, full, ex, hours)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            f"full {full:.2f} ms -> exit {ex:.2f} ms per request ({out['speedup']:.2f}x); training {hours:.2f} "
            f"device-hours; {out['verdict']}"
        )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from leap.onnx_export import export_onnx

    m = export_onnx(args.model, int8=args.int8, truncations=args.truncations or ())
    if args.json:
        print(json.dumps(m, indent=2))
    else:
        print(
            f"exported {len(m['segments']) - 1} segments (the first ends at layer {m['first_segment_end']}) and a "
            f"full-depth graph to {Path(args.model) / 'onnx'}{' with int8 copies' if args.int8 else ''}"
        )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leap", description="Early-exit embeddings (LEAP, ACL 2026): diagnose, benchmark, encode, convert."
    )
    parser.add_argument("--version", action="version", version=f"leap {__version__}")
    parser.add_argument("--verbose", action="store_true", help="show log messages")
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
    b.add_argument("--rounds", type=int, default=10, help="interleaved rounds the iterations are split into")
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
    e.add_argument(
        "--backend",
        default="torch",
        choices=["torch", "onnx", "onnx-int8"],
        help="torch (default), or ONNX Runtime on the `leap export` segments (fp32 or int8)",
    )
    _exit_args(e)
    e.set_defaults(func=cmd_encode)

    c = sub.add_parser("convert", help="exit-enable a mean-pooling SentenceTransformer (writes a model folder)")
    c.add_argument("model", help="SentenceTransformer folder or hub id")
    c.add_argument("output", help="the exit-enabled model folder to write")
    c.add_argument(
        "--fit-maps",
        metavar="FILE",
        help="fit per-layer maps into the last layer's space on these sentences (one a line)",
    )
    _exit_args(c)
    c.set_defaults(func=cmd_convert)

    k = sub.add_parser("calibrate", help="pick the fastest exit rule within a quality budget, on your own sentences")
    k.add_argument("model", help="an exit-enabled model folder (leap convert makes one); the rule is written into it")
    k.add_argument("--data", required=True, help="text file, one sentence a line (or scored pairs with --pairs)")
    k.add_argument("--pairs", action="store_true", help="--data is a TSV: sentence1<TAB>sentence2<TAB>score")
    k.add_argument(
        "--nn10",
        type=float,
        default=None,
        help=f"minimum NN@10 overlap with full inference (default {DEFAULT_NN10} when no other criterion is given)",
    )
    k.add_argument("--mean-cosine", type=float, default=None, help="minimum mean cosine to the full embedding")
    k.add_argument("--spearman-drop", type=float, default=None, help="maximum Spearman drop on scored pairs")
    k.add_argument("--thetas", type=float, nargs="+", help="thetas swept (default 0.80..0.99)")
    k.add_argument("--min-layers", type=int, nargs="+", help="l_min values swept (default: the model's and one above)")
    k.add_argument("--in-place", action="store_true", help="write the rule into a folder that is not exit-enabled yet")
    k.add_argument("--json", action="store_true", help="print JSON instead of a table")
    k.set_defaults(func=cmd_calibrate)

    a = sub.add_parser("amortize", help="when does exit-aware training pay back? (paper App. A.4)")
    a.add_argument("--requests-per-day", type=float, required=True)
    a.add_argument("--full-ms", type=float, help="per-request latency at full depth")
    a.add_argument("--exit-ms", type=float, help="per-request latency with early exit")
    a.add_argument("--bench", help="a `leap bench --output` JSON instead of --full-ms/--exit-ms")
    a.add_argument("--batch-size", type=int, default=1, help="the bench row to read (default 1)")
    a.add_argument("--train-hours", type=float, help="training cost in device-hours")
    a.add_argument("--train-benchmark", help="Snakemake benchmark TSV of the training job(s) instead of --train-hours")
    a.add_argument("--train-devices", type=int, default=1, help="devices the training job held (default 1)")
    a.add_argument("--json", action="store_true", help="print JSON instead of a sentence")
    a.set_defaults(func=cmd_amortize)

    x = sub.add_parser("export", help="ONNX Runtime depth segments (and int8 copies) into the model folder")
    x.add_argument("model", help="an exit-enabled model folder (leap convert makes one)")
    x.add_argument("--int8", action="store_true", help="also dynamically quantised int8 segments")
    x.add_argument(
        "--truncations",
        type=int,
        nargs="+",
        metavar="K",
        help="also one graph of layers 1..K for each K (static truncation, strategy truncate)",
    )
    x.add_argument("--json", action="store_true", help="print the manifest as JSON")
    x.set_defaults(func=cmd_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        # check the exit rule before any file is read or model loaded
        if hasattr(args, "strategy"):
            ExitConfig(**_overrides(args))
        return int(args.func(args) or 0)
    except LeapError as err:
        print(f"leap {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
