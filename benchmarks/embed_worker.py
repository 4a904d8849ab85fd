"""One embedding engine in its own process, for :mod:`benchmarks.fastembed_compare`.

Started by the comparison in the venv that holds the engine (fastembed lives in a venv of
its own: it is not a dependency of this package), it loads one model and answers JSON
lines on stdin, one JSON line each on stdout:

* ``{"op": "time", "texts": [...], "request": n}``: the texts encoded in requests of ``n``
  (tokenisation included); answers ``{"ms": total milliseconds}``;
* ``{"op": "embed", "texts": [...], "out": "file.npy"}``: the texts' embeddings, in requests
  of 32, saved to ``out``; answers ``{"ok": true}``.

Engines: ``leap`` (a model folder served by ``ExitSentenceTransformer(folder,
backend="calibrated")``), ``st`` (sentence-transformers on torch), ``fastembed`` (a folder
with ``model.onnx`` and the tokenizer files, mean pooling and normalisation as the
sentence-transformers model).

Usage: python embed_worker.py ENGINE FOLDER THREADS [DIM]
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np


def load(engine: str, folder: str, threads: int, dim: int):
    """``encode(texts, request) -> [N, d]`` of one engine."""
    if engine == "fastembed":
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType

        name = f"local/{os.path.basename(folder.rstrip('/'))}"
        TextEmbedding.add_custom_model(
            model=name, pooling=PoolingType.MEAN, normalization=True, sources=ModelSource(hf=name), dim=dim,
            model_file="model.onnx",
        )  # fmt: skip
        model = TextEmbedding(name, threads=threads, specific_model_path=folder, local_files_only=True)
        return lambda texts, n: np.stack(list(model.embed(texts, batch_size=n)))
    import torch

    torch.set_num_threads(threads)
    if engine == "st":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(folder, device="cpu")
    else:
        from leap import ExitSentenceTransformer

        model = ExitSentenceTransformer(folder, backend="calibrated", threads=threads)
    return lambda texts, n: model.encode(texts, batch_size=n, show_progress_bar=False, convert_to_numpy=True)


def main() -> None:
    engine, folder, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    encode = load(engine, folder, threads, int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    encode(["warm up the engine", "and its allocator"], 2)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        texts, n = cmd["texts"], int(cmd.get("request", 32))
        if cmd["op"] == "time":
            t = time.perf_counter()
            for i in range(0, len(texts), n):
                encode(texts[i : i + n], n)
            print(json.dumps({"ms": (time.perf_counter() - t) * 1e3}), flush=True)
        else:
            np.save(cmd["out"], np.asarray(encode(texts, 32), dtype=np.float32))
            print(json.dumps({"ok": True}), flush=True)


if __name__ == "__main__":
    main()
