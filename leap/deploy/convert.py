"""Exit-enabling a published model: ``leap convert`` (paper sec 5.3's path for existing
encoders) writes a standard SentenceTransformer folder with the exit rule
(``leap_exit.json``) and, optionally, least-squares per-layer maps fitted on sentences."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from leap.core.exit_config import EXIT_CONFIG_FILE, ExitConfig
from leap.errors import LeapError
from leap.serving.model import load_exit_model

log = logging.getLogger(__name__)


def convert(
    source: str | os.PathLike,
    output: str | os.PathLike,
    exit: ExitConfig | None = None,
    fit_maps_on: Sequence[str] | None = None,
    device: str | None = "cpu",
    overwrite: bool = False,
) -> Path:
    """Exit-enable a mean-pooling SentenceTransformer (folder or hub id) into ``output``.

    Writes the model as a standard SentenceTransformer folder with ``leap_exit.json`` (the
    rule, ``min_layer`` resolved from the depth) and, with ``fit_maps_on`` sentences,
    least-squares per-layer maps (:func:`leap.core.layer_maps.fit_layer_maps`). The folder is
    written beside ``output`` and renamed onto it when complete. ``output`` may replace an
    exit-enabled folder; a file or a folder of other files only with ``overwrite``
    (:func:`leap.files.check_output_folder`), checked before the model is loaded.
    """
    from leap.core.layer_maps import fit_layer_maps
    from leap.files import atomic_dir, check_output_folder

    target = check_output_folder(output, EXIT_CONFIG_FILE, overwrite=overwrite)
    model = load_exit_model(source, exit=exit or ExitConfig(), device=device, backend="torch")
    if fit_maps_on:
        maps = fit_layer_maps(model.layer_embeddings(list(fit_maps_on), batch_size=64))
        model.exit_module.layer_maps = maps
    with atomic_dir(target) as tmp:
        model.save(str(tmp))
    return target


def exit_enable_with_maps(
    source: str,
    output: str | os.PathLike,
    sentences: Sequence[str],
    n: int,
    seed: int = 0,
    exit: ExitConfig | dict | None = None,
    device: str | None = "cpu",
    overwrite: bool = False,
) -> Path:
    """:func:`convert` with least-squares maps fitted on ``n`` sentences drawn (seeded) from
    ``sentences`` (the workflow's ``exit_enable_published`` rule)."""
    import random

    if n < 1 or not sentences:
        raise LeapError(f"fitting maps needs sentences and n >= 1 (got {len(sentences)} sentences, n={n})")
    sample = random.Random(seed).sample(list(sentences), min(n, len(sentences)))
    rule = ExitConfig.from_dict(exit) if isinstance(exit, dict) else exit
    log.info("fitting per-layer maps of %s on %d training sentences", source, len(sample))
    return convert(source, output, exit=rule, fit_maps_on=sample, device=device, overwrite=overwrite)
