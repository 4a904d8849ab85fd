"""Teacher caching throughput vs SentenceTransformer.encode on the same sentences and model
(issue target: >= 0.9x), one forward pass giving every cached layer.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/teacher.py [--model packaged:all-MiniLM-L6-v2] [--n 2000]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from leap.data import demo_sentences
from leap.models import resolve_model_ref
from leap.teacher import build_cache


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="packaged:all-MiniLM-L6-v2")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
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
        m = build_cache(a.model, sents, tmp, students=[(6, None)], batch_size=a.batch_size, progress=False, log=lambda s: None)
        t_cache = time.perf_counter() - t0
    print(f"model {a.model}, {a.n} sentences, {a.threads} threads, layers cached {m['layers']}")
    print(f"SentenceTransformer.encode: {a.n / t_st:8.1f} sentences/s")
    print(f"leap teacher cache:         {a.n / t_cache:8.1f} sentences/s  (ratio {t_st / t_cache:.2f}x, target >= 0.9x;"
          f" includes model load and writing)")


if __name__ == "__main__":
    main()
