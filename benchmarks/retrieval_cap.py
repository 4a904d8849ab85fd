"""What a token cap on retrieval texts costs and saves.

Long BEIR documents dominate the evaluation's cost. ``evaluation.retrieval_max_seq_length``
caps every query and document at K tokens; this measures, on the dev split of each set
(never test), the full-depth NDCG@10 and the encoding time of one model at each cap, in one
process, so the config can state the cap with its measured effect.

Usage:
  HF_HUB_OFFLINE=1 python benchmarks/retrieval_cap.py --data-dir ../shared/data \\
      --sets nfcorpus scifact --caps 256 128 --threads 1 --out results/cpu/performance/retrieval_cap
"""

from __future__ import annotations

import argparse
import time

import torch

from leap.core.exit_config import ExitConfig
from leap.files import write_json, write_text
from leap.serving.model import load_exit_model
from leap.workflow.data import retrieval_set
from leap.workflow.frontier import ranked_scores


def measure(model_path: str, data_dir: str, name: str, caps: list[int], batch_size: int) -> list[dict]:
    ds = retrieval_set(f"local:{name}", data_dir).split("dev")
    qids, dids = list(ds.queries), list(ds.corpus)
    docs = [(ds.corpus[d].get("title", "") + " " + ds.corpus[d]["text"]).strip() for d in dids]
    ranked = ranked_scores(qids, dids, ds.qrels, k_values=(10,))
    model = load_exit_model(model_path, exit=ExitConfig(strategy="none"), device="cpu", backend="torch")
    own = model.max_seq_length
    rows = []
    for cap in caps:
        model.max_seq_length = min(cap, own)
        t0 = time.perf_counter()
        d_emb = model.encode(docs, batch_size=batch_size)
        q_emb = model.encode([ds.queries[q] for q in qids], batch_size=batch_size)
        seconds = time.perf_counter() - t0
        ndcg = ranked(q_emb @ d_emb.T)["NDCG@10"]
        rows.append({"set": name, "split": "dev", "cap": model.max_seq_length, "ndcg10": ndcg, "seconds": seconds})
        print(f"{name} dev, cap {model.max_seq_length}: NDCG@10 {ndcg:.4f}, {seconds:.1f} s", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="packaged:all-MiniLM-L6-v2")
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--sets", nargs="+", default=["nfcorpus", "scifact"])
    ap.add_argument("--caps", type=int, nargs="+", default=[256, 128])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True, help="output prefix: writes OUT.json and OUT.md")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    rows = [r for name in a.sets for r in measure(a.model, a.data_dir, name, a.caps, a.batch_size)]
    write_json(a.out + ".json", {"model": a.model, "threads": a.threads, "rows": rows})
    lines = ["| set | split | cap | NDCG@10 | encode s |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r['set']} | {r['split']} | {r['cap']} | {r['ndcg10']:.4f} | {r['seconds']:.1f} |" for r in rows]
    head = f"Token cap on retrieval texts, {a.model}, {a.threads} thread(s)\n\n"
    write_text(a.out + ".md", head + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
