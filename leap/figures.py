"""The paper's figures (seaborn, PNG + PDF) from the evaluation JSONs.

- Fig. 1: (a) similarity to final per layer, baseline vs LEAP, threshold drawn; (b) inter-layer stability.
- Fig. 2: exit distribution per layer at theta with the cumulative curve.
- Fig. 3 (replaces the paper's single-model Pareto plot): the frontier, one figure per
  benchmark: quality against layer reduction L / E[l] for every model's exit rules over
  their sweeps (solid), its static truncation (dashed), the config's rule (a large marker),
  the fixed-depth student; and quality against measured speedup at batch 1 and 32 where
  the latency stage timed the point.
- Fig. 4: (a) contraction ratios with the median; (b) final-aligned displacement.
- Fig. 5: NN@10 failure rate per layer.

A figure whose runs are missing is skipped with a message naming them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from leap.files import atomic_path, write_json
from leap.frontier_tables import frontier_table
from leap.results import collect, extra_variants, frontier_figure_name, mean_list, report_items, runs, split_of

log = logging.getLogger(__name__)


def _save(fig, out: Path, name: str) -> None:
    for ext in ("png", "pdf"):
        with atomic_path(out / f"{name}.{ext}", suffix=f".{ext}") as tmp:
            fig.savefig(tmp, format=ext, dpi=200 if ext == "png" else None, bbox_inches="tight")


def _save_note(out: Path, name: str, text: str) -> None:
    """A figure that says why it has no data (its file always exists, so the report lists it)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 1.5))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)
    _save(fig, out, name)
    plt.close(fig)


def _layers(res: dict, v: str, key: str) -> list | None:
    rs = runs(res, v, "layers")
    return mean_list([r[key] for r in rs]) if rs else None


def frontier_figure(df, bench: str):
    """Quality against layer reduction and against measured speedup (batch 1, 32) for every
    model on one benchmark; truncation dashed, the config's rule marked large."""
    import matplotlib.pyplot as plt

    d = df[df["benchmark"] == bench]
    models = [m for m in dict.fromkeys(d["model"]) if m != "fixed_depth"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    palette = plt.get_cmap("tab10" if len(models) <= 10 else "tab20").colors
    colors = {m: palette[i % len(palette)] for i, m in enumerate(models)}
    for m in models:
        g = d[d["model"] == m]
        c = colors[m]
        tr = g[g["rule"] == "truncation"].sort_values("layer_reduction")
        axes[0].plot(tr["layer_reduction"], tr["quality"], ls="--", color=c, lw=1, marker=".", alpha=0.8)
        for rule, style in (
            ("convergence", "-o"),
            ("common_depth", "-D"),
            ("pabee", ":^"),
            ("deebert", "-.s"),
            ("oracle", ":x"),
        ):
            pts = g[(g["rule"] == rule) & ~g["at_config"]].sort_values("layer_reduction")
            if len(pts):
                axes[0].plot(
                    pts["layer_reduction"],
                    pts["quality"],
                    style,
                    color=c,
                    ms=3,
                    lw=1,
                )
        at = g[g["at_config"]]
        axes[0].scatter(at["layer_reduction"], at["quality"], s=90, color=c, edgecolor="k", zorder=5)
        for ax, col in ((axes[1], "speedup_b1"), (axes[2], "speedup_b32")):
            trs = tr.dropna(subset=[col]).sort_values(col)
            if len(trs):
                ax.plot(trs[col], trs["quality"], ls="--", color=c, lw=1, marker=".")
            ats = at.dropna(subset=[col])
            if len(ats):
                ax.scatter(ats[col], ats["quality"], s=90, color=c, edgecolor="k", zorder=5)
    fixed = d[(d["model"] == "fixed_depth") & (d["rule"] == "fixed_depth")]  # its point beside the baseline
    if len(fixed):
        axes[0].scatter(fixed["layer_reduction"], fixed["quality"], marker="*", s=160, color="k")
    axes[0].set(
        xlabel="Layer reduction L / E[l]",
        ylabel=f"{bench} quality",
        title=f"(a) {bench}: exit (solid) vs truncation (dashed)",
    )
    axes[1].set(xlabel="Measured speedup, batch 1", title="(b) batch 1")
    axes[2].set(xlabel="Measured speedup, batch 32", title="(c) batch 32")
    # one legend below the panels: a colour per model, a marker per rule (the per-line
    # labels of a dozen models would cover panel (a))
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colors[m], lw=2, label=m) for m in models]
    handles += [
        Line2D([], [], color="0.3", ls=ls, marker=mk, ms=4, lw=1, label=label)
        for ls, mk, label in (
            ("-", "o", "convergence exit"),
            ("-", "D", "common-depth scoring"),
            (":", "^", "PABEE"),
            ("-.", "s", "DeeBERT heads"),
            (":", "x", "oracle (exit ceiling, not deployable)"),
            ("--", ".", "truncation at layer l"),
        )
    ]
    handles.append(Line2D([], [], ls="", marker="o", ms=9, mfc="0.8", mec="k", label="the config's theta"))
    if len(fixed):
        handles.append(Line2D([], [], ls="", marker="*", ms=12, color="k", label="fixed-depth student"))
    fig.tight_layout()
    # below the figure: the saved file's tight bounding box takes it in
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=5, fontsize=8, frameon=False)
    return fig


def build_frontier_figures(
    eval_paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike, benchmarks: Iterable[str] = ()
) -> dict[str, str]:
    """Fig. 3, one frontier figure per benchmark (``fig3_frontier_<benchmark>.png/.pdf``),
    and ``frontier.json`` listing them; every benchmark in ``benchmarks`` gets a figure (one
    that says so when no evaluation of the run carries its frontier)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
    out = Path(out_dir)
    df = frontier_table(collect(eval_paths))
    status: dict[str, str] = {}
    have = list(dict.fromkeys(df["benchmark"])) if df is not None else []
    for bench in dict.fromkeys([*benchmarks, *have]):
        name = frontier_figure_name(bench)
        if bench in have:
            fig = frontier_figure(df, bench)
            _save(fig, out, name)
            plt.close(fig)
            status[name] = "written"
        else:
            status[name] = "skipped: no evaluation carries its frontier"
            _save_note(out, name, f"{bench}: no evaluation of this run carries a frontier")
    write_json(out / "frontier.json", status)
    return status


FIGURE_BUILDERS: dict[str, Any] = {}
"""``name -> builder(results, theta) -> (figure or None, why it was skipped)``; the figures
themselves are listed in ``leap/resources/report_items.yaml``."""


def figure(name: str) -> Any:
    """Register a figure builder under ``name``."""

    def register(fn: Any) -> Any:
        FIGURE_BUILDERS[name] = fn
        return fn

    return register


def _integer_layers(axes: Any) -> None:
    """Layer axes show whole layers only (no 1.5, 2.5 ticks)."""
    from matplotlib.ticker import MaxNLocator

    for ax in np.ravel(axes):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _nan_for_none(values: list) -> list[float]:
    """A per-layer list with undefined values (``None``) as NaN, which matplotlib leaves out."""
    return [np.nan if x is None else x for x in values]


def _layer_variants(res: dict) -> list[str]:
    return [v for v in ("baseline", "leap", *extra_variants(res)) if runs(res, v, "layers")]


@figure("fig1_layer_dynamics")
def fig1_layer_dynamics(res: dict, theta: float) -> tuple[Any, str]:
    """Fig. 1: similarity to the final layer and inter-layer stability, per layer."""
    import matplotlib.pyplot as plt

    variants = _layer_variants(res)
    if not variants:
        return None, "no layers.json for baseline or leap"
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    for v in variants:
        sim = _layers(res, v, "similarity_to_final")
        stab = _layers(res, v, "stability")
        xs = np.arange(1, len(sim) + 1)
        ax[0].plot(xs, sim, marker="o", label=v)
        ax[1].plot(xs[1:], _nan_for_none(stab[1:]), marker="o", label=v)
    ax[0].axhline(theta, color="k", ls="--", lw=1, label=f"theta={theta}")
    ax[0].set(xlabel="Layer", ylabel="cos(p_l, p_L)", title="(a) Similarity to final layer")
    ax[1].set(xlabel="Layer", ylabel="cos(p_l, p_{l-1})", title="(b) Inter-layer stability")
    _integer_layers(ax)
    ax[0].legend(loc="upper left", fontsize=8)
    return fig, ""


@figure("fig2_exit_distribution")
def fig2_exit_distribution(res: dict, theta: float) -> tuple[Any, str]:
    """Fig. 2: the exit-layer distribution, one panel per exit objective (LEAP, then extras)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    exiting = [(v, [split_of(r) for r in runs(res, v, "stsb")]) for v in ("leap", *extra_variants(res))]
    exiting = [(v, rs) for v, rs in exiting if rs]
    if not exiting:
        return None, "no stsb.json for leap"
    fig, axes = plt.subplots(1, len(exiting), figsize=(5 * len(exiting), 3.4), squeeze=False)
    for ax, (v, rs) in zip(axes[0], exiting):
        dist = mean_list([r["exit_distribution"] for r in rs])
        xs = np.arange(1, len(dist) + 1)
        sns.barplot(x=xs, y=np.asarray(dist) * 100, ax=ax, color="C0")
        ax.plot(xs - 1, np.cumsum(dist) * 100, color="C3", marker="o", label="cumulative")
        ax.set(
            xlabel="Exit layer", ylabel="% of sentences", title=f"{v} exit distribution (theta={theta})", ylim=(0, 105)
        )
        ax.legend()
    return fig, ""


@figure("fig4_contraction")
def fig4_contraction(res: dict, theta: float) -> tuple[Any, str]:
    """Fig. 4: contraction ratios (paper Eq. 2) and final-aligned displacement, per layer."""
    import matplotlib.pyplot as plt

    variants = _layer_variants(res)
    if not variants:
        return None, "no layers.json for baseline or leap"
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    for v in variants:
        cr = _layers(res, v, "contraction_ratios")
        disp = _layers(res, v, "final_aligned_displacement")
        xs = np.arange(1, len(cr) + 1)
        line = ax[0].plot(xs, _nan_for_none(cr), marker="o", label=v)[0]
        ax[0].axhline(float(np.nanmedian(_nan_for_none(cr))), color=line.get_color(), ls=":", lw=1)
        ax[1].plot(xs, _nan_for_none(disp), marker="o", label=v)
    ax[0].axhline(1.0, color="k", ls="--", lw=1)
    ax[0].set(xlabel="Layer", ylabel="gamma_l", title="(a) Contraction ratio (dotted: median)")
    ax[1].set(xlabel="Layer", ylabel="cos(p_{l+1}-p_l, p_L-p_l)", title="(b) Final-aligned displacement")
    _integer_layers(ax)
    ax[0].legend(loc="upper left", fontsize=8)
    return fig, ""


@figure("fig5_nn_failure")
def fig5_nn_failure(res: dict, theta: float) -> tuple[Any, str]:
    """Fig. 5: NN@10 failure rate (overlap < 0.5) per layer, LEAP."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if "leap" not in _layer_variants(res):
        return None, "no layers.json for leap"
    fail = _layers(res, "leap", "nn_failure_rate")
    fig, ax = plt.subplots(figsize=(5, 3.4))
    sns.barplot(x=np.arange(1, len(fail) + 1), y=np.asarray(fail) * 100, ax=ax, color="C1")
    ax.set(xlabel="Exit layer", ylabel="NN@10 failure (%)", title="NN@10 failure (overlap < 0.5), LEAP")
    return fig, ""


def build_figures(
    eval_paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike, theta: float = 0.95
) -> dict[str, str]:
    """Write every figure of the report items whose inputs exist (a figure saying why for the
    others); returns ``{figure: written | skipped: why}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
    res = collect(eval_paths)
    out = Path(out_dir)
    status: dict[str, str] = {}
    for item in report_items()["figures"]:
        fig, why = FIGURE_BUILDERS[item.name](res, theta)
        if fig is None:
            status[item.name] = f"skipped: {why}"
            log.info("%s: skipped: %s", item.name, why)
            _save_note(out, item.name, f"not run in this configuration: {why}")
            continue
        _save(fig, out, item.name)
        plt.close(fig)
        status[item.name] = "written"
    write_json(out / "index.json", status)
    return status
