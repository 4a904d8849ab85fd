"""The evaluation passes on ONNX Runtime fp32, checked against torch on every run.

Every evaluation (STS-B, QQP, BEIR, the layer analyses, the DeeBERT heads' layer vectors)
reads one thing from a model: the pooled vectors of every layer of every text
(``layer_embeddings``, ``[L, N, d]``). :class:`CheckedLayerVectors` takes them from the
project's ONNX Runtime fp32 engine (:mod:`leap.serving.onnx_runtime`, one graph per layer,
exported into a scratch copy of the model folder: the folder itself is not touched), and then
checks them: on a sample of the pass's texts (the longest ones and evenly spaced others) the
torch path's vectors are computed too, and the largest absolute difference must stay within
:data:`TOLERANCE`. A pass that fails the check, or a model that cannot be exported, is run on
torch instead, with one log line; either way every number of the evaluation comes from
vectors equal to torch's within the tolerance. Configured by ``evaluation.engine``.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leap.errors import LeapError

log = logging.getLogger(__name__)

TOLERANCE = 1e-5
"""Largest absolute difference allowed between ONNX Runtime's and torch's pooled layer
vectors on the checked sample (fp32 ONNX Runtime differs from torch by about 1e-7 to 1e-6)."""

SAMPLE = 32
"""Texts of each pass that are also run on torch for the check."""

ENGINES = ("torch", "onnx")


def check_sample(texts: Sequence[str], n: int = SAMPLE) -> np.ndarray:
    """Indices of the texts checked: the longest quarter of ``n`` and ``n`` evenly spaced others."""
    if len(texts) <= n:
        return np.arange(len(texts))
    longest = np.argsort([-len(t) for t in texts], kind="stable")[: max(1, n // 4)]
    spaced = np.linspace(0, len(texts) - 1, n - len(longest)).astype(int)
    return np.unique(np.concatenate([longest, spaced]))


class CheckedLayerVectors:
    """An evaluation model (:class:`leap.serving.model.ExitSentenceTransformer` on torch, CPU)
    whose ``layer_embeddings`` run on ONNX Runtime fp32 and are checked against torch.

    Everything else (``num_layers``, ``layer_maps``, ``embed_vectors``, ``max_seq_length``...)
    is the torch model's. ``checks`` records each pass: texts, sample, largest difference,
    the engine whose vectors were used.
    """

    def __init__(self, model: Any, tolerance: float = TOLERANCE, sample: int = SAMPLE) -> None:
        self.__dict__.update(model=model, tolerance=tolerance, sample=sample, checks=[], _onnx=None, _tmp=None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["model"], name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.model, name, value)  # max_seq_length and the like belong to the model

    def _engine(self) -> Any:
        """The ONNX Runtime model of a scratch copy of the folder (exported once), or ``None``."""
        if self._onnx is None:
            self.__dict__["_onnx"] = False
            if importlib.util.find_spec("onnxruntime") is None:
                log.info("evaluation on torch: onnxruntime is not installed")
                return None
            try:
                self.__dict__["_onnx"] = self._export()
            except (LeapError, OSError, RuntimeError, ValueError) as err:
                log.warning("evaluation on torch: the ONNX export failed (%s)", err)
        return self._onnx or None

    def _export(self) -> Any:
        from leap.serving.model import ExitSentenceTransformer
        from leap.serving.onnx_export import export_onnx

        src = self.model.folder.require_local("the ONNX Runtime evaluation engine")
        tmp = tempfile.TemporaryDirectory(prefix="leap-eval-onnx-")
        self.__dict__["_tmp"] = tmp  # removed with this object
        folder = Path(tmp.name) / "model"
        shutil.copytree(src, folder, ignore=shutil.ignore_patterns("onnx", ".*"))
        export_onnx(folder, first_segment_end=1)  # one graph per layer: every layer in one pass
        onnx = ExitSentenceTransformer(folder, backend="onnx", threads=torch.get_num_threads())
        log.info("evaluation passes on ONNX Runtime fp32 (%d layer graphs), checked against torch", self.num_layers)
        return onnx

    def layer_embeddings(self, sentences: Sequence[str], batch_size: int = 32, **kwargs: Any) -> torch.Tensor:
        """``[L, N, d]`` as the torch model's ``layer_embeddings``: from ONNX Runtime when its
        vectors on the checked sample equal torch's within :attr:`tolerance`, else from torch."""
        sents = list(sentences)
        onnx = self._engine()
        if onnx is None or kwargs.get("layers") is not None:
            return self.model.layer_embeddings(sents, batch_size=batch_size, **kwargs)
        onnx.max_seq_length = self.model.max_seq_length  # a cap set on the evaluation model holds here too
        v = onnx.layer_embeddings(sents, batch_size=batch_size, **kwargs)
        idx = check_sample(sents, self.sample)
        ref = self.model.layer_embeddings([sents[i] for i in idx], batch_size=batch_size)
        diff = float((v[:, torch.as_tensor(idx)] - ref).abs().max()) if len(idx) else 0.0
        ok = bool(np.isfinite(diff)) and diff <= self.tolerance
        self.checks.append(
            {"texts": len(sents), "sample": len(idx), "max_abs_diff": diff, "engine": "onnx" if ok else "torch"}
        )
        if ok:
            log.info(
                "ONNX Runtime layer vectors of %d texts: max |diff| to torch %.1e on %d", len(sents), diff, len(idx)
            )
            return v
        log.warning(
            "ONNX Runtime layer vectors differ from torch's by %.1e (> %.0e) on %d sampled texts: "
            "this pass runs on torch",
            diff,
            self.tolerance,
            len(idx),
        )
        return self.model.layer_embeddings(sents, batch_size=batch_size, **kwargs)


def evaluation_model(model: Any, engine: str = "torch") -> Any:
    """``model`` for an evaluation on ``engine``: ``"torch"`` as it is, ``"onnx"`` wrapped in
    :class:`CheckedLayerVectors` (CPU models only; a GPU evaluation stays on torch)."""
    if engine not in ENGINES:
        raise LeapError(f"evaluation engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "torch" or model.device.type != "cpu":
        return model
    return CheckedLayerVectors(model)


def load_model(model: str, device: str | None = None, engine: str = "torch") -> Any:
    """The model of an evaluation: :class:`leap.serving.model.ExitSentenceTransformer`, CPU by
    default; with ``engine="onnx"`` its layer passes run on ONNX Runtime fp32, checked against
    torch (:mod:`leap.workflow.eval_engine`)."""
    from leap.serving.model import load_exit_model

    return evaluation_model(load_exit_model(model, device=device or "cpu", backend="torch"), engine)


def setup_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
