"""An exit-enabled model is a SentenceTransformer (issue "sentence-transformers module").

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
from leap.core.exit_config import ExitConfig, read_serving
from leap.core.layer_maps import LayerMaps
from leap.errors import LeapError
from leap.serving.encoder import BatchResult, ExitEncoder, ExitEncoderMethods, check_texts, encode_rows, length_batches

log = logging.getLogger(__name__)

ONNX_BACKENDS = ("onnx", "onnx-int8")  # leap.core.exit_config.SERVING_BACKENDS without torch
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


def resolve_source(path_or_id: str | os.PathLike) -> str:
    """A model reference -> what ``SentenceTransformer`` loads: ``packaged:all-MiniLM-L6-v2``
    is resolved, a local folder is checked, anything else must look like a hub id."""
    from leap.serving.sources import resolve_model_ref

    ref = resolve_model_ref(str(path_or_id))
    p = Path(os.path.expanduser(ref))
    if p.exists():
        if not p.is_dir():
            raise LeapError(f"model path {str(path_or_id)!r} is a file; pass the model's folder")
        if not (p / "config.json").exists() and not (p / "modules.json").exists():
            raise LeapError(
                f"{str(path_or_id)!r} is not a model folder (no modules.json or config.json); pass a "
                "SentenceTransformer or transformers folder, or a Hugging Face Hub id"
            )
        return str(p)
    if not _HUB_ID.match(ref) or ref.startswith((".", "/", "~")):
        raise LeapError(f"model folder {str(path_or_id)!r} does not exist; pass an existing folder or a hub id")
    return ref


def load_sentence_transformer(
    path_or_id: str | os.PathLike, device: str | None = None, cls: type = SentenceTransformer, **kwargs: Any
) -> Any:
    """``cls(source)`` with a one-line :class:`LeapError` when the folder or hub id cannot be loaded."""
    source = resolve_source(path_or_id)
    try:
        return cls(source, device=device, **kwargs)
    except LeapError:
        raise
    except (OSError, ValueError, RuntimeError) as err:  # hub unreachable, unknown repo, bad files
        local = Path(source).exists()
        where = "the local folder" if local else "the Hugging Face Hub"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = (
            " No local folder of that name exists either; pass a local model folder, or allow network "
            "access (HF_HUB_OFFLINE is set)"
            if os.environ.get("HF_HUB_OFFLINE") == "1" and not local
            else ""
        )
        raise LeapError(f"could not load model {str(path_or_id)!r} from {where}: {first}.{hint}") from None


class ExitSentenceTransformer(ExitEncoderMethods, SentenceTransformer):
    """A ``SentenceTransformer`` that serves early exit (paper Algorithm 1).

    Args:
        model_name_or_path: a SentenceTransformer folder (exit-enabled or not), a plain
            transformers folder (mean pooling), a hub id, or ``packaged:all-MiniLM-L6-v2``.
        exit: the exit rule (an :class:`ExitConfig` or its dict); default: the folder's
            ``leap_exit.json``, else ``ExitConfig()`` (theta 0.95, k 1, l_min from the depth).
        layer_maps: per-layer maps; default: the folder's ``layer_maps.safetensors``, if any.
        backend: ``"torch"``; ``"onnx"`` or ``"onnx-int8"`` serve the same rule on ONNX
            Runtime over the folder's ``leap export`` segments and return a
            :class:`leap.serving.onnx_runtime.OnnxExitModel` (same encode methods and arguments).
            Default: the path ``leap calibrate --paths auto`` chose for the folder, else torch.
        **kwargs: anything ``SentenceTransformer`` takes (``device``, ``model_kwargs``, ...).
            ``trust_remote_code`` is refused: a model that needs it cannot be served here.

    Every ``encode``-family call accepts ``exit=`` (an :class:`ExitConfig` or dict) for that
    call only. ``encode(..., output_value=None)`` gives each row's ``exit_layer``;
    :meth:`encode_with_exit_layers` gives embeddings and exit layers as two arrays.
    """

    def __new__(cls, model_name_or_path: str | os.PathLike | None = None, *args: Any, **kwargs: Any):
        backend, threads = kwargs.get("backend"), None
        if backend is None:  # the path `leap calibrate --paths auto` chose, else torch
            backend, threads = served_backend(model_name_or_path, kwargs.get("device"))
        if backend in ONNX_BACKENDS:  # sentence-transformers' spelling, this project's ONNX exit path
            exit, device = kwargs.get("exit"), kwargs.get("device")
            return load_exit_model(model_name_or_path, exit=exit, device=device, backend=backend, threads=threads)
        return super().__new__(cls)

    def __init__(
        self,
        model_name_or_path: str | os.PathLike | None = None,
        *args: Any,
        exit: ExitConfig | dict | None = None,
        layer_maps: LayerMaps | None = None,
        backend: str | None = None,
        **kwargs: Any,
    ) -> None:
        if backend not in (None, "torch"):
            raise LeapError(f"backend must be 'torch', 'onnx' or 'onnx-int8', got {backend!r}")
        if kwargs.get("trust_remote_code"):
            raise LeapError("trust_remote_code is not supported: LEAP serves only models that load without it")
        if model_name_or_path is None:
            raise LeapError("ExitSentenceTransformer needs a model folder or hub id")
        source = resolve_source(model_name_or_path)
        super().__init__(source, *args, **kwargs)
        name = str(model_name_or_path)
        check_servable(self, name)
        local = Path(source) if Path(source).is_dir() else None
        if isinstance(exit, dict):
            exit = ExitConfig.from_dict(exit)
        cfg = exit or (ExitConfig.load(local) if local else None) or ExitConfig()
        maps = layer_maps if layer_maps is not None else (LayerMaps.load(local) if local else None)
        self[0] = ExitTransformer.from_transformer(self[0], cfg, maps)
        self.source = name
        if not self.model_card_data.model_name:  # what MTEB's ModelMeta reads as the model's name
            hub_like = "/" in name and not Path(name).exists()
            self.model_card_data.model_name = name if hub_like else f"leap-exit/{Path(source).name}"
        self.eval()  # inference model: no dropout (encode() does the same)

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
        ``SentenceTransformer(path)`` loads it at full depth."""
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

        ``layers`` (1-based) keeps only those layers (``[len(layers), N, d]``); ``on_batch(n)``
        is called after each batch of ``n`` sentences (progress bars).
        """
        sents = check_texts(sentences)
        self.eval()
        sel = torch.as_tensor([l - 1 for l in layers]) if layers is not None else torch.arange(self.num_layers)
        out = torch.zeros(len(sel), len(sents), self.get_embedding_dimension())
        for idx in length_batches(sents, batch_size) if sents else []:
            feats = self.features([sents[i] for i in idx])
            v = layers_forward(self.exit_module.model, feats["input_ids"], feats["attention_mask"])
            out[:, torch.as_tensor(idx)] = v[sel.to(v.device)].float().cpu()
            if on_batch is not None:
                on_batch(len(idx))
        return out

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


def served_backend(path_or_id: Any, device: str | None = None) -> tuple[str, int | None]:
    """``(backend, threads)`` a local folder was calibrated to serve (``leap calibrate --paths
    auto``), or ``("torch", None)``: for a hub id, an uncalibrated folder, or a ``device``
    other than the CPU (ONNX Runtime serves here on the CPU only)."""
    if path_or_id is None or device not in (None, "cpu") or not Path(str(path_or_id)).is_dir():
        return "torch", None
    rec = read_serving(path_or_id)
    return (rec["backend"], rec.get("threads")) if rec else ("torch", None)


def load_exit_model(
    path_or_id: str | os.PathLike,
    exit: ExitConfig | dict | None = None,
    device: str | None = None,
    dtype: str | torch.dtype | None = None,
    backend: str | None = None,
    threads: int | None = None,
) -> ExitEncoder:
    """An exit encoder (:class:`leap.serving.encoder.ExitEncoder`) with one-line errors.

    ``backend="torch"``: an :class:`ExitSentenceTransformer`; ``dtype`` ``float16`` /
    ``bfloat16`` is for GPUs (refused on CPU). ``backend="onnx"`` (or ``"onnx-int8"``)
    serves the same rule on ONNX Runtime over the folder's ``leap export`` segments: a
    :class:`leap.serving.onnx_runtime.OnnxExitModel` (CPU, float32 in and out; ``threads`` sets its
    intra-op threads). ``backend=None`` (default): the path ``leap calibrate --paths auto``
    chose for the folder (backend and threads; :func:`leap.core.exit_config.read_serving`), else torch;
    a ``device`` or 16-bit ``dtype`` ONNX Runtime cannot serve keeps torch.
    """
    if backend is None:
        gpu = dtype not in (None, "float32", torch.float32)
        backend, served_threads = served_backend(path_or_id, "cuda" if gpu else device)
        threads = threads if threads is not None else served_threads
    if backend in ONNX_BACKENDS:
        if device not in (None, "cpu") or dtype not in (None, "float32", torch.float32):
            raise LeapError(f"backend {backend!r} runs on the CPU in float32; drop device/dtype")
        from leap.serving.onnx_runtime import OnnxExitModel  # the optional engine: onnxruntime is imported there

        rule = ExitConfig.from_dict(exit) if isinstance(exit, dict) else exit
        return OnnxExitModel(resolve_source(path_or_id), exit=rule, int8=backend == "onnx-int8", threads=threads)
    if backend != "torch":
        raise LeapError(f"backend must be 'torch', 'onnx' or 'onnx-int8', got {backend!r}")
    dev = check_device(device)
    model = load_sentence_transformer(path_or_id, device=dev, cls=ExitSentenceTransformer, exit=exit, backend="torch")
    if dtype is not None:
        torch_dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
        if torch_dtype in (torch.float16, torch.bfloat16) and torch.device(dev).type == "cpu":
            raise LeapError(f"dtype {dtype} is for GPU inference; use float32 on CPU")
        model = model.to(torch_dtype)
    return model
