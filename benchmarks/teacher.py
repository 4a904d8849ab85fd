"""Teacher caching throughput vs SentenceTransformer.encode on the same sentences and model
(target: >= 0.9x), one forward pass giving every cached layer; and peak memory at two
corpus sizes (target: RSS at 10K and 100K sentences within 10%), each size in a fresh
process.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/teacher.py [--model packaged:all-MiniLM-L6-v2] [--n 2000]
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/teacher.py --rss 10000 100000
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time

import torch

from leap.serving.sources import resolve_model_ref
from leap.training.teacher import build_teacher_cache
from leap.workflow.data import demo_sentences


def rss_child(a: argparse.Namespace, n: int) -> None:
    """Build a cache of ``n`` sentences; print the peak RSS of this process in MiB."""
    sents = demo_sentences(n, seed=7)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        build_teacher_cache(a.model, sents, tmp, students=[(6, None)], batch_size=a.batch_size, progress=False)
        dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{len(sents)} {before:.1f} {peak:.1f} {dt:.1f}")


def rss(a: argparse.Namespace) -> None:
    rows = []
    for n in a.rss:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--rss-child",
                str(n),
                "--model",
                a.model,
                "--threads",
                str(a.threads),
                "--batch-size",
                str(a.batch_size),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        got, before, peak, dt = out.stdout.split()[-4:]
        rows.append((int(got), float(before), float(peak), float(dt)))
    print(f"model {a.model}, {a.threads} threads, batch {a.batch_size}, one fresh process per size")
    print(f"{'sentences':>10} {'RSS after load (MiB)':>21} {'peak RSS (MiB)':>15} {'seconds':>8}")
    for got, before, peak, dt in rows:
        print(f"{got:>10} {before:>21.1f} {peak:>15.1f} {dt:>8.1f}")
    lo, hi = rows[0][2], rows[-1][2]
    print(f"peak RSS {rows[-1][0]} vs {rows[0][0]} sentences: {hi / lo:.3f}x (target within 10%)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="packaged:all-MiniLM-L6-v2")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rss", type=int, nargs="+", help="corpus sizes for the peak-memory comparison")
    ap.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.rss_child:
        return rss_child(a, a.rss_child)
    if a.rss:
        return rss(a)
    from sentence_transformers import SentenceTransformer

    sents = demo_sentences(a.n, seed=7)
    path = resolve_model_ref(a.model)
    st = SentenceTransformer(path, device="cpu")
    st.encode(sents[:64], batch_size=a.batch_size)
    t0 = time.perf_counter()
    st.encode(sents, batch_size=a.batch_size)
    t_st = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        m = build_teacher_cache(a.model, sents, tmp, students=[(6, None)], batch_size=a.batch_size, progress=False)
        t_cache = time.perf_counter() - t0
    print(f"model {a.model}, {a.n} sentences, {a.threads} threads, layers cached {m['layers']}")
    print(f"SentenceTransformer.encode: {a.n / t_st:8.1f} sentences/s")
    print(
        f"leap teacher cache:         {a.n / t_cache:8.1f} sentences/s  (ratio {t_st / t_cache:.2f}x, target >= 0.9x;"
        f" includes model load and writing)"
    )


if __name__ == "__main__":
    main()
