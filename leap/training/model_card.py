"""Model cards of exit-enabled models: what the model is, how it was trained, how it exits,
and (when evaluated) its frontier row. Written as ``README.md`` with the Hub's YAML front
matter (``library_name: sentence-transformers``), replacing sentence-transformers' generic
card, whose dataset table would list cache row indices as labels."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from leap.files import write_text

NOT_EVALUATED = ["Not evaluated yet: the workflow's `model_card` rule adds the STS-B frontier row here."]


def card_text(info: dict[str, Any], evaluation: list[str] | None = None) -> str:
    """The card of a trained student (``info``: its ``train_config.json``; ``evaluation``: the
    Markdown lines of its frontier row, if it has been evaluated)."""
    loss = info.get("loss", {})
    exit = info.get("exit", {})
    front = {
        "library_name": "sentence-transformers",
        "pipeline_tag": "sentence-similarity",
        "tags": ["sentence-transformers", "early-exit", "leap", "feature-extraction"],
        "base_model": str(info.get("student")),
    }
    lines = [
        "---",
        yaml.safe_dump(front, sort_keys=False).strip(),
        "---",
        "",
        f"# Exit-enabled student: {info.get('objective', 'leap')} objective",
        "",
        "A sentence-transformers model that can leave the network early (LEAP, ACL 2026, Algorithm 1). "
        "Load it with `leap.ExitSentenceTransformer(path)` to serve early exit; plain "
        "`SentenceTransformer(path)` loads it at full depth.",
        "",
        "## Training",
        "",
        f"- Base model (initialisation): `{info.get('student')}`, {info.get('student_layers')} layers",
        f"- Teacher: `{info.get('teacher')}` (distillation targets from a cache of its pooled layers "
        f"{info.get('teacher_layers_read')})",
        f"- Objective: `{info.get('objective')}`, terms {', '.join(loss.get('terms', []))}; "
        f"alpha {loss.get('alpha')}, beta {loss.get('beta')}, delta {loss.get('delta')}, "
        f"exit margin {loss.get('exit_margin')}",
        f"- Per-layer maps into the last layer's space: {info.get('layer_maps') or 'none'}"
        f"{' (saved, applied at exit)' if info.get('layer_maps_saved') else ''}",
        f"- Data: {info.get('n_train')} training sentences; {info.get('steps')} steps of batch "
        f"{info.get('batch_size')}, lr {info.get('lr')}, seed {info.get('seed')}, max length "
        f"{info.get('max_seq_length')} while training",
        "",
        "## Exit rule (`leap_exit.json`)",
        "",
        f"- strategy `{exit.get('strategy')}`, theta {exit.get('theta')}, patience {exit.get('patience')}, "
        f"l_min {exit.get('min_layer')}",
        "",
        "## Frontier row (STS-B test)",
        "",
        *(evaluation or NOT_EVALUATED),
        "",
        "## Usage",
        "",
        "```python",
        "from leap import ExitSentenceTransformer",
        "",
        'model = ExitSentenceTransformer("path/to/this/folder")',
        'out = model.encode(["A man is playing a guitar."], output_value=None)',
        'print(out[0]["exit_layer"])',
        "```",
        "",
    ]
    return "\n".join(lines)


def write_model_card(
    folder: str | os.PathLike,
    info: dict[str, Any],
    evaluation: list[str] | None = None,
    out: str | os.PathLike | None = None,
) -> Path:
    """Write the card as ``folder/README.md`` (or ``out``)."""
    path = Path(out) if out is not None else Path(folder) / "README.md"
    write_text(path, card_text(info, evaluation))
    return path
