# Config validation and the names every stage shares.
import re
import sys
from pathlib import Path

from snakemake.utils import validate

validate(config, "../config/schema.yaml")

sys.path.insert(
    0, str(Path(workflow.basedir))
)  # the workflow's own `leap` (conda envs too)
from leap.errors import LeapError
from leap.train import make_train_config

EXPERIMENT = config["experiment"]
RESULTS = f"results/{EXPERIMENT}"
DATA = f"{RESULTS}/data"
TEACHER_DIR = f"{RESULTS}/teacher"
RUN = f"{RESULTS}/{{variant}}/seed{{seed}}"
LEAP = Path(workflow.basedir) / "leap"
ENV = "../environment.yml"

PUBLISHED = {m["name"]: m["model"] for m in config["published_models"]}
DATA_CFG = config["data"]
RETRIEVAL = [ref.split(":", 1)[1] for ref in DATA_CFG.get("retrieval", [])]
LOCAL = [
    r
    for r in DATA_CFG.get("train_sources", [])
    + DATA_CFG.get("retrieval", [])
    + [DATA_CFG.get("stsb") or "", DATA_CFG.get("nli") or ""]
    if r.startswith("local:")
]
if LOCAL and not config.get("data_dir"):
    raise ValueError(
        f"invalid config: sources {LOCAL} read a local data folder but data_dir is not set; pass --config data_dir=/path/to/data (e.g. ../shared/data)"
    )
if LOCAL and not Path(config["data_dir"]).is_dir():
    raise ValueError(
        f"invalid config: data_dir {config['data_dir']!r} is not a folder; point it at a local copy with the layout stsbenchmark/, nli/, mrpc/, beir/"
    )
SEEDS = config["seeds"]
GROUPS = {
    g: config["variants"].get(g, [])
    for g in ("main", "ablation", "sweep", "comparisons")
}
HEADS = (
    "deebert"  # off-ramps on the baseline student: an evaluation, not a training run
)
TRAINED = list(dict.fromkeys(v for g in GROUPS.values() for v in g if v != HEADS))
if HEADS in GROUPS["comparisons"] and "baseline" not in TRAINED:
    raise ValueError(
        "variant deebert needs the baseline variant; add baseline to variants.main"
    )


def seeds_of(variant):
    """Main variants run every seed; the others the first seed."""
    return SEEDS if variant in GROUPS["main"] else SEEDS[:1]


def train_config(variant, seed):
    """The resolved leap.train.TrainConfig of one run, as a dict (rule params)."""
    return make_train_config(
        config.get("training", {}),
        variant,
        int(seed),
        variant_overrides=config["variant_overrides"].get(variant),
        sweep=config.get("sweep") or None,
        custom=config["custom_variants"],
    ).to_dict()


# Resolve every run's config now: an unknown variant or key fails before any job runs.
try:
    TRAIN_CONFIGS = {(v, s): train_config(v, s) for v in TRAINED for s in seeds_of(v)}
except LeapError as err:
    raise ValueError(f"invalid config: {err}") from None

EXIT = {
    "strategy": "convergence",
    "theta": 0.95,
    "patience": 1,
    "min_layer": 6,
    **config["evaluation"].get("exit", {}),
}
EVAL = {
    "batch_size": 64,
    "layer_sentences": 2000,
    "retrieval_variants": ["baseline", "leap"],
    "retrieval_seeds": None,
    "heads_epochs": 5,
    **config["evaluation"],
}
LATENCY = {
    "variants": ["baseline", "leap"],
    "batch_sizes": [1, 8, 32],
    "warmup": 50,
    "iters": 200,
    "device": "cpu",
    "dtype": None,
    "seeds": None,
    **config["latency"],
}


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
    out = runs([v for v in GROUPS[group] if v != HEADS], ["stsb", "layers"])
    if (
        DATA_CFG.get("qqp") and group == "main"
    ):  # QQP 10K pairs: the main models (Table 1)
        out += runs([v for v in GROUPS[group] if v != HEADS], ["qqp"])
    out += runs(
        [v for v in GROUPS[group] if v in EVAL["retrieval_variants"]],
        [f"beir_{r}" for r in RETRIEVAL],
        EVAL["retrieval_seeds"],
    )
    if HEADS in GROUPS[group]:
        out += [
            f"{RESULTS}/{HEADS}/seed{s}/eval/stsb_heads.json" for s in seeds_of(HEADS)
        ]
    return out


LATENCY_RUNS = runs(
    [v for v in LATENCY["variants"] if v in TRAINED], ["latency"], LATENCY["seeds"]
)
ALL_EVALS = sorted(set(sum((group_evals(g) for g in GROUPS), []) + LATENCY_RUNS))
DIAGNOSTICS = expand(
    f"{RESULTS}/published/{{name}}/eval/diagnostic.json", name=list(PUBLISHED)
)
REPORT = [f"{RESULTS}/report.md", f"{RESULTS}/claims.csv"]


wildcard_constraints:
    name="|".join(PUBLISHED) if PUBLISHED else "^$",
    variant="|".join(re.escape(v) for v in TRAINED) if TRAINED else "^$",
    seed=r"\d+",
    dataset="|".join(RETRIEVAL) if RETRIEVAL else "^$",
    pairset="stsb|qqp",
