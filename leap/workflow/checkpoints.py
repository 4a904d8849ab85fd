"""How a checkpoint will be served, read from its files before any job loads it.

Early exit pools every layer with attention-mask-aware mean pooling (the paper's p_l), so a
checkpoint can be served when it is a sentence-transformers folder whose pooling is the
mean (a ``Normalize`` after it is fine), or a plain transformers checkpoint without a
sentence-transformers folder (``huawei-noah/TinyBERT_General_6L_768D``,
``distilbert-base-uncased``), which sentence-transformers loads with mean pooling added.
:func:`pooling_of` reads ``modules.json`` and the pooling module's ``config.json`` (from a
local folder, or from the local Hugging Face cache for a hub id; no weights, no torch) and
says which case holds, or refuses CLS / max / last-token pooling and extra modules in one
line. The workflow calls it on every published checkpoint while it plans, so a checkpoint
that cannot be served stops the run before its first job.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from leap.errors import LeapError

ST_FOLDER = "sentence-transformers folder, mean pooling"
PLAIN = "plain transformers checkpoint: sentence-transformers adds mean pooling"
NOT_CACHED = "hub id not in the local cache: its pooling is checked when a job loads it"
MODES = (
    "pooling_mode_cls_token",
    "pooling_mode_max_tokens",
    "pooling_mode_mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens",
    "pooling_mode_lasttoken",
)


def _hub_reader(repo: str) -> Callable[[str], str | None | bool]:
    """A reader of one file of a hub repository from the local cache: its text, ``None``
    when the cache does not know, ``False`` when the cache knows the file does not exist."""
    from huggingface_hub import try_to_load_from_cache

    def read(name: str) -> str | None | bool:
        try:
            got = try_to_load_from_cache(repo, name)
        except ValueError:  # not a valid hub id: loading it will say so
            return None
        if isinstance(got, str):
            return Path(got).read_text(encoding="utf-8")
        return None if got is None else False

    return read


def _folder_reader(folder: Path) -> Callable[[str], str | None | bool]:
    def read(name: str) -> str | bool:
        p = folder / name
        return p.read_text(encoding="utf-8") if p.is_file() else False

    return read


def check_modules(modules_json: str, read: Callable[[str], str | None | bool], name: str) -> str:
    """``modules.json`` of a sentence-transformers model -> :data:`ST_FOLDER`, or one error
    naming what cannot be served (``read(path)`` gives a file of the model)."""
    try:
        modules = json.loads(modules_json)
        kinds = [str(m["type"]).rsplit(".", 1)[-1] for m in modules]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise LeapError(f"{name}: modules.json is not a sentence-transformers module list") from None
    if len(kinds) < 2 or not kinds[0].endswith("Transformer") or kinds[1] != "Pooling":
        raise LeapError(f"{name}: expected a Transformer then a Pooling module, found {kinds}; it cannot be served")
    rest = [k for k in kinds[2:] if k != "Normalize"]
    if rest:
        raise LeapError(
            f"{name}: modules after pooling ({rest}) cannot be served; the exit embedding is the "
            "(normalised) mean-pooled layer output"
        )
    text = read(f"{modules[1].get('path', '1_Pooling')}/config.json")
    if isinstance(text, str):
        cfg = json.loads(text)
        other = [m for m in MODES if cfg.get(m)]
        mode = cfg.get("pooling_mode") or ("mean" if cfg.get("pooling_mode_mean_tokens") else None)
        if other or mode not in ("mean", None) or not cfg.get("pooling_mode_mean_tokens", mode == "mean"):
            found = other[0].removeprefix("pooling_mode_") if other else mode
            raise LeapError(
                f"{name}: pooling {found!r} cannot be served; early exit pools every layer with mean "
                "pooling (the paper's p_l); choose a mean-pooling checkpoint"
            )
    return ST_FOLDER


def pooling_of(ref: str) -> str:
    """How the model reference ``ref`` (a local folder, a hub id or ``packaged:...``) will be
    pooled: :data:`ST_FOLDER`, :data:`PLAIN` or :data:`NOT_CACHED`; a :class:`LeapError`
    naming the pooling when it cannot be served."""
    from leap.serving.sources import PACKAGED_PREFIX

    if ref.startswith(PACKAGED_PREFIX):
        return ST_FOLDER  # all-MiniLM-L6-v2: mean pooling, then Normalize
    folder = Path(ref).expanduser()
    read = _folder_reader(folder) if folder.is_dir() else _hub_reader(ref)
    modules = read("modules.json")
    if isinstance(modules, str):
        return check_modules(modules, read, ref)
    if modules is None:
        return NOT_CACHED
    if folder.is_dir() and read("config.json") is False:
        raise LeapError(f"{ref!r} is not a model folder (no modules.json or config.json)")
    return PLAIN
