"""BEIR zips downloaded and checked against BEIR's published checksums before anything is
extracted (``resources/beir_checksums.tsv``: the md5 BEIR's README gives for each zip, and a
sha256 where one is recorded). ``data.beir_checksums`` adds or replaces the checksum of a set
(a mirror's own build, a set the table lacks)."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path

from leap.errors import LeapError
from leap.files import atomic_path
from leap.workflow.data.retry import Retry, TransientDownloadError

log = logging.getLogger(__name__)

CHECKSUMS_FILE = Path(__file__).resolve().parents[1] / "resources" / "beir_checksums.tsv"
_LENGTHS = {32: "md5", 64: "sha256"}


def published_checksums() -> dict[str, dict[str, str]]:
    """``{set: {"md5": ..., "sha256": ...}}`` from the packaged table (a ``-`` is left out)."""
    rows = [line.split("\t") for line in CHECKSUMS_FILE.read_text().splitlines() if line and not line.startswith("#")]
    header, body = rows[0], rows[1:]
    return {r[0]: {k: v for k, v in zip(header[1:], r[1:]) if v != "-"} for r in body}


def expected_checksums(name: str, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The checksums a downloaded ``name.zip`` must match: ``overrides[name]`` (``md5:HEX``,
    ``sha256:HEX`` or a bare hex digest) when given, else the published ones."""
    given = (overrides or {}).get(name)
    if given is not None:
        algo, _, digest = given.rpartition(":")
        algo = algo or _LENGTHS.get(len(digest), "")
        if algo not in ("md5", "sha256") or len(digest) != {"md5": 32, "sha256": 64}[algo]:
            raise LeapError(f"data.beir_checksums.{name}: {given!r} is no md5 or sha256 digest (md5:HEX, sha256:HEX)")
        return {algo: digest.lower()}
    known = published_checksums().get(name)
    if not known:
        raise LeapError(
            f"BEIR set {name!r} has no published checksum to check its download against; "
            f"add data.beir_checksums.{name}: md5:HEX (or sha256:HEX) to the config"
        )
    return known


def file_digests(path: str | os.PathLike) -> dict[str, str]:
    """md5 and sha256 of a file, read once."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            md5.update(block)
            sha.update(block)
    return {"md5": md5.hexdigest(), "sha256": sha.hexdigest()}


def download_beir(
    name: str,
    url: str,
    download_dir: str | os.PathLike,
    overrides: Mapping[str, str] | None = None,
    retry: Retry | None = None,
) -> Path:
    """``name.zip`` from ``url`` into ``download_dir``, checked, then extracted; its folder.

    A zip whose checksum differs (cut short, altered) is deleted and downloaded again, as a
    dropped connection is, up to ``retry.attempts`` tries in all; then one error names the
    set, both digests and what to do, and nothing is extracted. A zip already there is checked
    the same way before reuse.
    """
    expected = expected_checksums(name, overrides)
    out = Path(download_dir)
    out.mkdir(parents=True, exist_ok=True)
    zpath = out / f"{name}.zip"
    retry = retry or Retry()
    try:
        retry.call(lambda: _fetch_checked(name, url, zpath, expected), f"BEIR {name}")
    except TransientDownloadError as err:
        raise LeapError(f"{err} after {retry.attempts} attempts; nothing was extracted (check data.beir_url)") from None
    from beir import util

    util.unzip(str(zpath), str(out))
    folder = out / name
    if not folder.is_dir():
        raise LeapError(f"BEIR {name}: the zip from {url} holds no {name}/ folder; check data.beir_url")
    return folder


def _fetch_checked(name: str, url: str, zpath: Path, expected: dict[str, str]) -> None:
    """``zpath`` downloaded (unless there) and matching ``expected``, or deleted and a
    :class:`TransientDownloadError`."""
    from beir import util

    if not zpath.is_file():
        log.info("downloading BEIR %s from %s", name, url)
        with atomic_path(zpath, suffix=".zip") as tmp:
            util.download_url(url, str(tmp))
    got = file_digests(zpath)
    bad = [algo for algo, want in expected.items() if got[algo] != want]
    if bad:
        zpath.unlink()
        algo = bad[0]
        raise TransientDownloadError(
            f"BEIR {name}: the zip from {url} has {algo} {got[algo]}, but {expected[algo]} is published"
        )
