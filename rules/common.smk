# Config validation and the names every stage shares.
from pathlib import Path

from snakemake.utils import validate

validate(config, "../config/schema.yaml")

EXPERIMENT = config["experiment"]
RESULTS = f"results/{EXPERIMENT}"
PUBLISHED = {m["name"]: m["model"] for m in config["published_models"]}
LEAP = Path(workflow.basedir) / "leap"
ENV = "../environment.yml"

TABLES = (
    expand(f"{RESULTS}/tables/table2_cross_distillation.{{ext}}", ext=["csv", "md"])
    if PUBLISHED
    else []
)


wildcard_constraints:
    name="|".join(PUBLISHED) if PUBLISHED else "^$",
