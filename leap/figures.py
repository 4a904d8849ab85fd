"""The paper's figures (seaborn, PNG + PDF) from the evaluation JSONs.

- Fig. 1: (a) similarity to final per layer, baseline vs LEAP, threshold drawn; (b) inter-layer stability.
- Fig. 2: exit distribution per layer at theta with the cumulative curve.
- Fig. 3: Pareto: layer reduction and STS-B across theta.
- Fig. 4: (a) contraction ratios with the median; (b) final-aligned displacement.
- Fig. 5: NN@10 failure rate per layer.

A figure whose runs are missing is skipped with a message naming them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import numpy as np

from leap.files import atomic_path, write_json
from leap.tables import _mean_list, _runs, _split, collect, extra_variants, table5_pareto


def _save(fig, out: Path, name: str) -> None:
    for ext in ("png", "pdf"):
        with atomic_path(out / f"{name}.{ext}", suffix=f".{ext}") as tmp:
            fig.savefig(tmp, format=ext, dpi=200 if ext == "png" else None, bbox_inches="tight")


def _layers(res: dict, v: str, key: str) -> list | None:
    runs = _runs(res, v, "layers")
    return _mean_list([r[key] for r in runs]) if runs else None


def build_figures(eval_paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike, theta: float = 0.95,
                  log=print) -> dict[str, str]:
    """Write every figure whose inputs exist; returns ``{figure: written | skipped: why}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
    res = collect(eval_paths)
    out = Path(out_dir)
    status: dict[str, str] = {}
    variants = [v for v in ("baseline", "leap", *extra_variants(res)) if _runs(res, v, "layers")]

    def skip(name: str, why: str) -> None:
        status[name] = f"skipped: {why}"
        log(f"{name}: skipped: {why}")

    def done(fig, name: str) -> None:
        _save(fig, out, name)
        plt.close(fig)
        status[name] = "written"

    # Fig 1
    if variants:
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
        for v in variants:
            sim = _layers(res, v, "similarity_to_final")
            stab = _layers(res, v, "stability")
            xs = np.arange(1, len(sim) + 1)
            ax[0].plot(xs, sim, marker="o", label=v)
            ax[1].plot(xs[1:], [np.nan if s is None else s for s in stab[1:]], marker="o", label=v)
        ax[0].axhline(theta, color="k", ls="--", lw=1, label=f"theta={theta}")
        ax[0].set(xlabel="Layer", ylabel="cos(p_l, p_L)", title="(a) Similarity to final layer")
        ax[1].set(xlabel="Layer", ylabel="cos(p_l, p_{l-1})", title="(b) Inter-layer stability")
        ax[0].legend()
        done(fig, "fig1_layer_dynamics")
    else:
        skip("fig1_layer_dynamics", "no layers.json for baseline or leap")

    # Fig 2: one panel per exit objective (LEAP, then any extra variant)
    exiting = [(v, [_split(r) for r in _runs(res, v, "stsb")]) for v in ("leap", *extra_variants(res))]
    exiting = [(v, runs) for v, runs in exiting if runs]
    if exiting:
        fig, axes = plt.subplots(1, len(exiting), figsize=(5 * len(exiting), 3.4), squeeze=False)
        for ax, (v, runs) in zip(axes[0], exiting):
            dist = _mean_list([r["exit_distribution"] for r in runs])
            cum = np.cumsum(dist)
            xs = np.arange(1, len(dist) + 1)
            sns.barplot(x=xs, y=np.asarray(dist) * 100, ax=ax, color="C0")
            ax.plot(xs - 1, cum * 100, color="C3", marker="o", label="cumulative")
            ax.set(xlabel="Exit layer", ylabel="% of sentences", title=f"{v} exit distribution (theta={theta})", ylim=(0, 105))
            ax.legend()
        done(fig, "fig2_exit_distribution")
    else:
        skip("fig2_exit_distribution", "no stsb.json for leap")

    # Fig 3
    par = table5_pareto(res)
    if par is not None:
        fig, ax = plt.subplots(figsize=(5, 3.4))
        ax.plot(par["Layer Red."], par["STS-B"], marker="o")
        for _, r in par.iterrows():
            ax.annotate(f"{r['theta']:.2f}", (r["Layer Red."], r["STS-B"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set(xlabel="Layer reduction L / E[l]", ylabel="STS-B Spearman (exit)", title="Pareto over theta (LEAP)")
        done(fig, "fig3_pareto")
    else:
        skip("fig3_pareto", "no stsb.json for leap")

    # Fig 4
    if variants:
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
        for v in variants:
            cr = _layers(res, v, "contraction_ratios")
            disp = _layers(res, v, "final_aligned_displacement")
            xs = np.arange(1, len(cr) + 1)
            line = ax[0].plot(xs, [np.nan if c is None else c for c in cr], marker="o", label=v)[0]
            med = float(np.nanmedian([np.nan if c is None else c for c in cr]))
            ax[0].axhline(med, color=line.get_color(), ls=":", lw=1)
            ax[1].plot(xs, [np.nan if d is None else d for d in disp], marker="o", label=v)
        ax[0].axhline(1.0, color="k", ls="--", lw=1)
        ax[0].set(xlabel="Layer", ylabel="gamma_l", title="(a) Contraction ratio (dotted: median)")
        ax[1].set(xlabel="Layer", ylabel="cos(p_{l+1}-p_l, p_L-p_l)", title="(b) Final-aligned displacement")
        ax[0].legend()
        done(fig, "fig4_contraction")
    else:
        skip("fig4_contraction", "no layers.json for baseline or leap")

    # Fig 5
    if "leap" in variants:
        fail = _layers(res, "leap", "nn_failure_rate")
        fig, ax = plt.subplots(figsize=(5, 3.4))
        xs = np.arange(1, len(fail) + 1)
        sns.barplot(x=xs, y=np.asarray(fail) * 100, ax=ax, color="C1")
        ax.set(xlabel="Exit layer", ylabel="NN@10 failure (%)", title="NN@10 failure (overlap < 0.5), LEAP")
        done(fig, "fig5_nn_failure")
    else:
        skip("fig5_nn_failure", "no layers.json for leap")
    write_json(out / "index.json", status)
    return status
