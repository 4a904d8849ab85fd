"""How big a run of a workflow config is, before it runs: sentences, steps, disk, GPU memory
and GPU hours per stage, from the config's run plan and the models' shapes.

Compute is counted in FLOPs from the architectures (a transformer layer of width ``h`` and
FFN width ``i`` costs ``2 (4 h^2 + 2 h i)`` FLOPs per token forward, plus ``4 s h`` for
attention over ``s`` tokens; training costs three forward passes), turned into hours at a
stated share of a named GPU's peak (``resources/sizing.yaml``). Memory counts weights,
gradients and Adam states (16 bytes a parameter) and activations (``s b h (34 + 5 a s / h)``
bytes a layer in 16-bit, Korthikanti et al. 2022, twice that in fp32). Every assumption is
printed beside the estimates. A finished run's own benchmark files (``--measured``) give the
cross-check: the FLOP rate each training job reached.

    python -m leap.workflow.sizing config/config.yaml [--gpu A100-80GB] [--measured results/cpu]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from leap.errors import LeapError
from leap.training.config import TrainConfig, uniform_layer_map
from leap.training.teacher import required_layers
from leap.workflow.plan import Plan

ASSUMPTIONS_FILE = Path(__file__).resolve().parent / "resources" / "sizing.yaml"
GIB = 1024**3


@dataclass(frozen=True)
class Shape:
    """What sizing needs of an encoder."""

    layers: int
    hidden: int
    intermediate: int
    vocab: int
    positions: int = 514

    @property
    def params(self) -> int:
        """Parameters: per layer attention and FFN weights with their biases and norms, and the
        token, position and type embeddings (a pooler, unused by mean pooling, aside)."""
        h, i = self.hidden, self.intermediate
        per_layer = 4 * h * h + 2 * h * i + 9 * h + i
        return self.layers * per_layer + (self.vocab + self.positions + 2) * h + 2 * h

    def forward_flops(self, tokens: float, seq: float, layers: int | None = None) -> float:
        """FLOPs of a forward pass over ``tokens`` tokens in sequences of ``seq`` tokens."""
        h, i = self.hidden, self.intermediate
        n = self.layers if layers is None else layers
        return tokens * n * (2 * (4 * h * h + 2 * h * i) + 4 * seq * h)

    def activation_bytes(self, batch: int, seq: int, bits: int, layers: int | None = None) -> float:
        h = self.hidden
        heads = max(1, h // 64)
        per_layer = seq * batch * h * (34 + 5 * heads * seq / h)
        return (self.layers if layers is None else layers) * per_layer * (2 if bits == 32 else 1)


@dataclass
class Stage:
    """One row of the sizing table."""

    stage: str
    jobs: int
    work: str
    disk_bytes: float = 0.0
    memory_bytes: float = 0.0
    flops: float = 0.0
    fp32: bool = False
    steps: int = 0  # optimiser steps or batches: each costs at least the fixed overhead


def load_assumptions(path: str | Path = ASSUMPTIONS_FILE) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text(encoding="utf-8"))


def model_shape(ref: str, assumptions: dict[str, Any]) -> Shape:
    """The shape of ``ref``: its config.json (a local folder, the packaged model, or the
    Hugging Face cache), else the assumptions' table, else one error saying what to add."""
    from leap.serving.sources import resolve_model_ref

    cfg = None
    path = Path(resolve_model_ref(ref))
    if (path / "config.json").is_file():
        cfg = json.loads((path / "config.json").read_text())
    else:
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(ref, "config.json")
            if isinstance(cached, str):
                cfg = json.loads(Path(cached).read_text())
        except (ValueError, OSError):
            cfg = None
    if cfg is not None:
        layers = cfg.get("num_hidden_layers", cfg.get("n_layers"))
        hidden = cfg.get("hidden_size", cfg.get("dim"))
        inter = cfg.get("intermediate_size", cfg.get("hidden_dim", 4 * hidden))
        positions = int(cfg.get("max_position_embeddings", 512))
        return Shape(int(layers), int(hidden), int(inter), int(cfg.get("vocab_size", 30522)), positions)
    models = assumptions["models"]
    known = models.get(ref) or next((v for k, v in models.items() if k.split("/")[-1] == Path(ref).name), None)
    if known is None:
        raise LeapError(
            f"the shape of model {ref!r} is unknown offline; add it under `models:` in {ASSUMPTIONS_FILE.name} "
            "(layers, hidden, intermediate, vocab), or download its config.json into the Hugging Face cache"
        )
    return Shape(**known)


def training_sentences(plan: Plan, assumptions: dict[str, Any], given: int | None) -> tuple[int, str]:
    """How many training sentences the run has, and where that number comes from."""
    data = plan.cfg.data
    stats = Path(plan.results) / "data" / "stats.json"
    if given is not None:
        n, why = given, "given (--sentences)"
    elif stats.is_file():
        n, why = int(json.loads(stats.read_text())["written"]), f"measured ({stats})"
    elif all(s.startswith("demo:") for s in data.train_sources):
        n, why = data.demo_size, "the synthetic generator's size (data.demo_size)"
    elif sorted(data.train_sources) == sorted(["hub:snli", "hub:multi_nli", "hub:qqp", "hub:mrpc", "hub:xnli"]):
        n, why = int(assumptions["paper_sentences"]), "the paper's count for its five Hub sources"
    elif data.max_sentences is not None:
        n, why = data.max_sentences, "data.max_sentences (the sources assumed larger)"
    else:
        raise LeapError("the number of training sentences is unknown for these sources; pass --sentences N")
    if data.max_sentences is not None and n > data.max_sentences:
        n, why = data.max_sentences, f"{why}, capped by data.max_sentences"
    return n, why


def run_steps(cfg: TrainConfig, n: int) -> int:
    """Optimiser steps of one run on ``n`` training sentences."""
    if cfg.max_steps is not None:
        return cfg.max_steps
    used = min(n, cfg.max_samples) if cfg.max_samples else n
    return math.ceil(used * cfg.epochs / cfg.batch_size)


def teacher_stage(plan: Plan, a: dict[str, Any], n: int, tokens: float) -> Stage:
    stage = Stage("teacher caches", len(plan.teachers), "")
    parts = []
    for name, ref in plan.teachers.items():
        t = model_shape(ref, a)
        students = []
        for init, depth, layer_map in plan.students_of(name):
            n_s = depth or model_shape(init, a).layers
            students.append((n_s, list(layer_map) or uniform_layer_map(n_s, t.layers)))
        layers = required_layers(students, t.layers)
        stage.disk_bytes += n * len(layers) * t.hidden * 2  # float16
        stage.flops += t.forward_flops(n * tokens, a["mean_tokens"] * a["padding_factor"])
        batch = plan.cfg.teacher.batch_size
        stage.steps += math.ceil(n / batch)
        seq = plan.cfg.teacher.max_seq_length or 128
        mem = 2 * t.params + t.activation_bytes(batch, seq, 16, layers=2) + t.layers * batch * seq * t.hidden * 2
        stage.memory_bytes = max(stage.memory_bytes, mem)
        parts.append(f"{ref}: {len(layers)} of {t.layers} layers x {t.hidden}-d x {n:,} sentences")
    stage.work = "; ".join(parts)
    return stage


def training_stage(plan: Plan, a: dict[str, Any], n: int, tokens: float) -> tuple[Stage, dict[tuple[str, int], dict]]:
    runs = {}
    stage = Stage("training", len(plan.run_configs), "")
    steps_total = 0
    for key, cfg in plan.run_configs.items():
        shape = model_shape(cfg.student, a)
        depth = cfg.n_layers or shape.layers
        steps = run_steps(cfg, n)
        seq = cfg.max_seq_length
        per_step = 3 * shape.forward_flops(cfg.batch_size * tokens, min(seq, tokens), layers=depth)
        bits = 32 if cfg.precision == "fp32" else 16
        mem = 16 * shape.params + shape.activation_bytes(cfg.batch_size, seq, bits, layers=depth)
        stage.memory_bytes = max(stage.memory_bytes, mem)
        stage.flops += steps * per_step
        stage.steps += steps
        stage.fp32 = stage.fp32 or cfg.precision == "fp32"
        checkpoints = 1 if cfg.checkpoint_steps else 0
        stage.disk_bytes += (1 + 3 * checkpoints) * 4 * shape.params  # model, and a checkpoint with Adam states
        steps_total += steps
        runs[key] = {"steps": steps, "flops_per_step": per_step, "student": cfg.student, "layers": depth}
    stage.work = f"{len(runs)} runs, {steps_total:,} optimiser steps in all"
    return stage, runs


def evaluation_stage(plan: Plan, a: dict[str, Any]) -> Stage:
    evals = plan.all_evals
    ev = plan.cfg.evaluation
    stage = Stage("evaluation", len(evals), "")
    flops = 0.0
    for path in evals:
        name = Path(path).name
        run = path.split("/eval/")[0].removeprefix(plan.results + "/")
        shape = _eval_shape(plan, run, a)
        if name.startswith("beir_"):
            spec = a["beir"][name.removesuffix(".json").removeprefix("beir_")]
            cap = ev.retrieval_max_seq_length or 512
            doc_tokens = min(cap, spec["doc_words"] * a["tokens_per_word"])
            flops += shape.forward_flops(spec["documents"] * doc_tokens, doc_tokens)
            flops += shape.forward_flops(spec["queries"] * a["query_tokens"], a["query_tokens"])
        elif name in ("stsb.json", "qqp.json"):
            sentences = a["stsb_sentences"] if name == "stsb.json" else 20000
            flops += shape.forward_flops(sentences * a["mean_tokens"], a["mean_tokens"])
    stage.flops = flops
    stage.work = f"{len(evals)} evaluation files (STS-B, QQP, BEIR, latency, serving paths)"
    return stage


def _eval_shape(plan: Plan, run: str, a: dict[str, Any]) -> Shape:
    if run.startswith("published/"):
        return model_shape(plan.published[run.split("/", 1)[1]], a)
    variant, seed = run.split("/seed")
    cfg = plan.run_configs.get((variant, int(seed)))
    if cfg is None:  # DeeBERT heads: the baseline's model
        cfg = next(c for (v, _), c in plan.run_configs.items() if v == "baseline")
    shape = model_shape(cfg.student, a)
    return Shape(cfg.n_layers or shape.layers, shape.hidden, shape.intermediate, shape.vocab)


def size(plan: Plan, gpu: str, utilisation: float, sentences: int | None, a: dict[str, Any]) -> dict[str, Any]:
    """The sizing of ``plan`` on ``gpu``: stages, totals and the assumptions used."""
    if gpu not in a["gpus"]:
        raise LeapError(f"unknown GPU {gpu!r}; known: {', '.join(a['gpus'])} (add one to {ASSUMPTIONS_FILE.name})")
    n, n_why = training_sentences(plan, a, sentences)
    tokens = a["mean_tokens"] * a["padding_factor"]
    teacher = teacher_stage(plan, a, n, tokens)
    training, runs = training_stage(plan, a, n, tokens)
    evaluation = evaluation_stage(plan, a)
    spec = a["gpus"][gpu]
    rows = []
    for st in (teacher, training, evaluation):
        peak = (spec["fp32"] if st.fp32 else spec["fp16"]) * 1e12
        # each step takes its FLOPs at the stated rate, or the fixed overhead of a step, whichever is longer
        per_step = st.flops / max(1, st.steps) / (peak * utilisation)
        hours = st.steps * max(per_step, a["step_overhead_ms"] / 1e3) / 3600 if st.steps else 0.0
        hours += 0.0 if st.steps else st.flops / (peak * utilisation) / 3600
        rows.append(
            {
                "stage": st.stage,
                "jobs": st.jobs,
                "work": st.work,
                "disk_gib": st.disk_bytes / GIB,
                "memory_gib": st.memory_bytes / GIB,
                "pflop": st.flops / 1e15,
                "gpu_hours": hours,
                "fits": st.memory_bytes / GIB <= spec["memory_gib"],
            }
        )
    return {
        "experiment": plan.cfg.experiment,
        "gpu": gpu,
        "utilisation": utilisation,
        "sentences": n,
        "sentences_from": n_why,
        "stages": rows,
        "runs": runs,
        "step_overhead_ms": a["step_overhead_ms"],
        "total_gpu_hours": sum(r["gpu_hours"] for r in rows),
        "total_disk_gib": sum(r["disk_gib"] for r in rows),
    }


def cross_check(plan: Plan, runs: dict, measured: Path) -> list[dict[str, Any]]:
    """The FLOP rate each finished training job of ``measured`` (a results folder of the same
    config) reached: its steps' FLOPs over its benchmark wall time."""
    out = []
    for (variant, seed), r in runs.items():
        bench = measured / "benchmarks" / "train" / variant / f"seed{seed}.tsv"
        info = measured / variant / f"seed{seed}" / "train_config.json"
        if not bench.is_file() or not info.is_file():
            continue
        lines = bench.read_text().splitlines()
        wall = float(lines[1].split("\t")[0])
        steps = int(json.loads(info.read_text()).get("steps", r["steps"]))
        flops = steps * r["flops_per_step"]
        out.append({"run": f"{variant}/seed{seed}", "layers": r["layers"], "steps": steps, "seconds": wall,
                    "gflop_per_s": flops / wall / 1e9})  # fmt: skip
    return out


def render(res: dict[str, Any], a: dict[str, Any], checks: list[dict[str, Any]] | None = None) -> str:
    """The sizing as Markdown: the table per stage, then every assumption."""
    gpu = res["gpu"]
    lines = [
        f"Sizing of `{res['experiment']}` on one {gpu} at {res['utilisation']:.0%} of its peak "
        f"({res['sentences']:,} training sentences: {res['sentences_from']}).",
        "",
        "| stage | jobs | work | disk (GiB) | largest job's GPU memory (GiB) | compute (PFLOP) | GPU hours |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in res["stages"]:
        mem = f"{r['memory_gib']:.1f}" + ("" if r["fits"] else f" (over the {gpu}'s memory)")
        disk = f"{r['disk_gib']:.1f}" if r["disk_gib"] else "-"
        lines.append(
            f"| {r['stage']} | {r['jobs']} | {r['work']} | {disk} | {mem} | {r['pflop']:.2f} | {r['gpu_hours']:.1f} |"
        )
    lines += [
        f"| **total** | | | {res['total_disk_gib']:.1f} | | | **{res['total_gpu_hours']:.1f}** |",
        "",
        "Assumptions:",
        f"- peak of the {gpu}: {a['gpus'][gpu]['fp16']} TFLOP/s fp16/bf16, {a['gpus'][gpu]['fp32']} fp32 "
        f"(fp32 for a stage with an fp32 run); {res['utilisation']:.0%} of it reached; a step (or a teacher "
        f"batch) takes at least {res['step_overhead_ms']} ms, the fixed cost of its kernels and the trainer's work",
        f"- a training sentence has {a['mean_tokens']} tokens, padded x{a['padding_factor']} in its batch; "
        "training costs 3 forward passes; the teacher cache is float16",
        "- memory: weights, gradients and Adam states at 16 bytes a parameter, activations "
        "s b h (34 + 5 a s / h) bytes a layer (16-bit; x2 in fp32) at the config's maximum length",
        f"- BEIR sets at their test sizes (BEIR paper), {a['tokens_per_word']} tokens a word, documents "
        "capped at evaluation.retrieval_max_seq_length (else 512); QQP: 20,000 sentences",
        "- not counted: data extraction and downloads, latency and serving-path timing (minutes each)",
    ]
    if checks:
        lines += [
            "",
            "Cross-check against the finished run's own benchmark files (the FLOP rate each training job reached):",
            "",
            "| run | layers | steps | wall (s) | GFLOP/s reached |",
            "| --- | --- | --- | --- | --- |",
            *(
                f"| {c['run']} | {c['layers']} | {c['steps']} | {c['seconds']:.0f} | {c['gflop_per_s']:.1f} |"
                for c in checks
            ),
            "",
            _rate_summary(checks),
        ]
    return "\n".join(lines) + "\n"


def _rate_summary(checks: list[dict[str, Any]]) -> str:
    """One sentence on how evenly the FLOP count predicts the measured times, by depth."""
    import numpy as np

    rates = np.array([c["gflop_per_s"] for c in checks])
    q1, med, q3 = np.percentile(rates, [25, 50, 75])
    by_depth = {}
    for c in checks:
        by_depth.setdefault(c["layers"], []).append(c["gflop_per_s"])
    depths = ", ".join(f"{d} layers {np.median(v):.1f}" for d, v in sorted(by_depth.items()))
    return (
        f"Median {med:.1f} GFLOP/s, middle half {q1:.1f}-{q3:.1f} (by depth: {depths}): where the rate is the "
        "same for every architecture, the FLOP count predicts the jobs' relative cost; jobs far below shared "
        "the machine with other work."
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m leap.workflow.sizing", description=__doc__.split("\n\n")[0])
    p.add_argument("configfiles", nargs="+", help="config files, merged in order as --configfile does")
    p.add_argument("--config", nargs="*", default=[], metavar="KEY=VALUE", help="top-level overrides (data_dir=...)")
    p.add_argument("--gpu", help="a GPU of the assumptions file (default: its default_gpu)")
    p.add_argument("--utilisation", type=float, help="share of the GPU's peak reached (default: the file's)")
    p.add_argument("--sentences", type=int, help="training sentences, when the config cannot say")
    p.add_argument("--measured", help="a finished results folder of this config: cross-check the FLOP rate")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        config: dict = {}
        for f in args.configfiles:
            config = _merge(config, yaml.safe_load(Path(f).read_text()))
        for kv in args.config:
            key, _, value = kv.partition("=")
            config[key] = yaml.safe_load(value)
        a = load_assumptions()
        res = size(Plan(config), args.gpu or a["default_gpu"], args.utilisation or a["utilisation"], args.sentences, a)
        checks = cross_check(Plan(config), res["runs"], Path(args.measured)) if args.measured else None
    except LeapError as err:
        print(f"sizing: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**res, "runs": None, "cross_check": checks}, indent=2))
    else:
        print(render(res, a, checks), end="")
    return 0


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


if __name__ == "__main__":
    sys.exit(main())
