"""An exit-enabled model is a SentenceTransformer.

:class:`ExitTransformer` is a sentence-transformers ``Transformer`` whose ``forward`` runs
the layers with the exit rule of Algorithm 1 (:func:`leap.core.early_exit.exit_forward`) and
hands each row's exit-layer token states to the standard ``Pooling`` and ``Normalize``
modules, with the exit layer of every row as the output feature ``exit_layer``.

:class:`ExitSentenceTransformer` loads a model folder (or hub id) with that module swapped
in, through public API only, so early exit comes with everything
``SentenceTransformer.encode`` has: prompts, precision, ``truncate_dim``,
``encode_query`` / ``encode_document``, ``similarity``, the multi-process pool, progress
bars, devices. The saved folder keeps the standard ``Transformer`` type in
``modules.json`` (plain ``SentenceTransformer(folder)`` loads it at full depth, no
``trust_remote_code``) and holds two files of its own beside the weights:

* ``leap_exit.json``: the exit rule (:class:`leap.core.early_exit.ExitConfig`), plus any
  calibration record;
* ``layer_maps.safetensors`` (optional): per-layer maps into the last layer's space
  (:mod:`leap.core.layer_maps`), applied to a row's states when it exits.

Example:
    >>> from leap import ExitSentenceTransformer
    >>> model = ExitSentenceTransformer("path/to/student")          # exit rule from leap_exit.json
    >>> emb = model.encode(["A man plays a guitar."])                # early exit, as any ST model
    >>> model.encode(["a b c"], output_value=None)[0]["exit_layer"]  # the layer it left at
    >>> model.encode(["a b c"], exit=ExitConfig(strategy="none"))    # full depth for this call only
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules.transformer import Transformer
from torch import Tensor

from leap.core.early_exit import adapter_for, exit_forward, layers_forward
from leap.core.exit_config import SERVING_BACKENDS, ExitConfig
from leap.core.layer_maps import LayerMaps
from leap.errors import LeapError
from leap.serving.encoder import BatchResult, ExitEncoderMethods, check_texts, encode_rows, length_batches
from leap.serving.folder import ModelFolder

log = logging.getLogger(__name__)

BACKENDS = (*SERVING_BACKENDS, "calibrated")
"""What ``ExitSentenceTransformer(..., backend=)`` takes: the engines of
:data:`leap.core.exit_config.SERVING_BACKENDS` and the path a calibration chose."""
STANDARD_TRANSFORMER = f"{Transformer.__module__}.{Transformer.__name__}"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class ExitTransformer(Transformer):
    """``Transformer`` module with per-row early exit inside ``forward``.

    ``forward(features, exit=None)``: with the rule's strategy ``none`` (or in training
    mode) this is exactly ``Transformer.forward``; otherwise the exit loop runs and
    ``features`` gains ``token_embeddings [B, T, d]`` (each row's states at its exit layer,
    mapped when the model has per-layer maps) and ``exit_layer [B]`` (1-based). ``exit``
    overrides the module's rule for one call without touching shared state, so concurrent
    calls with different rules do not interfere.
    """

    forward_kwargs = {"exit", "keep_layers"}

    @classmethod
    def from_transformer(
        cls, module: Transformer, exit: ExitConfig, layer_maps: LayerMaps | None = None
    ) -> ExitTransformer:
        """Wrap a loaded ``Transformer`` (its weights and tokenizer are shared, not copied)."""
        new = cls.__new__(cls)
        new.__dict__.update(module.__dict__)
        new.num_layers = len(adapter_for(new.model, "model").layers(new.model))
        new.exit_config = exit.resolve(new.num_layers)
        if layer_maps is not None and (
            layer_maps.num_layers != new.num_layers or layer_maps.dim != new.get_embedding_dimension()
        ):
            raise LeapError(
                f"layer maps are for {layer_maps.num_layers} layers of width {layer_maps.dim}; the model has "
                f"{new.num_layers} of width {new.get_embedding_dimension()}"
            )
        new.layer_maps = layer_maps
        return new

    def resolve(self, exit: ExitConfig | dict | None) -> ExitConfig:
        if exit is None:
            return self.exit_config
        if isinstance(exit, dict):
            exit = ExitConfig.from_dict(exit)
        return exit.resolve(self.num_layers)

    def forward(
        self, features: dict[str, Any], exit: ExitConfig | dict | None = None, keep_layers: bool = False, **kwargs
    ) -> dict[str, Any]:
        """Run the layers with the exit rule; ``keep_layers`` adds ``layer_stack [B, L, d]``
        (:mod:`leap.core.common_depth`)."""
        cfg = self.resolve(exit)
        if self.training or (cfg.strategy == "none" and not cfg.monitor_only and not keep_layers):
            features = super().forward(features, **kwargs)
            ids = features["attention_mask"]
            features["exit_layer"] = torch.full((ids.shape[0],), self.num_layers, dtype=torch.long, device=ids.device)
            return features
        out = exit_forward(
            self.model,
            features["input_ids"],
            features["attention_mask"],
            cfg,
            maps=self.layer_maps,
            right_padded=getattr(self.tokenizer, "padding_side", "right") == "right",
            keep_layers=keep_layers,
        )
        features["token_embeddings"] = out.token_embeddings
        features["exit_layer"] = out.exit_layers
        if keep_layers:
            features["layer_stack"] = out.layer_stack
        return features

    def save(self, output_path: str, *args, **kwargs) -> None:
        super().save(output_path, *args, **kwargs)
        self.exit_config.save(output_path)
        if self.layer_maps is not None:
            self.layer_maps.save(output_path)


def _pooling_mode(module: Any) -> str:
    cfg = module.get_config_dict() if hasattr(module, "get_config_dict") else {}
    if "pooling_mode" in cfg:
        mode = cfg["pooling_mode"]
        return "+".join(mode) if isinstance(mode, (list, tuple)) else str(mode)
    modes = [
        k.removeprefix("pooling_mode_").removesuffix("_tokens")
        for k, v in cfg.items()
        if k.startswith("pooling_mode_") and v
    ]
    return "+".join(modes) if modes else "unknown"


def check_servable(model: SentenceTransformer, name: str) -> None:
    """Transformer -> mean Pooling (-> Normalize) and a supported architecture, or a :class:`LeapError`."""
    modules = list(model)
    kinds = [type(m).__name__ for m in modules]
    if not modules or not isinstance(modules[0], Transformer):
        raise LeapError(f"{name}: expected a Transformer as the first module, found {kinds}")
    if len(modules) < 2 or kinds[1] != "Pooling":
        raise LeapError(f"{name}: expected a Pooling module after the Transformer, found {kinds}")
    mode = _pooling_mode(modules[1])
    if mode != "mean":
        raise LeapError(
            f"{name}: pooling mode {mode!r} is not supported; early exit pools every layer with "
            "attention-mask-aware mean pooling (the paper's p_l), so only pooling_mode 'mean' models can be served"
        )
    rest = [k for k in kinds[2:] if k != "Normalize"]
    if rest:
        raise LeapError(
            f"{name}: modules after pooling ({rest}) are not supported; the exit embedding is the "
            "(normalised) mean-pooled layer output"
        )
    adapter_for(modules[0].model, name)


def _load(init: Callable[..., None], folder: ModelFolder, **kwargs: Any) -> None:
    """``init(folder.source, **kwargs)`` (a ``SentenceTransformer.__init__``) with a one-line
    :class:`LeapError` when the folder or hub id cannot be loaded."""
    try:
        init(folder.source, **kwargs)
    except LeapError:
        raise
    except (OSError, ValueError, RuntimeError) as err:  # hub unreachable, unknown repo, bad files
        local = folder.path is not None
        where = "the local folder" if local else "the Hugging Face Hub"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = (
            " No local folder of that name exists either; pass a local model folder, or allow network "
            "access (HF_HUB_OFFLINE is set)"
            if os.environ.get("HF_HUB_OFFLINE") == "1" and not local
            else ""
        )
        raise LeapError(f"could not load model {folder.name!r} from {where}: {first}.{hint}") from None


def load_sentence_transformer(path_or_id: str | os.PathLike, device: str | None = None, **kwargs: Any) -> Any:
    """A plain ``SentenceTransformer`` with one-line errors (a student's initialisation)."""
    model = SentenceTransformer.__new__(SentenceTransformer)
    _load(model.__init__, ModelFolder.read(path_or_id), device=device, **kwargs)
    return model


def calibrated_backend(folder: ModelFolder, threads: int | None) -> tuple[str, int | None]:
    """``(backend, threads)`` of the serving path ``leap calibrate --paths auto`` chose for
    ``folder`` (``threads`` given here wins), or one error when it has none."""
    rec = folder.serving
    if rec is None:
        raise LeapError(
            f"{folder.name!r} has no calibrated serving path; run `leap calibrate {folder.name} --data FILE "
            "--paths auto`, or pass backend='torch', 'onnx' or 'onnx-int8'"
        )
    return rec["backend"], threads if threads is not None else rec.get("threads")


class ExitSentenceTransformer(ExitEncoderMethods, SentenceTransformer):
    """A ``SentenceTransformer`` that serves early exit (paper Algorithm 1), on torch or ONNX Runtime.

    Args:
        model_name_or_path: a SentenceTransformer folder (exit-enabled or not), a plain
            transformers folder (mean pooling), a hub id, ``packaged:all-MiniLM-L6-v2``, or a
            :class:`~leap.serving.folder.ModelFolder` already read.
        exit: the exit rule (an :class:`ExitConfig` or its dict); default: the folder's
            ``leap_exit.json``, else ``ExitConfig()`` (theta 0.95, k 1, l_min from the depth).
        layer_maps: per-layer maps; default: the folder's ``layer_maps.safetensors``, if any.
        backend: what runs the layers, in the spirit of sentence-transformers' own ``backend=``:
            ``"torch"`` (default); ``"onnx"`` or ``"onnx-int8"``: ONNX Runtime over the folder's
            ``leap export`` graphs, fp32 or int8, on the CPU (the ``onnx`` extra);
            ``"onnx-fused"``, ``"onnx-fused-int8"``: the same on the graphs ONNX Runtime's
            transformer optimizer fused (BERT-family models);
            ``"calibrated"``: the engine, precision and threads that ``leap calibrate --paths
            auto`` chose for the folder (its ``serving`` record; an error when it has none).
            The model is an ``ExitSentenceTransformer`` whichever engine runs it; its ``repr``
            and :attr:`serving_path` say which path it serves.
        threads: ONNX Runtime intra-op threads (default: the calibrated ones, else its own choice).
        **kwargs: anything ``SentenceTransformer`` takes (``device``, ``model_kwargs``, ...).
            ``trust_remote_code`` is refused: a model that needs it cannot be served here.

    Every ``encode``-family call accepts ``exit=`` (an :class:`ExitConfig` or dict) for that
    call only. ``encode(..., output_value=None)`` gives each row's ``exit_layer``;
    :meth:`encode_with_exit_layers` gives embeddings and exit layers as two arrays.
    """

    def __init__(
        self,
        model_name_or_path: str | os.PathLike | ModelFolder | None = None,
        *,
        exit: ExitConfig | dict | None = None,
        layer_maps: LayerMaps | None = None,
        backend: str = "torch",
        threads: int | None = None,
        **kwargs: Any,
    ) -> None:
        if backend not in BACKENDS:
            raise LeapError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
        if kwargs.get("trust_remote_code"):
            raise LeapError("trust_remote_code is not supported: LEAP serves only models that load without it")
        if model_name_or_path is None:
            raise LeapError("ExitSentenceTransformer needs a model folder or hub id")
        folder = ModelFolder.read(model_name_or_path)
        if backend == "calibrated":
            backend, threads = calibrated_backend(folder, threads)
        if isinstance(exit, dict):
            exit = ExitConfig.from_dict(exit)
        rule = exit or folder.exit or ExitConfig()
        maps = layer_maps if layer_maps is not None else folder.layer_maps
        if backend == "torch":
            kwargs["device"] = check_device(kwargs.get("device"))
            _load(super().__init__, folder, **kwargs)
            check_servable(self, folder.name)
            self[0] = ExitTransformer.from_transformer(self[0], rule, maps)
        else:
            from leap.serving.onnx_runtime import OnnxExitTransformer  # the optional engine

            if kwargs.pop("device", None) not in (None, "cpu"):
                raise LeapError(f"backend {backend!r} runs on the CPU; drop device (or use backend='torch')")
            module = OnnxExitTransformer(folder, rule, backend=backend, threads=threads)
            st = folder.st_config
            kwargs.setdefault("prompts", st.get("prompts"))
            kwargs.setdefault("default_prompt_name", st.get("default_prompt_name"))
            kwargs.setdefault("similarity_fn_name", st.get("similarity_fn_name"))
            super().__init__(modules=[module], device="cpu", **kwargs)
        self.folder, self.backend, self.threads = folder, backend, threads
        if not self.model_card_data.model_name:  # what MTEB's ModelMeta reads as the model's name
            name = folder.name
            hub_like = folder.path is None and "/" in name
            self.model_card_data.model_name = name if hub_like else f"leap-exit/{Path(folder.source).name}"
        self.eval()  # inference model: no dropout (encode() does the same)

    @property
    def device(self) -> torch.device:
        """Where the model runs: the CPU for ONNX Runtime (no search through modules on every
        ``encode``), else sentence-transformers' answer."""
        if getattr(self, "backend", "torch") != "torch":
            return torch.device("cpu")
        return super().device

    @property
    def serving_path(self) -> str:
        """Which path this model serves: engine, precision, the rule, threads."""
        r = self.exit_config
        how = {"none": "full depth", "truncate": f"cut at layer {r.min_layer}"}.get(
            r.strategy, f"{r.strategy} exit theta {r.theta:g} k {r.patience} l_min {r.min_layer}"
        )
        threads = f", {self.threads} threads" if self.threads else ""
        fused = " fused" if "fused" in self.backend else ""
        precision = "int8" if "int8" in self.backend else "fp32"
        engine = "torch" if self.backend == "torch" else f"ONNX Runtime{fused} {precision}"
        return f"{engine}, {how}{threads}"

    def __repr__(self) -> str:
        return f"ExitSentenceTransformer(serving: {self.serving_path})\n{super().__repr__()}"

    def encode(self, inputs: Any, *args: Any, **kwargs: Any) -> Any:
        """``SentenceTransformer.encode`` with early exit (``exit=`` for this call only). On ONNX
        Runtime the graphs return sentence embeddings only: token embeddings need torch."""
        if self.backend != "torch" and kwargs.get("output_value") == "token_embeddings":
            raise LeapError("token embeddings need backend='torch'; ONNX Runtime returns sentence embeddings")
        return super().encode(inputs, *args, **kwargs)

    # -- the exit rule --------------------------------------------------------------------
    @property
    def exit_module(self) -> ExitTransformer:
        return self[0]

    @property
    def exit_config(self) -> ExitConfig:
        """The model's default rule (resolved against its depth)."""
        return self.exit_module.exit_config

    def with_exit(self, exit: ExitConfig | dict) -> ExitSentenceTransformer:
        """Set the model's default rule (returns ``self``); per-call ``exit=`` is the thread-safe way."""
        self.exit_module.exit_config = self.exit_module.resolve(exit)
        return self

    @property
    def layer_maps(self) -> LayerMaps | None:
        return self.exit_module.layer_maps

    @property
    def num_layers(self) -> int:
        return self.exit_module.num_layers

    # -- saving ---------------------------------------------------------------------------
    def save(self, path: str, *args: Any, **kwargs: Any) -> None:
        """Save as a standard SentenceTransformer folder plus ``leap_exit.json`` (and maps):
        ``modules.json`` names the standard ``Transformer``, so plain
        ``SentenceTransformer(path)`` loads it at full depth. On ONNX Runtime the exported
        folder is copied (weights, tokenizer, ``onnx/``) with the model's current rule."""
        if self.backend != "torch":
            self[0].save(path)
            return
        super().save(path, *args, **kwargs)
        standardise_modules_json(path)

    # -- encoding with exit layers --------------------------------------------------------
    def _batch_runner(
        self, exit: ExitConfig | dict | None, prompt: str | None, keep_layers: bool
    ) -> Callable[[list[str]], BatchResult]:
        """One batch of texts through the same ``forward`` as ``encode`` (exit rule per call; a
        monitor that :func:`leap.deploy.monitor.attach_monitor` installed sees it), for
        :func:`leap.serving.encoder.encode_rows`."""
        kwargs: dict[str, Any] = {"keep_layers": True} if keep_layers else {}
        if exit is not None:  # none: the model's own rule (or a monitor's fallback)
            kwargs["exit"] = self.exit_module.resolve(exit)

        def run(texts: list[str]) -> BatchResult:
            out = self.forward(self.features(texts, prompt=prompt), **kwargs)
            stack = out["layer_stack"].float().cpu().numpy() if keep_layers else None
            return BatchResult(out["sentence_embedding"].float().cpu().numpy(), out["exit_layer"].cpu().numpy(), stack)

        return run

    def encode_batches(
        self,
        sentences: Sequence[str],
        batch_size: int,
        exit: ExitConfig | dict | None,
        prompt: str | None,
        show_progress_bar: bool,
        keep_layers: bool,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        self.eval()
        run = self._batch_runner(exit, prompt, keep_layers)
        with torch.inference_mode():
            return encode_rows(
                sentences,
                batch_size,
                run,
                self.get_embedding_dimension(),
                self.num_layers,
                keep_layers=keep_layers,
                show_progress_bar=show_progress_bar,
            )

    def layer_embeddings(
        self,
        sentences: Sequence[str],
        batch_size: int = 32,
        layers: Sequence[int] | None = None,
        on_batch: Any = None,
    ) -> Tensor:
        """``[L, N, d]`` pooled (not normalised, not mapped) vectors of every layer on one full pass.

        On ONNX Runtime the vectors come from the export's graphs; a layer the export cannot
        return in one pass (:meth:`served_layers`) is NaN. ``layers`` (1-based) keeps only
        those layers (``[len(layers), N, d]``); ``on_batch(n)`` is called after each batch of
        ``n`` sentences (progress bars).
        """
        sents = check_texts(sentences)
        self.eval()
        sel = torch.as_tensor([l - 1 for l in layers]) if layers is not None else torch.arange(self.num_layers)
        out = torch.zeros(len(sel), len(sents), self.get_embedding_dimension())
        for idx in length_batches(sents, batch_size) if sents else []:
            feats = self.features([sents[i] for i in idx])
            if self.backend == "torch":
                v = layers_forward(self.exit_module.model, feats["input_ids"], feats["attention_mask"])
            else:  # this export's own graphs (int8 vectors for an int8 model); NaN where it has none
                v = self.exit_module.engine.layer_vectors(
                    feats["input_ids"].numpy().astype(np.int64), feats["attention_mask"].numpy().astype(np.int64)
                )
            out[:, torch.as_tensor(idx)] = v[sel.to(v.device)].float().cpu()
            if on_batch is not None:
                on_batch(len(idx))
        return out

    def served_layers(self) -> list[int]:
        """The layers (1-based) :meth:`layer_embeddings` returns: every layer on torch; on ONNX
        Runtime those the export has a graph ending at."""
        if self.backend == "torch":
            return list(range(1, self.num_layers + 1))
        return self.exit_module.engine.served_layers()

    def embed_vectors(self, layer_vectors: Tensor) -> Tensor:
        """``[L, N, d]`` -> what a sample stopped at each layer returns (before normalisation):
        the per-layer maps' images when the model has maps, else the vectors themselves."""
        maps = self.layer_maps
        return layer_vectors if maps is None else maps.apply_all(layer_vectors.float())

    def features(self, sentences: Sequence[str], prompt: str | None = None) -> dict[str, Any]:
        """Tokenised features of ``sentences`` on the model's device (for timing and tests)."""
        from sentence_transformers.util import batch_to_device

        return batch_to_device(self.preprocess(list(sentences), prompt=prompt), self.device)


def standardise_modules_json(path: str | os.PathLike) -> None:
    """Point ``modules.json``'s first module at the standard ``Transformer`` class."""
    from leap.files import write_text

    mj = Path(path) / "modules.json"
    modules = json.loads(mj.read_text(encoding="utf-8"))
    for m in modules:
        if m["type"].endswith(".ExitTransformer"):
            m["type"] = STANDARD_TRANSFORMER
    write_text(mj, json.dumps(modules, indent=2))


def check_device(device: str | None) -> str:
    """``device`` as torch takes it (None: ``cuda`` when a GPU is visible, else ``cpu``);
    a CUDA device on a machine without one is one clear error, not a traceback later."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        raise LeapError(f"device {device!r} is not a torch device; use cpu or cuda") from None
    if kind == "cuda" and not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "no GPU is visible"
        raise LeapError(f"device {device!r} asked for, but {why}; use --device cpu (or leave it unset)")
    return device


def load_exit_model(
    path_or_id: str | os.PathLike | ModelFolder,
    exit: ExitConfig | dict | None = None,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    backend: str = "torch",
    threads: int | None = None,
) -> ExitSentenceTransformer:
    """:class:`ExitSentenceTransformer` with a ``dtype``: ``float16`` / ``bfloat16`` are for
    GPUs (refused on the CPU), ONNX Runtime serves float32 only."""
    half = dtype not in (None, "float32", torch.float32)
    if half and backend != "torch":
        raise LeapError(f"backend {backend!r} runs on the CPU in float32; drop dtype")
    model = ExitSentenceTransformer(path_or_id, exit=exit, device=device, backend=backend, threads=threads)
    if dtype is not None:
        torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        if torch_dtype in (torch.float16, torch.bfloat16) and model.device.type == "cpu":
            raise LeapError(f"dtype {dtype} is for GPU inference; use float32 on CPU")
        model = model.to(torch_dtype)
    return model
