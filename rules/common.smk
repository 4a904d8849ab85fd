# Config validation and the names every stage shares. Defaults come from the dataclasses
# in leap/config.py (the one source; config/schema.yaml is generated from them), and
# nothing here imports torch, so parsing and dry runs stay fast.
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

ROOT = Path(workflow.basedir)
sys.path.insert(0, str(ROOT))  # the workflow's own `leap` (conda envs too)
from leap.config import (
    ExitConfig,
    check_gpu_settings,
    to_plain,
    validate_workflow_config,
)
from leap.results import FIGURE_NAMES, TABLE_NAMES, frontier_figure_name
from leap.dependencies import code_inputs
from leap.errors import LeapError
from leap.objectives import objective_module
from leap.variants import make_train_config
from leap.provenance import git_state, record_invocation

try:
    CFG = validate_workflow_config(config)
except LeapError as err:
    raise ValueError(str(err)) from None

EXPERIMENT = CFG.experiment
RESULTS = f"results/{EXPERIMENT}"
DATA = f"{RESULTS}/data"
RUN = f"{RESULTS}/{{variant}}/seed{{seed}}"
EVAL_RUN = (
    f"{RESULTS}/{{run}}/eval"  # {run} is {variant}/seed{seed} or published/{name}
)
ENV = "../environment.yml"
INVOCATIONS = f"{RESULTS}/logs/invocations.jsonl"
GIT_STATE = git_state(ROOT)


onstart:
    # before any job: GPU settings on a machine without one end here, in one line
    try:
        check_gpu_settings(CFG)
    except LeapError as err:
        raise WorkflowError(str(err)) from None
    # every invocation that runs jobs: command line, commit, code hash, config hashes
    record_invocation(INVOCATIONS, ROOT, sys.argv, workflow.configfiles)


SCRIPTS = ROOT / "workflow_scripts"
GPU = 1 if CFG.gpu else 0  # jobs that can use a GPU ask for one only on GPU machines


def code(script, *modules):
    """The leap modules a rule's script imports (its `code` input): an edit reruns exactly
    the rules whose scripts reach the edited file."""
    return code_inputs(ROOT, SCRIPTS / script, *modules)


PUBLISHED = {m.name: m.model for m in CFG.published_models}
FIT_MAPS = {
    m.name: m.fit_maps for m in CFG.published_models if m.fit_maps
}  # exit-enabled here
DIAGNOSED = [
    n for n in PUBLISHED if n not in FIT_MAPS
]  # Table 2: checkpoints as published
LOCAL = [r for r in CFG.data.refs() if r.startswith("local:")]
RETRIEVAL = [ref.split(":", 1)[1] for ref in CFG.data.retrieval]
# frontier benchmarks: STS-B, each BEIR set with both sides exiting (the paper's), and each
# BEIR set query-only (documents at full depth, as an index is built)
BENCHMARKS = ["STS-B", *RETRIEVAL, *[f"{r} (query-only)" for r in RETRIEVAL]]
if LOCAL and not CFG.data_dir:
    raise ValueError(
        f"invalid config: sources {LOCAL} read a local data folder but data_dir is not set; pass --config data_dir=/path/to/data (e.g. ../shared/data)"
    )
if LOCAL and not Path(CFG.data_dir).is_dir():
    raise ValueError(
        f"invalid config: data_dir {CFG.data_dir!r} is not a folder; point it at a local copy with the layout stsbenchmark/, nli/, mrpc/, beir/"
    )
SEEDS = list(CFG.seeds)
GROUPS = {
    g: list(getattr(CFG.variants, g))
    for g in ("main", "ablation", "sweep", "comparisons")
}
HEADS = (
    "deebert"  # off-ramps on the baseline student: an evaluation, not a training run
)
TRAINED = list(dict.fromkeys(v for g in GROUPS.values() for v in g if v != HEADS))
if HEADS in GROUPS["comparisons"] and "baseline" not in TRAINED:
    raise ValueError(
        "invalid config: variant deebert needs the baseline variant; add baseline to variants.main"
    )


def seeds_of(variant):
    """Main variants run every seed; the others the first seed."""
    return SEEDS if variant in GROUPS["main"] else SEEDS[:1]


# Resolve every run's config now: an unknown variant, objective or key fails before any job runs.
try:
    RUN_CONFIGS = {
        (v, s): make_train_config(
            config.get("training", {}),
            v,
            int(s),
            variant_overrides=CFG.variant_overrides.get(v),
            sweep=CFG.sweep or None,
            custom=CFG.custom_variants,
        )
        for v in TRAINED
        for s in seeds_of(v)
    }
except LeapError as err:
    raise ValueError(f"invalid config: {err}") from None
TRAIN_CONFIGS = {key: c.to_dict() for key, c in RUN_CONFIGS.items()}


def teacher_of(cfg):
    """The teacher a run distils from: the config's, or (``teacher: self``) its own init."""
    return cfg["student"] if cfg["teacher"] == "self" else CFG.teacher.model


def slug(ref):
    return re.sub(
        r"[^A-Za-z0-9_.-]+", "_", Path(str(ref).removeprefix("packaged:")).name
    )


TEACHERS = {slug(teacher_of(c)): teacher_of(c) for c in TRAIN_CONFIGS.values()}
TEACHER_DIR = f"{RESULTS}/teacher/{{teacher}}"


def cache_of(variant, seed):
    """The teacher cache folder of one run."""
    return f"{RESULTS}/teacher/{slug(teacher_of(TRAIN_CONFIGS[(variant, int(seed))]))}"


def students_of(teacher):
    """(init, depth, layer map) of every run that reads ``teacher``'s layer-aligned targets
    (the layers it caches beside the final one, which every run reads)."""
    return sorted(
        {
            (c["student"], c["n_layers"], tuple(c["loss"]["layer_map"] or ()))
            for key, c in TRAIN_CONFIGS.items()
            if slug(teacher_of(c)) == teacher
            and RUN_CONFIGS[key].loss.reads_aligned_targets
        },
        key=str,
    )


EXIT = CFG.evaluation.exit.to_dict()  # min_layer null resolves per model depth
EVAL = CFG.evaluation
LATENCY = to_plain(CFG.latency)
if EVAL.heads_reference not in TRAINED and HEADS in GROUPS["comparisons"]:
    raise ValueError(
        f"invalid config: evaluation.heads_reference {EVAL.heads_reference!r} is not a trained variant; choose one of {TRAINED}"
    )


def runs(variants, evals, n_seeds=None):
    """Eval JSONs of ``variants``: every seed they train, or the first ``n_seeds``."""
    return [
        f"{RESULTS}/{v}/seed{s}/eval/{e}.json"
        for v in variants
        if v in TRAINED
        for s in seeds_of(v)[:n_seeds]
        for e in evals
    ]


def group_evals(group):
    trained = [v for v in GROUPS[group] if v != HEADS]
    out = runs(trained, ["stsb", "layers"])
    if CFG.data.qqp and group == "main":  # QQP 10K pairs: the main models (Table 1)
        out += runs(trained, ["qqp"])
    out += runs(
        [v for v in GROUPS[group] if v in EVAL.retrieval_variants],
        [f"beir_{r}" for r in RETRIEVAL],
        EVAL.retrieval_seeds,
    )
    if HEADS in GROUPS[group]:
        out += [
            f"{RESULTS}/{HEADS}/seed{s}/eval/stsb_heads.json" for s in seeds_of(HEADS)
        ]
    return out


PUBLISHED_EVALS = [
    f"{RESULTS}/published/{m.name}/eval/{e}.json"
    for m in CFG.published_models
    for e in [
        "stsb",
        *(
            f"beir_{r}"
            for r in RETRIEVAL
            if m.retrieval and (not m.retrieval_sets or r in m.retrieval_sets)
        ),
    ]
]
LATENCY_RUNS = runs(
    [v for v in LATENCY["variants"] if v in TRAINED], ["latency"], LATENCY["seeds"]
)
ALL_EVALS = sorted(
    set(sum((group_evals(g) for g in GROUPS), []) + LATENCY_RUNS + PUBLISHED_EVALS)
)
DIAGNOSTICS = expand(
    f"{RESULTS}/published/{{name}}/eval/diagnostic.json", name=DIAGNOSED
)
MODEL_CARDS = [
    f"{RESULTS}/{v}/seed{s}/model_card.md"
    for v in GROUPS["main"]
    if v in TRAINED
    for s in seeds_of(v)
]
FRONTIER = [
    f"{RESULTS}/tables/frontier.csv",
    f"{RESULTS}/tables/frontier_summary.csv",
    *(f"{RESULTS}/figures/{frontier_figure_name(b)}.png" for b in BENCHMARKS),
]
TABLES_DONE = f"{RESULTS}/tables/index.json"
FIGURES_DONE = f"{RESULTS}/figures/index.json"
REPORT = [f"{RESULTS}/report.md", f"{RESULTS}/claims.csv"]


# The report's categories follow the paper (snakemake --report): stage -> what is in it.
REPORT_GROUPS = {
    "1 Frontier": {},
    "2 Main results": {
        "table1_main": "Table 1",
        "table5_pareto": "Table 5",
        "table10_strategies": "Table 10",
    },
    "3 Layer analyses": {
        "table3_layerwise": "Table 3",
        "table4_per_layer": "Table 4",
        "table8_thresholds": "Table 8",
        "table9_similarity": "Table 9",
        "table13_nn_failure": "Table 13",
        "fig1_layer_dynamics": "Figure 1",
        "fig2_exit_distribution": "Figure 2",
        "fig4_contraction": "Figure 4",
        "fig5_nn_failure": "Figure 5",
    },
    "4 Ablation and sweep": {
        "table11_ablation": "Table 11",
        "table12_beta": "Table 12",
    },
    "5 Comparisons": {"table2_cross_distillation": "Table 2"},
    "6 Latency": {"table7_latency": "Table 7"},
    "7 BEIR": {
        "table6_beir": "Table 6",
        "table15_beir_ndcg5_10": "Table 15",
        "table16_beir_ndcg1_3": "Table 16",
    },
    "8 Training": {"table14_hyperparameters": "Table 14"},
    "9 Layer mixing": {"table_layer_mixing": "Layer mixing (SLED-style)"},
}
REPORT_CATEGORY = {
    name: (cat, label)
    for cat, items in REPORT_GROUPS.items()
    for name, label in items.items()
}


def reported(path, name, kind):
    """``report()`` of one table or figure output, with its caption and the paper's category."""
    category, label = REPORT_CATEGORY[name]
    return report(
        path,
        caption=f"../report/{kind}/{name}.rst",
        category=category,
        subcategory=label,
        labels={"item": label, "file": Path(path).name},
    )


TABLE_FILES = [f"{RESULTS}/tables/{n}.{e}" for n in TABLE_NAMES for e in ("csv", "md")]
FIGURE_FILES = [
    f"{RESULTS}/figures/{n}.{e}" for n in FIGURE_NAMES for e in ("png", "pdf")
]


def model_of(wc):
    """The model a {run} evaluates: a trained student's folder, a published checkpoint, or
    a published checkpoint exit-enabled here with fitted maps."""
    if wc.run.startswith("published/") and wc.run.split("/", 1)[1] not in FIT_MAPS:
        return PUBLISHED[wc.run.split("/", 1)[1]]
    return f"{RESULTS}/{wc.run}/model"


def model_input(wc):
    """A model folder made by the workflow is an input (a published checkpoint is not a file here)."""
    if wc.run.startswith("published/") and wc.run.split("/", 1)[1] not in FIT_MAPS:
        return []
    return [f"{RESULTS}/{wc.run}/model"]


def train_code(wc):
    objective = TRAIN_CONFIGS[(wc.variant, int(wc.seed))]["objective"]
    return code("train.py", objective_module(objective))


_variant_re = "|".join(re.escape(v) for v in TRAINED) if TRAINED else "^$"
_published_re = "|".join(re.escape(n) for n in PUBLISHED) if PUBLISHED else "^$"


wildcard_constraints:
    teacher="|".join(re.escape(t) for t in TEACHERS) if TEACHERS else "^$",
    name=_published_re,
    variant=_variant_re,
    seed=r"\d+",
    run=rf"(({_variant_re})/seed\d+|published/({_published_re}))",
    dataset="|".join(RETRIEVAL) if RETRIEVAL else "^$",
