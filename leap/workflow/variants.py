"""Every model the paper trains (and the project's own), as configs (no torch here).

A variant is a set of overrides on the config's ``training`` section. The baseline, the
Table 11 ablation rows, the beta sweep and the fixed-depth student are all the ``leap``
objective with other configs; the comparison objectives are registered in
:mod:`leap.training.objectives`. :func:`make_train_config` resolves one run's
:class:`leap.training.config.TrainConfig`; the workflow resolves every run before any job starts.
"""

from __future__ import annotations

import copy
from typing import Any

from leap.core.settings import from_dict
from leap.errors import LeapError
from leap.training.config import PAPER_TERMS, TrainConfig

BASELINE_TERMS: tuple[str, ...] = ("final", "inter", "contrast")  # "our pipeline without L_exit"
# Table 11 ablation rows: (i) L_final; (ii) +L_inter; (iii) +L_contrast; (iv) +L_exit = full LEAP.
# Row (iii) has exactly the baseline's terms: it IS the baseline, and the tables say so.
ABLATION_TERMS: dict[str, tuple[str, ...]] = {
    "abl_final": ("final",),
    "abl_inter": ("final", "inter"),
    "abl_contrast": BASELINE_TERMS,
    "abl_exit": PAPER_TERMS,
}

VARIANTS: dict[str, dict[str, Any]] = {
    "leap": {"loss": {"terms": list(PAPER_TERMS)}},
    "baseline": {"loss": {"terms": list(BASELINE_TERMS)}},
    **{name: {"loss": {"terms": list(terms)}} for name, terms in ABLATION_TERMS.items()},
    **{f"beta{b}": {"loss": {"terms": list(PAPER_TERMS), "beta": b}, "sweep": True} for b in (0.1, 0.2, 0.4, 0.6, 0.8)},
    # fixed depth: round(E[exit layer]) layers (7 of 12 in the paper), baseline loss, uniform map
    "fixed_depth": {"loss": {"terms": list(BASELINE_TERMS), "layer_map": None, "late_layers": None}, "n_layers": 7},
    # Not in the paper: LEAP with the causes found at CPU scale fixed (results/cpu/exploration):
    # a softplus margin that does not saturate far below tau, a larger exit weight, no beta_s
    # ramp (every term on from the first step).
    "leap_fix": {
        "loss": {
            "terms": list(PAPER_TERMS),
            "exit_margin": "softplus",
            "exit_s_target": "final",
            "beta": 5.0,
            "progressive": None,
        }
    },
    # Not in the paper: every exit layer, through a per-layer map trained
    # with the student, distilled to the student's own final embedding (L_depth), and
    # cross-depth relational distillation (L_cross: a sentence at depth l against one at l'
    # scores as both at full depth), so that sentences exited at different depths stay
    # comparable. The raw layers, which the exit rule reads, are not pulled toward the final
    # one (L_late / L_exit made every sentence converge alike and the rule unselective in the
    # exploration). The maps are saved with the model and applied when a row exits.
    "leap_xd": {
        "layer_maps": "trained",
        "loss": {"terms": ["final", "contrast", "depth", "cross"], "depth_weight": 1.0, "cross_weight": 10.0},
    },
    # Not in the paper: an existing model exit-enabled by self-distillation:
    # the student starts from the model and its targets are the model's own final-layer
    # embeddings (a cache built with the init), so full-depth quality is kept while the exit
    # layers learn, through trained per-layer maps, to stand in for the final one (L_depth,
    # L_cross). No other model is needed: what a user with an embedding model in production does.
    "self_xd": {
        "teacher": "self",
        "layer_maps": "trained",
        "lr": 1e-4,
        # its own final layer is the only target: the uniform (identity) map, whatever the config's teacher map
        "loss": {"terms": ["final", "depth", "cross"], "depth_weight": 1.0, "cross_weight": 10.0, "layer_map": None},
    },
    "adaptive_layer": {"objective": "adaptive_layer", "loss": {"terms": ["final"]}},
    "layerskip": {"objective": "layerskip", "loss": {"terms": list(BASELINE_TERMS)}},
}
"""Overrides per named variant, applied on top of the config's ``training`` section.
``sweep: True`` variants also take the config's ``sweep`` overrides (less data, fewer steps)."""


def merge(base: dict, over: dict) -> dict:
    """Deep merge of config dicts (``over`` wins; nested dicts merge)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def variant_entry(variant: str, custom: dict[str, dict] | None = None) -> dict:
    """The registry entry of ``variant`` (or of a config's custom variant, on top of its ``base``)."""
    custom = custom or {}
    if variant in custom:
        spec = dict(custom[variant])
        base = spec.pop("base", "leap")
        if base not in VARIANTS:
            raise LeapError(f"custom variant {variant!r}: unknown base {base!r}; known: {', '.join(VARIANTS)}")
        return merge(VARIANTS[base], spec)
    if variant in VARIANTS:
        return copy.deepcopy(VARIANTS[variant])
    raise LeapError(
        f"unknown variant {variant!r}; known: {', '.join([*VARIANTS, *custom])} "
        f"(add one under custom_variants in the config)"
    )


def make_train_config(
    training: dict,
    variant: str,
    seed: int,
    variant_overrides: dict | None = None,
    sweep: dict | None = None,
    custom: dict[str, dict] | None = None,
) -> TrainConfig:
    """The resolved :class:`TrainConfig` of ``variant`` and ``seed``.

    Order: ``training`` <- registry entry (or ``custom[variant]``, whose ``base`` names a
    registry entry) <- ``sweep`` (sweep variants) <- ``variant_overrides``. Unknown variants,
    objectives and keys raise :class:`LeapError` naming them.
    """
    from leap.training.objectives import check_objective

    entry = variant_entry(variant, custom)
    spec = (custom or {}).get(variant, {})
    if "student" in spec and "n_layers" not in spec and training.get("n_layers") is not None:
        # a 12-layer init silently cut to the config's 6 layers is not what anyone means
        raise LeapError(
            f"custom variant {variant!r} sets student {spec['student']!r} but would inherit "
            f"training.n_layers {training['n_layers']} (a depth chosen for another init); set "
            f"n_layers in the variant: a number, or null for every layer of {spec['student']!r}"
        )
    is_sweep = entry.pop("sweep", False)
    cfg = merge(training, entry)
    if is_sweep and sweep:
        cfg = merge(cfg, sweep)
    if variant_overrides:
        cfg = merge(cfg, variant_overrides)
    cfg["seed"] = int(seed)
    out = from_dict(TrainConfig, cfg, f"variant {variant!r}")
    check_objective(out.objective)
    return out
