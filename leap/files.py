"""Writing files safely: atomically, with the user's permissions, never over what is not ours.

* Atomic writes: a temp file (or folder) beside the target, then a rename onto it. A killed
  job never leaves a half-written output that a later step would accept, and a folder being
  replaced is never deleted before its successor is complete and in place.
* Permissions: what is written gets the mode ``open()`` and ``mkdir()`` would give under the
  process's umask (the temp files ``tempfile`` makes are private until renamed).
* Outputs checked before work starts: :func:`check_writable` for files,
  :func:`check_output_folder` for a folder that would be replaced.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from leap.errors import LeapError


def umask() -> int:
    """The process's umask (read from ``/proc`` where it can be, so nothing is changed)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


DISK_FULL = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
"""The write errors of a full disk, a quota or a file-size limit."""


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or an error it was raised from) is a write refused for lack of space."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in DISK_FULL:
            return True
        if any(s in str(err) for s in ("No space left on device", "File too large", "Disk quota exceeded")):
            return True
        err = err.__cause__ or err.__context__
    return False


def disk_full_error(path: str | os.PathLike, needed: int | None, err: BaseException | None = None) -> LeapError:
    """One line naming what could not be written, how much it needs, and what to do."""
    why = f"{os.strerror(err.errno)}; " if isinstance(err, OSError) and err.errno else ""
    need = f"it needs {needed:,} bytes" if needed else "it needs more space"
    return LeapError(
        f"not enough space to write {path} ({why}{need}); free space or raise the quota and rerun: "
        "complete outputs are kept and the job resumes where it stopped"
    )


def _give_default_mode(path: Path, folder: bool) -> None:
    os.chmod(path, (0o777 if folder else 0o666) & ~umask())


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp", needed: int | None = None) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success it is renamed onto ``path``. A write
    refused for lack of space is one :class:`LeapError` naming ``path`` and the ``needed``
    bytes; the temp file is removed and ``path`` keeps what it held."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    os.close(fd)
    try:
        try:
            yield Path(tmp)
        except Exception as err:
            if is_disk_full(err):
                raise disk_full_error(target, needed, err) from None
            raise
        _give_default_mode(Path(tmp), folder=False)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    data = text.encode("utf-8")
    with atomic_path(path, needed=len(data)) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def save_npy(path: str | os.PathLike, array: Any) -> None:
    """``np.save`` atomically, the written file checked: numpy's writer can leave a short file
    without an error when the file system refuses the rest, so the file is read back (its
    header and length, memory-mapped) before it replaces ``path``."""
    import numpy as np

    array = np.asarray(array)
    with atomic_path(path, suffix=".npy", needed=array.nbytes + 128) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)
        try:
            ok = np.load(tmp, mmap_mode="r").shape == array.shape
        except ValueError:  # the data is shorter than the header says
            ok = False
        if not ok:
            raise OSError(errno.ENOSPC, "the file came out short")


def temp_dir_beside(target: str | os.PathLike) -> Path:
    """An empty folder beside ``target`` (hidden, ``.tmp``), with the user's default mode."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    _give_default_mode(tmp, folder=True)
    return tmp


def replace_dir(src: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Move the complete folder ``src`` onto ``target`` (same file system).

    An existing ``target`` is first renamed aside and deleted only once ``src`` is in its
    place, so a crash at any point leaves either the old folder or the new one (and, at
    worst, the old one under a hidden ``.{name}.old-*`` name beside it), never neither.
    """
    src, target = Path(src), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if target.exists() or target.is_symlink():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        os.replace(target, old / target.name)
    os.replace(src, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


@contextmanager
def atomic_dir(target: str | os.PathLike, needed: int | None = None) -> Iterator[Path]:
    """Yield an empty temp folder beside ``target``; on success everything in it gets the
    user's default mode and it replaces ``target`` (:func:`replace_dir`); on an exception it is
    removed and ``target`` is untouched. A write refused for lack of space is one
    :class:`LeapError` naming ``target`` and the ``needed`` bytes."""
    tmp = temp_dir_beside(target)
    try:
        try:
            yield tmp
        except Exception as err:
            if is_disk_full(err):
                raise disk_full_error(target, needed, err) from None
            raise
        for sub in tmp.rglob("*"):  # libraries that write through private temp files (safetensors shards)
            if not sub.is_symlink():
                _give_default_mode(sub, folder=sub.is_dir())
        replace_dir(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_writable(*paths: str | os.PathLike) -> None:
    """One error naming the first of ``paths`` that cannot be written as a file: a folder in
    its place, a file where its folder would be, or a folder the user may not write to."""
    for p in map(Path, paths):
        if p.is_dir():
            raise LeapError(f"{p} is a folder; a file is written there: give a file path")
        parent = next((a for a in p.parents if a.exists()), Path("."))
        if not parent.is_dir():
            raise LeapError(f"{parent} is a file, so {p} cannot be written under it: give another path")
        if not os.access(parent, os.W_OK):
            raise LeapError(f"{parent} is not writable, so {p} cannot be written: give another path")


def _never_replaced(p: Path) -> str | None:
    """Why ``p`` may never be replaced by a written folder (``None``: it may)."""
    cwd = Path.cwd().resolve()
    home = Path.home().resolve()
    if p == Path(p.anchor):
        return "it is the root of the file system"
    if p == home or p.parent in (Path("/home"), Path("/Users")):
        return "it is a home folder"
    if p == cwd or p in cwd.parents:
        return "it is the current folder or holds it"
    return None


def check_output_folder(path: str | os.PathLike, marker: str, overwrite: bool = False) -> Path:
    """``path`` as a folder that a complete new one may replace, checked before any work.

    Replaced without asking: nothing there, an empty folder, or a folder holding ``marker``
    (one this package wrote). A file, or a folder of other files, is replaced only with
    ``overwrite``; the file system's root, a home folder and the current folder (or one
    holding it) never are. Errors are one line naming the path.
    """
    p = Path(os.path.expanduser(str(path))).resolve()
    why = _never_replaced(p)
    if why is not None:
        raise LeapError(f"refusing to write into {path!r}: {why}; give a new folder, e.g. {p / 'model'}")
    if p.is_file() and not overwrite:
        raise LeapError(f"{path!r} is a file; refusing to replace it with a folder (give a new path, or --overwrite)")
    if p.is_dir() and any(p.iterdir()) and not (p / marker).exists() and not overwrite:
        raise LeapError(
            f"{path!r} is a folder of other files (no {marker}); refusing to replace it "
            "(give a new or empty folder, or --overwrite)"
        )
    parent = next(a for a in p.parents if a.exists())
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise LeapError(f"{parent} is not a writable folder, so {path!r} cannot be written: give another path")
    return p
