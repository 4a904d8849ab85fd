"""What it takes for L_exit to work at CPU scale: short runs, STS-B dev as the signal.

Each run trains one seed of a variant of ``config/cpu.yaml`` for ``--steps`` optimiser
steps with overrides (``--set loss.exit_slope=2``), then measures on the STS-B *dev*
sentences: similarity to final and adjacent-layer cosine per layer, exit rate at theta
0.90 / 0.95, and Spearman (full and exited). One JSON per run under ``--out``; ``--table``
assembles them into ``exploration.csv`` / ``.md``. STS-B test is never read here.

    python benchmarks/explore_exit.py --name slope2 --set loss.exit_slope=2 --steps 600
    python benchmarks/explore_exit.py --table

The frontier exploration (exit advantage on STS-B dev and the SciFact dev split
over a theta sweep, with and without maps) writes under ``results/cpu/exploration/frontier_runs``:

    python benchmarks/explore_exit.py --name Y2_xd2_nocross --variant leap_xd --set loss.cross_weight=0 \
        --steps 400 --scifact --out results/cpu/exploration/frontier_runs
    python benchmarks/explore_exit.py --model packaged:all-MiniLM-L6-v2 --name untrained_minilm \
        --scifact --out results/cpu/exploration/frontier_runs
    # self-distillation runs (Z*): --cache and --teacher-model name the student's own cache

(each JSON records its variant, steps and overrides).
    python benchmarks/explore_exit.py --mixing packaged:all-MiniLM-L6-v2 --name untrained_minilm \
        --out results/cpu/exploration/frontier_runs      # mixing cost vs selection gain
    python benchmarks/explore_exit.py --frontier-table --out results/cpu/exploration/frontier_runs

Needs the cpu run's data and teacher cache (``snakemake ... --until teacher_cache``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from leap.core.early_exit import simulate_exit  # noqa: E402
from leap.core.exit_config import ExitConfig
from leap.files import write_json  # noqa: E402
from leap.training.run import train  # noqa: E402
from leap.workflow.data import read_sentences  # noqa: E402
from leap.workflow.evaluate import anisotropy, load_model, pair_cos, pair_index, spearman  # noqa: E402
from leap.workflow.frontier import meets_bar  # noqa: E402
from leap.workflow.plan import slug  # noqa: E402
from leap.workflow.variants import make_train_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _set(d: dict, dotted: str, value) -> None:
    *head, last = dotted.split(".")
    for k in head:
        d = d.setdefault(k, {})
    d[last] = value


def _frontier_summary(rule_v, emb_v, base: ExitConfig, quality, prefix: str) -> dict:
    """Truncation per layer, the theta sweep, and the best exit advantage among points with
    >= 80% exits and >= 1.4x layer reduction (the issue's bar)."""
    from leap.workflow.frontier import exit_advantage, sweep_points, truncation_points

    trunc = truncation_points(emb_v, quality)
    pts = sweep_points(rule_v, emb_v, base, quality, pabee=())
    rows = [{**p.to_dict(), "advantage": exit_advantage(p, trunc)} for p in pts]
    ok = [r for r in rows if meets_bar(r["exit_rate"], r["layer_reduction"])]
    best = max(ok, key=lambda r: r["advantage"]) if ok else None
    return {f"{prefix}truncation": [p.quality for p in trunc], f"{prefix}sweep": rows, f"{prefix}best": best}


def dev_signal(
    model: str,
    pairs: pd.DataFrame,
    min_layer: int,
    threads: int,
    fit_sentences: list[str] | None = None,
    scifact: object | None = None,
    scifact_docs: int = 1500,
) -> dict:
    """Per-layer similarity to final, adjacent cosine, anisotropy; exits and Spearman on STS-B dev;
    the frontier on STS-B dev (and SciFact dev) with the model's own maps, least-squares maps
    fitted on ``fit_sentences``, and none."""
    import torch
    import torch.nn.functional as F

    from leap.core.layer_maps import fit_layer_maps
    from leap.workflow.frontier import pair_spearman, retrieval_ndcg

    torch.set_num_threads(threads)
    enc = load_model(model)
    df = pairs[pairs["split"] == "dev"]
    sents, i1, i2 = pair_index(df)
    v = enc.layer_embeddings(sents, batch_size=64)  # [L, N, d]
    vn = F.normalize(v.float(), dim=-1)
    L = v.shape[0]
    gold = df["score"].to_numpy(dtype=float)
    out = {
        "sim_to_final": [float((vn[l] * vn[-1]).sum(-1).mean()) for l in range(L)],
        "adjacent_cos": [None] + [float((vn[l] * vn[l - 1]).sum(-1).mean()) for l in range(1, L)],
        "anisotropy": anisotropy(v.numpy()),
        "spearman_full": spearman(pair_cos(vn[-1].numpy(), i1, i2), gold),
    }
    for theta in (0.90, 0.95):
        ex = ExitConfig(strategy="convergence", theta=theta, patience=1, min_layer=min_layer)
        emb, layers = simulate_exit(v, ex)
        out[f"exit_rate_{theta:.2f}"] = float((layers < L).mean())
        out[f"mean_exit_layer_{theta:.2f}"] = float(layers.mean())
        out[f"spearman_exit_{theta:.2f}"] = spearman(pair_cos(emb, i1, i2), gold)
    base = ExitConfig(strategy="convergence", patience=1, min_layer=min_layer)
    maps = {"raw": None}
    if enc.layer_maps is not None:
        maps["own"] = enc.layer_maps
    if fit_sentences:
        maps["lstsq"] = fit_layer_maps(enc.layer_embeddings(fit_sentences, batch_size=64))
    q = pair_spearman(i1, i2, gold)
    for name, m in maps.items():
        ev = v if m is None else m.apply_all(v)
        out.update(_frontier_summary(v, ev, base, q, f"stsb_{name}_"))
    if scifact is not None:
        dev = scifact.split("dev")
        rel = {d for docs in dev.qrels.values() for d in docs}
        others = sorted(set(dev.corpus) - rel)
        rng = np.random.default_rng(0)
        doc_ids = sorted(rel) + sorted(rng.choice(others, size=max(0, scifact_docs - len(rel)), replace=False).tolist())
        qids = list(dev.queries)
        texts = [dev.queries[q] for q in qids] + [
            (dev.corpus[d].get("title", "") + " " + dev.corpus[d]["text"]).strip() for d in doc_ids
        ]
        vs = enc.layer_embeddings(texts, batch_size=32)
        qrows, drows = np.arange(len(qids)), np.arange(len(qids), len(texts))
        rq = retrieval_ndcg(qrows, drows, qids, doc_ids, dev.qrels)
        for name, m in maps.items():
            ev = vs if m is None else m.apply_all(vs)
            out.update(_frontier_summary(vs, ev, base, rq, f"scifact_{name}_"))
        out["scifact_docs"] = len(doc_ids)
    return out


def run(args: argparse.Namespace) -> dict:
    cfg_yaml = yaml.safe_load((ROOT / args.config).read_text())
    training = json.loads(json.dumps(cfg_yaml["training"]))
    over: dict = {}
    for item in args.set:
        key, _, raw = item.partition("=")
        try:
            value = float(raw) if "e" in raw.lower() and not raw.isalpha() else yaml.safe_load(raw)
        except ValueError:  # YAML 1.1 reads "2e-4" as a string
            value = yaml.safe_load(raw)
        _set(over, key, value)
    over["max_steps"] = args.steps
    over["checkpoint_steps"] = None
    cfg = make_train_config(training, args.variant, args.seed, variant_overrides=over)
    res = ROOT / "results" / cfg_yaml["experiment"]
    sentences = read_sentences(res / "data" / "sentences.parquet")
    work = Path(args.work) / args.name
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.perf_counter()
    cache = Path(args.cache) if args.cache else res / "teacher" / slug(cfg_yaml["teacher"]["model"])  # as the workflow
    model = train(
        cfg,
        sentences,
        cache,
        work,
        teacher=args.teacher_model or cfg_yaml["teacher"]["model"],
        progress_bar=False,
        threads=args.threads,
    )
    train_s = time.perf_counter() - t0
    log = [json.loads(x) for x in (work / "train_log.jsonl").read_text().splitlines()]
    last = {k: v for k, v in log[-1].items() if isinstance(v, (int, float))}
    pairs = pd.read_parquet(res / "data" / "stsb.parquet")
    sig = dev_signal(
        str(model),
        pairs,
        cfg.loss.focus_layer,
        args.threads,
        fit_sentences=sentences[-4000:],
        scifact=_scifact(cfg_yaml) if args.scifact else None,
    )
    row = {
        "name": args.name,
        "variant": args.variant,
        "overrides": " ".join(args.set),
        "steps": args.steps,
        "batch_size": cfg.batch_size,
        "train_seconds": round(train_s, 1),
        "last_log": last,
        **sig,
    }
    write_json(Path(args.out) / f"{args.name}.json", row)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return row


def _scifact(cfg_yaml: dict):
    from leap.workflow.data import retrieval_set

    return retrieval_set("local:scifact", cfg_yaml.get("data_dir") or "../shared/data")


def teacher_geometry(config: str, every: int = 10) -> dict:
    """The cached teacher layers' geometry on every ``every``-th training sentence: similarity
    to the final layer, cosine between consecutive cached layers, anisotropy (mean cosine of
    random pairs of different sentences). Explains what L_inter's targets look like."""
    import torch

    from leap.training.teacher import TeacherCache

    cfg_yaml = yaml.safe_load((ROOT / config).read_text())
    res = ROOT / "results" / cfg_yaml["experiment"]
    folder = res / "teacher" / Path(cfg_yaml["teacher"]["model"]).name
    cache = TeacherCache.open(folder, sentences=read_sentences(res / "data" / "sentences.parquet"), verify=False)
    idx = np.arange(0, len(cache), every)
    vec = {l: torch.nn.functional.normalize(v.float(), dim=-1) for l, v in cache.get(idx, cache.layers).items()}
    final = max(vec)
    perm = torch.randperm(len(idx), generator=torch.Generator().manual_seed(0))
    layers = sorted(vec)
    return {
        "teacher": cfg_yaml["teacher"]["model"],
        "n_sentences": int(len(idx)),
        "layers": layers,
        "sim_to_final": {l: round(float((vec[l] * vec[final]).sum(-1).mean()), 3) for l in layers},
        "cos_to_previous_cached": {
            b: round(float((vec[a] * vec[b]).sum(-1).mean()), 3) for a, b in zip(layers, layers[1:])
        },
        "anisotropy": {l: round(float((vec[l] * vec[l][perm]).sum(-1).mean()), 3) for l in layers},
    }


def _one_depth(p: dict) -> bool:
    """Every sample at (nearly) one layer: static truncation in disguise, advantage ~0 by construction."""
    return p["exit_rate"] >= 0.99 and abs(p["mean_exit_layer"] - round(p["mean_exit_layer"])) < 0.05


def _best(sweep: list[dict], bar: bool) -> dict | None:
    pts = [
        p
        for p in sweep
        if p["exit_rate"] >= 0.05 and not _one_depth(p) and (not bar or meets_bar(p["exit_rate"], p["layer_reduction"]))
    ]
    return max(pts, key=lambda p: p["advantage"]) if pts else None


def frontier_table(out: Path) -> pd.DataFrame:
    """One row per exploration run with a frontier: full-depth and truncation quality, and the
    best exit advantage (overall, and at the bar: >= 80% exits, >= 1.4x) on STS-B dev and a
    SciFact dev split, with the served maps (own, or least squares fitted after the fact)."""
    rows = []
    for p in sorted(out.glob("*.json")):
        r = json.loads(p.read_text())
        if "stsb_raw_truncation" not in r:
            continue
        maps = "own" if "stsb_own_truncation" in r else ("lstsq" if "stsb_lstsq_truncation" in r else "raw")
        row = {
            "run": r["name"],
            "variant": r["variant"],
            "overrides": r["overrides"],
            "steps": r["steps"],
            "maps": maps,
            "stsb_full": round(r["spearman_full"], 3),
        }
        for bench in ("stsb", "scifact"):
            trunc = r.get(f"{bench}_{maps}_truncation")
            if trunc is None:
                continue
            L = len(trunc)
            row[f"{bench}_trunc_L{L // 2}..L{L - 1}"] = " / ".join(f"{q:.3f}" for q in trunc[L // 2 - 1 : L - 1])
            for bar in (False, True):
                b = _best(r[f"{bench}_{maps}_sweep"], bar)
                key = f"{bench}_best{'_at_bar' if bar else ''}"
                row[key] = (
                    ""
                    if b is None
                    else (
                        f"{b['advantage']:+.3f} (theta {b['setting']:.2f}, "
                        f"{100 * b['exit_rate']:.0f}% exit, {b['layer_reduction']:.2f}x)"
                    )
                )
        rows.append(row)
    df = pd.DataFrame(rows)
    df.to_csv(out.parent / "frontier_exploration.csv", index=False)
    (out.parent / "frontier_exploration.md").write_text(df.to_markdown(index=False) + "\n")
    return df


def mixing(model: str, config: str, thetas: tuple[float, ...] = (0.86, 0.88, 0.90, 0.92), seed: int = 0) -> dict:
    """Why exit loses on STS-B dev: least-squares maps fitted on training sentences, then
    (a) the cost of mixing depths at random (half the sentences at layer l, half at the last)
    against the mean of the two truncations, and (b) the rule's exits against the same exit
    layers dealt at random (the value of *which* sentences exit)."""
    import torch

    from leap.core.exit_config import ExitConfig
    from leap.core.layer_maps import fit_layer_maps
    from leap.workflow.frontier import decompose_advantage, pair_spearman, truncation_points

    cfg_yaml = yaml.safe_load((ROOT / config).read_text())
    res = ROOT / "results" / cfg_yaml["experiment"]
    m = load_model(model)
    pairs = pd.read_parquet(res / "data" / "stsb.parquet")
    df = pairs[pairs["split"] == "dev"]
    sents, i1, i2 = pair_index(df)
    q = pair_spearman(i1, i2, df["score"].to_numpy(float))
    v = m.layer_embeddings(sents, batch_size=64)
    fit = read_sentences(res / "data" / "sentences.parquet")[-4000:]
    ev = fit_layer_maps(m.layer_embeddings(fit, batch_size=64)).apply_all(v)
    L, N = v.shape[0], v.shape[1]
    trunc = truncation_points(ev, q)
    rng = np.random.default_rng(seed)
    unit = torch.nn.functional.normalize(ev.float(), dim=-1)
    mix = {}
    for l in range(L // 2, L):
        pick = torch.as_tensor(rng.random(N) < 0.5)[:, None]
        mixed = q(torch.where(pick, unit[l - 1], unit[-1]).numpy())
        mix[f"L{l}+L{L}"] = round(mixed - 0.5 * (trunc[l - 1].quality + trunc[-1].quality), 4)
    parts = {}
    for th in thetas:
        d = decompose_advantage(v, ev, ExitConfig(theta=th, min_layer=L // 2), q, trunc)
        parts[str(th)] = {k: round(x, 4) for k, x in d.items()}
    return {
        "model": model,
        "truncation": [round(p.quality, 4) for p in trunc],
        "random_half_mix_vs_mean_of_truncations": mix,
        "decomposition": parts,
    }


def table(out: Path) -> pd.DataFrame:
    rows = []
    for p in sorted(out.glob("*.json")):
        r = json.loads(p.read_text())
        L = len(r["sim_to_final"])
        row = {"run": r["name"], "variant": r["variant"], "overrides": r["overrides"], "steps": r["steps"]}
        for l in range(2, L):
            row[f"sim_final_L{l}"] = round(r["sim_to_final"][l - 1], 3)
        for l in range(3, L + 1):
            row[f"adj_cos_L{l}"] = round(r["adjacent_cos"][l - 1], 3)
        row.update(
            {
                "exit_rate_0.90": round(r["exit_rate_0.90"], 3),
                "exit_rate_0.95": round(r["exit_rate_0.95"], 3),
                "E[l]_0.95": round(r["mean_exit_layer_0.95"], 2),
                "dev_spearman_full": round(r["spearman_full"], 4),
                "dev_spearman_exit_0.95": round(r["spearman_exit_0.95"], 4),
                "anisotropy_final": round(r["anisotropy"][-1], 3),
                "train_s": r["train_seconds"],
            }
        )
        rows.append(row)
    df = pd.DataFrame(rows)
    df.to_csv(out.parent / "exploration.csv", index=False)
    (out.parent / "exploration.md").write_text(df.to_markdown(index=False) + "\n")
    return df


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="config/cpu.yaml")
    ap.add_argument("--name")
    ap.add_argument("--variant", default="leap")
    ap.add_argument("--set", action="append", default=[], help="dotted override, e.g. loss.exit_slope=2")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default="/tmp/leap-explore")
    ap.add_argument("--out", default="results/cpu/exploration/runs")
    ap.add_argument("--keep", action="store_true", help="keep the trained model under --work")
    ap.add_argument("--table", action="store_true", help="assemble the runs into exploration.csv/.md")
    ap.add_argument("--teacher-geometry", action="store_true", help="geometry of the cached teacher layers")
    ap.add_argument("--model", help="measure an existing model (no training), e.g. packaged:all-MiniLM-L6-v2")
    ap.add_argument(
        "--scifact", action="store_true", help="also the frontier on a SciFact dev split (training queries)"
    )
    ap.add_argument("--cache", help="teacher cache folder (default: the config's)")
    ap.add_argument("--frontier-table", action="store_true", help="assemble the frontier runs into a table")
    ap.add_argument("--mixing", metavar="MODEL", help="mixing cost and selection gain of MODEL on STS-B dev")
    ap.add_argument("--teacher-model", help="the teacher that cache was built with (default: the config's)")
    args = ap.parse_args()
    out = Path(args.out)
    if args.teacher_geometry:
        geo = teacher_geometry(args.config)
        write_json(out.parent / "teacher_geometry.json", geo)
        print(json.dumps(geo, indent=1))
        return
    if args.table:
        print(table(out).to_string(index=False))
        return
    if args.frontier_table:
        print(frontier_table(out).to_string(index=False))
        return
    if args.mixing:
        import torch

        torch.set_num_threads(args.threads)
        res_ = mixing(args.mixing, args.config)
        write_json(out / f"mixing_{args.name or Path(args.mixing).name}.json", res_)
        print(json.dumps(res_, indent=1))
        return
    if args.model:
        cfg_yaml = yaml.safe_load((ROOT / args.config).read_text())
        res = ROOT / "results" / cfg_yaml["experiment"]
        pairs = pd.read_parquet(res / "data" / "stsb.parquet")
        fit = read_sentences(res / "data" / "sentences.parquet")[-4000:]
        sig = dev_signal(
            args.model, pairs, 3, args.threads, fit_sentences=fit, scifact=_scifact(cfg_yaml) if args.scifact else None
        )
        row = {
            "name": args.name or Path(args.model).name,
            "variant": "untrained",
            "overrides": args.model,
            "steps": 0,
            "batch_size": None,
            "train_seconds": 0.0,
            "last_log": {},
            **sig,
        }
        write_json(out / f"{row['name']}.json", row)
        print(json.dumps(row, indent=1))
        return
    if not args.name:
        ap.error("--name is required")
    print(json.dumps(run(args), indent=1))


if __name__ == "__main__":
    main()
