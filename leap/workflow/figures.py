"""The paper's figures (seaborn, PNG + PDF) from the evaluation JSONs.

- Fig. 1: (a) similarity to final per layer, baseline vs LEAP, threshold drawn; (b) inter-layer stability.
- Fig. 2: exit distribution per layer at theta with the cumulative curve.
- Fig. 3 (replaces the paper's single-model Pareto plot): the frontier, one figure per
  benchmark, one panel per model: quality against layer reduction L / E[l] for its exit
  rules over their sweeps (solid), its static truncation (dashed), the config's rule
  (ringed), the fixed-depth student; on STS-B, for the models the serving-paths stage
  timed, Spearman against measured ms/sentence on torch and ONNX Runtime int8 (full depth,
  cuts, exit).
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

from leap.deploy.serving_paths import PathsResult
from leap.files import atomic_path, write_json
from leap.workflow.frontier_tables import frontier_table
from leap.workflow.records import layer_runs, pair_splits
from leap.workflow.results import collect, extra_variants, frontier_figure_name, report_items, runs

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
    rs = layer_runs(res, v)
    return rs.mean_list(lambda r: r.series(key)) if rs else None


RULE_STYLES = (  # rule -> (line style, marker, colour, legend label) in the frontier figure
    ("truncation", "--", ".", "0.45", "truncation at layer l"),
    ("convergence", "-", "o", "C0", "convergence exit"),
    ("common_depth", "-", "D", "C1", "common-depth scoring"),
    ("pabee", ":", "^", "C2", "PABEE"),
    ("deebert", "-.", "s", "C3", "DeeBERT heads"),
    ("oracle", ":", "x", "C4", "oracle (exit ceiling, not deployable)"),
)
SPEED_STYLES = (  # (backend, kind) -> style of the serving-path panels
    ("torch", "cut", "--", "s", "0.45", "torch: full depth and cuts"),
    ("onnx-int8", "cut", "--", "s", "C2", "ONNX Runtime int8: full depth and cuts"),
    ("torch", "exit", "", "o", "C0", "torch: exit (theta sweep)"),
    ("onnx-int8", "exit", "", "o", "C3", "ONNX Runtime int8: exit (theta sweep)"),
)


def _reduction_axis(ax: Any, top: float) -> None:
    """Layer reduction on a log axis with readable ticks (1x, 1.5x, 2x, 3x, ...)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    ax.set_xscale("log")
    ticks = [t for t in (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24) if t <= max(top, 1.5) * 1.05]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}x"))


def _layer_panel(ax: Any, g: Any, fixed: Any) -> None:
    """One model's frontier: every rule over its sweep against layer reduction."""
    for rule, ls, marker, color, _ in RULE_STYLES:
        pts = g[(g["rule"] == rule) & (~g["at_config"] | (rule == "truncation"))].sort_values("layer_reduction")
        if len(pts):
            ax.plot(pts["layer_reduction"], pts["quality"], ls=ls, marker=marker, color=color, ms=3, lw=1)
    at = g[g["at_config"] & (g["rule"] != "truncation")]
    ax.scatter(at["layer_reduction"], at["quality"], s=90, facecolor="none", edgecolor="k", lw=1.5, zorder=5)
    if fixed is not None and len(fixed):
        ax.scatter(fixed["layer_reduction"], fixed["quality"], marker="*", s=160, color="k", zorder=6)


def log_ms_axis(ax: Any) -> None:
    """A log x axis of milliseconds labelled 1, 2, 5, 10, 20, ... (no overlapping minor labels)."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))


def _speed_panel(ax: Any, paths: list[dict], batch_size: int) -> None:
    """One model's serving paths: STS-B dev Spearman against measured ms/sentence."""
    key = f"ms_b{batch_size}"
    for backend, kind, ls, marker, color, _ in SPEED_STYLES:
        pts = sorted(
            (p for p in paths if p["backend"] == backend and (p["kind"] == "exit") == (kind == "exit")),
            key=lambda p: p[key],
        )
        if pts:
            ax.plot([p[key] for p in pts], [p["spearman"] for p in pts], ls=ls, marker=marker, color=color, ms=3, lw=1)
    log_ms_axis(ax)


def frontier_figure(df, bench: str, serving: dict[str, dict] | None = None):
    """One panel per model: quality against layer reduction L / E[l] for every exit rule over
    its sweep, static truncation dashed, the config's rule ringed, the fixed-depth student
    starred in the baseline's panel; then, for the models the serving-paths stage timed (its
    STS-B dev sample), Spearman against measured ms/sentence at batch 1 on torch and ONNX
    Runtime int8, so that quantisation and cuts sit on the same axes as exit."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    d = df[df["benchmark"] == bench]
    models = sorted(
        (m for m in dict.fromkeys(d["model"]) if m != "fixed_depth"), key=lambda m: m.startswith("published:")
    )
    timed = [m for m in models if serving and serving.get(m, {}).get("paths")]
    ncols = min(4, max(1, len(models)))
    rows_a, rows_b = -(-len(models) // ncols), -(-len(timed) // ncols)
    fig, axes = plt.subplots(rows_a + rows_b, ncols, figsize=(4 * ncols, 3.2 * (rows_a + rows_b)), squeeze=False)
    fixed = d[(d["model"] == "fixed_depth") & (d["rule"] == "fixed_depth")]
    star_at = "baseline" if "baseline" in models else (models[0] if models else None)
    top = float(d["layer_reduction"].max()) if len(d) else 2.0
    for ax, m in zip(axes[:rows_a].flat, models):
        _layer_panel(ax, d[d["model"] == m], fixed if m == star_at else None)
        _reduction_axis(ax, top)
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("layer reduction L / E[l]", fontsize=8)
        ax.set_ylabel(f"{bench} quality", fontsize=8)
    for ax, m in zip(axes[rows_a:].flat, timed):
        rec = serving[m]
        bs = rec["batch_sizes"][0]
        _speed_panel(ax, rec["paths"], bs)
        ax.set_title(f"{m}: {rec['benchmark']} ({rec['n_pairs']} pairs)", fontsize=9)
        ax.set_xlabel(f"measured ms per sentence, batch {bs}", fontsize=8)
        ax.set_ylabel("Spearman", fontsize=8)
    for ax in list(axes[:rows_a].flat)[len(models) :] + list(axes[rows_a:].flat)[len(timed) :]:
        ax.set_visible(False)
    handles = [Line2D([], [], ls=ls, marker=mk, color=c, ms=4, lw=1, label=lab) for _, ls, mk, c, lab in RULE_STYLES]
    handles.append(Line2D([], [], ls="", marker="o", ms=9, mfc="none", mec="k", label="the config's rule"))
    if len(fixed):
        handles.append(Line2D([], [], ls="", marker="*", ms=12, color="k", label="fixed-depth student"))
    if timed:
        handles += [
            Line2D([], [], ls=ls or "", marker=mk, color=c, ms=4, lw=1, label=lab)
            for *_, ls, mk, c, lab in SPEED_STYLES
        ]
    fig.suptitle(f"{bench}: exit against truncation of the same model, and measured speed", y=1.0)
    fig.tight_layout()
    # below the panels: the saved file's tight bounding box takes it in
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=8, frameon=False)
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
    res = collect(eval_paths)
    df = frontier_table(res)
    serving = {m: rs[0] for m in res if (rs := runs(res, m, "serving_paths"))}
    status: dict[str, str] = {}
    have = list(dict.fromkeys(df["benchmark"])) if df is not None else []
    for bench in dict.fromkeys([*benchmarks, *have]):
        name = frontier_figure_name(bench)
        if bench in have:
            fig = frontier_figure(df, bench, serving if bench == "STS-B" else None)
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
themselves are listed in ``leap/workflow/resources/report_items.yaml``."""


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
    return [v for v in ("baseline", "leap", *extra_variants(res)) if layer_runs(res, v)]


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

    exiting = [(v, pair_splits(res, v)) for v in ("leap", *extra_variants(res))]
    exiting = [(v, rs) for v, rs in exiting if rs]
    if not exiting:
        return None, "no stsb.json for leap"
    fig, axes = plt.subplots(1, len(exiting), figsize=(5 * len(exiting), 3.4), squeeze=False)
    for ax, (v, rs) in zip(axes[0], exiting):
        dist = rs.mean_list(lambda r: r.exit_distribution)
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


def plot_paths(result: PathsResult, path: str | os.PathLike) -> None:
    """Quality against ms/sentence (first batch size) for every path: the cuts of each engine
    drawn as a line, exits as points, the chosen path starred, the budget dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bs = result.batch_sizes[0]
    key, label = ("spearman", "Spearman on the pairs") if result.paths[0].spearman is not None else ("nn10", "NN@10")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, backend in enumerate(dict.fromkeys(p.backend for p in result.paths)):
        color = f"C{i}"
        ps = [p for p in result.paths if p.backend == backend]
        line = sorted((p for p in ps if p.kind != "exit"), key=lambda p: p.ms[bs])
        ax.plot([p.ms[bs] for p in line], [getattr(p, key) for p in line], "s-", color=color, label=f"{backend}: cuts")
        ex = [p for p in ps if p.kind == "exit"]
        ax.scatter([p.ms[bs] for p in ex], [getattr(p, key) for p in ex], color=color, marker="o", alpha=0.6, s=18)
    if result.chosen is not None:
        c = result.chosen
        ax.scatter([c.ms[bs]], [getattr(c, key)], marker="*", s=260, color="black", zorder=5, label=f"chosen: {c.name}")
    b = result.budget
    if key == "nn10" and b.nn10 is not None:
        ax.axhline(b.nn10, ls="--", color="grey", lw=1, label="budget")
    ax.set_xlabel(f"ms per sentence (batch {bs}, tokenisation included)")
    ax.set_ylabel(f"{label} (points: exit rules)")
    log_ms_axis(ax)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=130)
    plt.close(fig)
