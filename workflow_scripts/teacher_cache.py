"""Teacher stage: the teacher-embedding cache (adapter for leap.training.teacher)."""

from pathlib import Path

import _bootstrap

_bootstrap.setup(snakemake)  # noqa: F821

from leap.training.teacher import build_teacher_cache, student_depth  # noqa: E402
from leap.workflow.data import read_sentences  # noqa: E402

p = snakemake.params  # noqa: F821
t = p.teacher
students = [(student_depth(ref, n), list(layer_map) or None) for ref, n, layer_map in p.students]
build_teacher_cache(
    t["model"],
    read_sentences(snakemake.input.sentences),  # noqa: F821
    Path(snakemake.output.manifest).parent,  # noqa: F821
    students=students,
    batch_size=t["batch_size"],
    shard_size=t["shard_size"],
    max_seq_length=t["max_seq_length"],
    dtype=t["dtype"],
    device=t["device"],
    threads=snakemake.threads,  # noqa: F821
)
