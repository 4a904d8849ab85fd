"""``leap convert``, ``leap calibrate``, ``leap amortize`` (App. A.4) and ``leap export`` (ONNX Runtime)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from leap.cli.common import (
    exit_args,
    overrides,
    read_lines,
    rule_text,
)
from leap.core.exit_config import ExitConfig
from leap.core.metrics import DEFAULT_NN10
from leap.core.text_table import fmt, table
from leap.errors import LeapError


def read_pairs(path: str) -> tuple[list[str], tuple]:
    """A TSV of ``sentence1 <tab> sentence2 <tab> score`` -> unique sentences and (i1, i2, gold)."""
    import numpy as np

    rows = [line.split("\t") for line in read_lines(path) if line.strip()]
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


def bench_rows(path: str) -> list[dict]:
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


def cmd_convert(args: argparse.Namespace) -> int:
    from leap.deploy.convert import convert

    over = overrides(args)
    fit = [s for s in read_lines(args.fit_maps)] if args.fit_maps else None
    if fit is not None and len(fit) < 2:
        raise LeapError(f"--fit-maps needs at least 2 sentences, {args.fit_maps!r} has {len(fit)}")
    out = convert(
        args.model,
        args.output,
        exit=ExitConfig(**over),
        fit_maps_on=fit,
        device=args.device or "cpu",
        overwrite=args.overwrite,
    )
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
            f"exit-enabled {args.model} -> {out} ({rule_text(summary['exit'])}"
            f"{', per-layer maps fitted on ' + str(len(fit)) + ' sentences' if fit else ''})"
        )
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from leap.core.exit_config import EXIT_CONFIG_FILE
    from leap.deploy.calibrate import Budget, calibrate_folder

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
        sentences, pairs = read_pairs(args.data)
    else:
        sentences = read_lines(args.data)
    nn10 = args.nn10
    if nn10 is None and args.mean_cosine is None and args.spearman_drop is None:
        nn10 = DEFAULT_NN10  # no criterion given: the NN@10 budget, said in the output
    budget = Budget(nn10=nn10, mean_cosine=args.mean_cosine, spearman_drop=args.spearman_drop)
    kw = {"thetas": tuple(args.thetas)} if args.thetas else {}
    if args.min_layers:
        kw["min_layers"] = tuple(args.min_layers)
    if args.paths == "auto":
        return calibrate_auto(args, folder, sentences, pairs, budget, kw)
    res = calibrate_folder(str(folder), sentences, budget, source=args.data, pairs=pairs, **kw)
    chosen = res["chosen"]
    if args.json:
        print(json.dumps({**res, "chosen": chosen.to_dict() if chosen else None}, indent=2, default=float))
        return 0
    cols = ["theta", "min_layer", "exit_rate", "expected_exit_layer", "layer_reduction", "nn10", "mean_cosine"]
    if pairs is not None:
        cols.append("spearman_drop")
    rows = [
        [fmt(r[c], pct=c == "exit_rate") for c in cols] + ["yes" if r["meets_budget"] else ""] for r in res["sweep"]
    ]
    print(f"Calibration of {args.model} on {res['n']} sentences of {args.data}")
    print(f"budget (every criterion checked): {budget.describe()}\n")
    print(table([*cols, "meets"], rows))
    if chosen is None:
        print("\nno rule meets the budget: the model folder is unchanged (serve it at full depth, or relax the budget)")
    else:
        print(
            f"\nchosen (fastest within budget): {rule_text(chosen.to_dict())}; written to {folder / 'leap_exit.json'}"
        )
    return 0


def calibrate_auto(
    args: argparse.Namespace, folder: Path, sentences: list[str], pairs: Any, budget: Any, kw: dict
) -> int:
    """``leap calibrate --paths auto``: every serving path measured, the fastest within budget served."""
    from leap.deploy.serving_paths import TABLE_FILE, calibrate_paths, paths_table

    res = calibrate_paths(
        folder,
        sentences,
        budget,
        source=args.data,
        pairs=pairs,
        batch_sizes=tuple(args.batch_sizes),
        threads=args.threads,
        timing_sentences=args.timing_sentences,
        rounds=args.rounds,
        export=not args.no_export,
        **kw,
    )
    chosen = res.chosen
    if args.json:
        out = {"chosen": chosen.to_dict() if chosen else None, "paths": [p.to_dict() for p in res.paths]}
        print(json.dumps({**out, "budget": budget.describe(), "skipped": res.skipped}, indent=2, default=float))
        return 0
    print(f"Serving paths of {args.model} on {res.n} sentences of {args.data}, threads {res.threads or 'default'}")
    print(f"budget (every criterion checked): {budget.describe()}\n")
    print(paths_table(res))
    for why in res.skipped:
        print(f"not measured: {why}")
    if chosen is None:
        print("\nno path meets the budget: the model folder is unchanged (relax the budget)")
    else:
        print(
            f"\nchosen (fastest within budget at batch {res.batch_sizes[0]}): {chosen.name}, "
            f"{chosen.ms[res.batch_sizes[0]]:.2f} ms/sentence; written to {folder / 'leap_exit.json'} "
            f"(table: {folder / TABLE_FILE}); loading the folder now serves it"
        )
    return 0


def cmd_amortize(args: argparse.Namespace) -> int:
    from leap.deploy.amortize import amortize

    full, ex = args.full_ms, args.exit_ms
    if args.bench:
        rows = [r for r in bench_rows(args.bench) if r.get("batch_size") == args.batch_size]
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
    from leap.serving.onnx_export import export_onnx

    m = export_onnx(args.model, int8=args.int8, truncations=args.truncations or (), overwrite=args.overwrite)
    if args.json:
        print(json.dumps(m, indent=2))
    else:
        copies = [c for c, on in (("int8", m["int8"]), ("fused", m.get("fused"))) if on]
        print(
            f"exported {len(m['segments']) - 1} segments (the first ends at layer {m['first_segment_end']}) and a "
            f"full-depth graph to {Path(args.model) / 'onnx'}"
            + (f" with {' and '.join(copies)} copies" if copies else "")
            + ("" if m.get("fused") else " (ONNX Runtime's optimizer does not fuse this architecture: no fused copies)")
        )
    return 0


def add_parsers(sub: Any) -> None:
    """Register this module's sub-commands on the ``leap`` parser."""
    c = sub.add_parser("convert", help="exit-enable a mean-pooling SentenceTransformer (writes a model folder)")
    c.add_argument("model", help="SentenceTransformer folder or hub id")
    c.add_argument("output", help="the exit-enabled model folder to write")
    c.add_argument(
        "--fit-maps",
        metavar="FILE",
        help="fit per-layer maps into the last layer's space on these sentences (one a line)",
    )
    c.add_argument(
        "--overwrite",
        action="store_true",
        help="replace OUTPUT even when it is a file or a folder of other files (never ., a home folder or /)",
    )
    exit_args(c)
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
    k.add_argument(
        "--paths",
        choices=["exit", "auto"],
        default="exit",
        help="exit: tune the exit rule on torch (default); auto: measure every serving path (torch and ONNX "
        "Runtime, fp32 and int8, full depth, every cut, exit over the theta sweep) and serve the fastest in budget",
    )
    k.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32], help="--paths auto: timed batch sizes")
    k.add_argument("--threads", type=int, default=None, help="--paths auto: CPU threads (default: torch's)")
    k.add_argument("--timing-sentences", type=int, default=64, help="--paths auto: sentences timed per path")
    k.add_argument("--rounds", type=int, default=3, help="--paths auto: interleaved timing rounds")
    k.add_argument("--no-export", action="store_true", help="--paths auto: never export ONNX graphs (say which)")
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
    x.add_argument("--overwrite", action="store_true", help="replace an onnx/ folder that leap did not write")
    x.add_argument("--json", action="store_true", help="print the manifest as JSON")
    x.set_defaults(func=cmd_export)
