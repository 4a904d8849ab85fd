# Config validation and the names every stage shares. Defaults come from the dataclasses
# of the leap package (the one source; config/schema.yaml is generated from them), and
# nothing here imports torch, so parsing and dry runs stay fast.
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

ROOT = Path(workflow.basedir)
sys.path.insert(0, str(ROOT))  # the workflow's own `leap` (conda envs too)
from leap.core.settings import to_plain
from leap.errors import LeapError
from leap.training.objectives import objective_module
from leap.workflow.config import check_gpu_settings
from leap.workflow.dependencies import code_inputs
from leap.workflow.plan import HEADS, Plan
from leap.workflow.provenance import head_commit, record_invocation
from leap.workflow.results import (
    FIGURE_NAMES,
    TABLE_NAMES,
    frontier_figure_name,
    report_groups,
)
from leap.workflow.runlock import hold_run_lock

# one run at a time in this folder, refused in one line before any job; a killed run's
# stale locks removed (leap/workflow/runlock.py)
if workflow.is_main_process:
    try:
        RUN_LOCK = hold_run_lock(Path.cwd(), sys.argv)
    except LeapError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)

# the run plan (leap/workflow/plan.py): validated config, runs, teachers, evaluation files
try:
    PLAN = Plan(config)
except LeapError as err:
    raise ValueError(str(err)) from None
CFG = PLAN.cfg

EXPERIMENT = CFG.experiment
RESULTS = f"results/{EXPERIMENT}"
DATA = f"{RESULTS}/data"
RUN = f"{RESULTS}/{{variant}}/seed{{seed}}"
EVAL_RUN = (
    f"{RESULTS}/{{run}}/eval"  # {run} is {variant}/seed{seed} or published/{name}
)
ENV = "../environment.yml"
INVOCATIONS = f"{RESULTS}/logs/invocations.jsonl"
COMMIT = head_commit(ROOT)  # a new commit rewrites provenance.json


onstart:
    # before any job: GPU settings on a machine without one end here, in one line
    try:
        check_gpu_settings(CFG)
    except LeapError as err:
        raise WorkflowError(str(err)) from None
    # every invocation that runs jobs: command line, commit, code hash, config hashes
    record_invocation(INVOCATIONS, ROOT, sys.argv, workflow.configfiles)


def intermediate(path):
    """A file only later jobs read: kept, or deleted once they are done (keep_intermediates)."""
    return path if CFG.keep_intermediates else temp(path)


SCRIPTS = ROOT / "workflow_scripts"
GPU = 1 if CFG.gpu else 0  # jobs that can use a GPU ask for one only on GPU machines


def code(script, *modules):
    """The leap modules a rule's script imports (its `code` input): an edit reruns exactly
    the rules whose scripts reach the edited file."""
    return code_inputs(ROOT, SCRIPTS / script, *modules)


PUBLISHED = PLAN.published
FIT_MAPS = PLAN.fit_maps  # exit-enabled here
VECTOR_MODELS = (
    PLAN.vector_models
)  # checkpoints whose layer vectors two evaluations share
DIAGNOSED = PLAN.diagnosed  # Table 2: checkpoints as published
RETRIEVAL = PLAN.retrieval
BENCHMARKS = PLAN.benchmarks
GROUPS = PLAN.groups
TRAINED = PLAN.trained
TRAIN_CONFIGS = PLAN.train_configs
TEACHERS = PLAN.teachers
TEACHER_DIR = f"{RESULTS}/teacher/{{teacher}}"
seeds_of = PLAN.seeds_of
teacher_of = PLAN.teacher_of
cache_of = PLAN.cache_of
students_of = PLAN.students_of
group_evals = PLAN.group_evals


EXIT = CFG.evaluation.exit.to_dict()  # min_layer null resolves per model depth
EVAL = CFG.evaluation
LATENCY = PLAN.latency
LATENCY_RUNS = PLAN.latency_runs
ALL_EVALS = PLAN.all_evals
DIAGNOSTICS = PLAN.diagnostics
MODEL_CARDS = PLAN.model_cards
RUN_OUTPUTS = PLAN.run_outputs
FRONTIER = [
    f"{RESULTS}/tables/frontier.csv",
    f"{RESULTS}/tables/frontier_summary.csv",
    *(f"{RESULTS}/figures/{frontier_figure_name(b)}.png" for b in BENCHMARKS),
]
TABLES_DONE = f"{RESULTS}/tables/index.json"
FIGURES_DONE = f"{RESULTS}/figures/index.json"
REPORT = [f"{RESULTS}/report.md", f"{RESULTS}/claims.csv"]


# the report's categories follow the paper (snakemake --report): from leap/workflow/resources/report_items.yaml
REPORT_GROUPS = report_groups()
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
    return PLAN.model_of(wc.run)


def model_input(wc):
    return PLAN.model_input(wc.run)


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
    checkpoint="|".join(re.escape(c) for c in VECTOR_MODELS) if VECTOR_MODELS else "^$",
