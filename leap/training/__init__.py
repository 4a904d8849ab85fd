"""Training every student the paper compares, in parts (one concern per file):

* :mod:`leap.training.student`: the student's initialisation and truncation;
* :mod:`leap.training.heads`: the projection ``P``, trained and least-squares layer maps;
* :mod:`leap.training.callbacks`: progress into the loss, the training log, checkpoints;
* :mod:`leap.training.resume`: run fingerprints and the last checkpoint of the same run;
* :mod:`leap.training.run`: :func:`train`, one run on ``SentenceTransformerTrainer``.

Configs are resolved by :func:`leap.variants.make_train_config` (no torch).
"""

from leap.training.run import train

__all__ = ["train"]
