"""Training exit-aware students (paper sec 3, B.2). Needs the ``train`` extra.

* :mod:`leap.training.config`: the LEAP loss and training settings;
* :mod:`leap.training.objectives` and :mod:`leap.training.losses`: the objectives, one per file;
* :mod:`leap.training.teacher`: the teacher-embedding cache;
* :mod:`leap.training.student`: the student's initialisation and truncation;
* :mod:`leap.training.heads`: the projection ``P``, trained and least-squares layer maps;
* :mod:`leap.training.callbacks`: progress into the loss, the training log, checkpoints;
* :mod:`leap.training.resume`: run fingerprints and the last checkpoint of the same run;
* :mod:`leap.training.run`: :func:`~leap.training.run.train`, one run on ``SentenceTransformerTrainer``;
* :mod:`leap.training.model_card`: the model card saved with a trained student.
"""
