"""Run by test_train.py under `torchrun --nproc_per_node 2` (CPU, gloo)."""

import sys

from leap.training.run import train
from leap.workflow.variants import make_train_config
from tests.test_train import SENTS

student, teacher, cache, out = sys.argv[1:5]
cfg = make_train_config(
    {"student": student, "batch_size": 8, "epochs": 1, "max_seq_length": 16, "loss": {"focus_layer": 3}}, "leap", 0
)
train(cfg, SENTS, cache, out, teacher=teacher, progress_bar=False)
