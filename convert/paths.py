"""Where the converter may write and what it may remove: ``--out``, staging, lock and trash.

The rules (checked before anything is written, paths resolved first):

* ``--out`` is never a symbolic link (dangling or not) nor an existing non-directory.
* ``--overwrite`` replaces only a readshard dataset (a ``manifest.json`` whose ``format`` is
  ``readshard``) or an empty directory; anything else is refused, listing what is there.
* No input (nor the mapping or a tokenizer path) may lie inside ``--out``, its staging or its
  trash directory: replacing them would remove it.
* Staging, lock and trash paths never follow symlinks: each must be a real directory or
  regular file (``lstat``, ``O_NOFOLLOW``); a link or other odd entry is refused, named.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Iterable

__all__ = [
    "UnsafePathError",
    "resolve_out",
    "trash_dir",
    "check_protected",
    "check_distinct_inputs",
    "check_replaceable",
    "check_staging",
    "make_dir",
    "open_lock",
    "publish",
]

MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "readshard"
# A manifest is small JSON (one entry per shard); a bigger file is not one of ours.
_MANIFEST_MAX_BYTES = 256 << 20
_LISTED = 8


class UnsafePathError(Exception):
    """An output, staging, lock or trash path the converter must not write to or remove."""


def trash_dir(out: Path) -> Path:
    """Where a replaced dataset is moved while the new one is published."""
    return out.parent / f".{out.name}.readshard-old"


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "a special file"


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # a parent that is a file: reported when written
        return None


def resolve_out(out: str | os.PathLike[str]) -> Path:
    """``--out`` as an absolute, symlink-free path; refuse a link or an existing non-directory.

    Raises:
        UnsafePathError: ``--out`` is a symbolic link (dangling or not) or not a directory.
    """
    given = Path(os.path.abspath(os.fspath(out)))
    st = _lstat(given)
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise UnsafePathError(
            f"--out {out} is a symbolic link (to {os.readlink(given)}); the converter never writes "
            "through a link. Give the real directory path as --out, or remove the link."
        )
    resolved = given.resolve()
    st = _lstat(resolved)
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(
            f"--out {out} is {_kind(st.st_mode)}, not a dataset directory; choose a new directory "
            "path for --out (the file is left as it is)."
        )
    return resolved


def _listing(path: Path) -> str:
    names = sorted(os.listdir(path))
    shown = ", ".join(names[:_LISTED]) + (f", ... ({len(names)} entries)" if len(names) > _LISTED else "")
    return shown


def is_dataset(path: Path) -> bool:
    """True if ``path`` is a real directory holding a readshard ``manifest.json`` (a regular file)."""
    st = _lstat(path / MANIFEST_NAME)
    if st is None or not stat.S_ISREG(st.st_mode) or st.st_size > _MANIFEST_MAX_BYTES:
        return False
    try:
        fd = os.open(path / MANIFEST_NAME, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            body = json.loads(f.read(_MANIFEST_MAX_BYTES))
    except (OSError, ValueError):
        return False
    return isinstance(body, dict) and body.get("format") == FORMAT_NAME


def check_replaceable(path: Path, what: str = "--out") -> None:
    """Refuse to replace ``path`` unless it is a readshard dataset or an empty directory.

    Raises:
        UnsafePathError: naming ``path`` and listing what is in it.
    """
    st = _lstat(path)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(f"{what} {path} is {_kind(st.st_mode)}; refusing to replace it. Remove it or choose another --out.")
    if not os.listdir(path) or is_dataset(path):
        return
    raise UnsafePathError(
        f"{what} {path} is not a readshard dataset (no readshard {MANIFEST_NAME}) and not empty: it holds "
        f"{_listing(path)}. --overwrite only replaces a dataset or an empty directory; choose another "
        "--out, or move those files away first."
    )


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_protected(out: Path, staging: Path, paths: Iterable[tuple[str, str | os.PathLike[str]]]) -> None:
    """Refuse an ``--out`` whose replacement would remove one of ``paths`` (inputs, mapping, ...).

    Args:
        out, staging: resolved output and staging directories.
        paths: ``(role, path)`` pairs, e.g. ``("input", "reads.fa")``.

    Raises:
        UnsafePathError: a path lies inside ``out``, its staging or trash directory, or two
            inputs are one file (:func:`check_distinct_inputs`).
    """
    paths = list(paths)
    check_distinct_inputs([p for role, p in paths if role == "input"])
    for role, p in paths:
        real = Path(os.path.abspath(os.fspath(p))).resolve()
        for where, name in ((out, "--out"), (staging, "the staging directory"), (trash_dir(out), "the trash directory")):
            if _inside(real, where):
                raise UnsafePathError(
                    f"{role} {p} lies inside {name} {where}: writing the dataset there would remove it. "
                    "Choose an --out directory that contains none of the inputs."
                )


def check_distinct_inputs(inputs: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse an input given twice: the same file (device and inode) under one name, a link or a hard link.

    Every read would be stored twice. ``stat`` only (a FIFO is not opened); an input that
    cannot be stat'ed is left to the input checks, which name it.

    Raises:
        UnsafePathError: naming both arguments and their positions.
    """
    seen: dict[tuple[int, int], tuple[int, str]] = {}
    for k, p in enumerate(inputs, start=1):
        try:
            st = os.stat(p)
        except OSError:
            continue
        first = seen.setdefault((st.st_dev, st.st_ino), (k, os.fspath(p)))
        if first[0] != k:
            how = "the same path twice" if first[1] == os.fspath(p) else "two names of one file, e.g. a link"
            raise UnsafePathError(
                f"input {k} ({os.fspath(p)}) and input {first[0]} ({first[1]}) are the same file ({how}: "
                f"device {st.st_dev}, inode {st.st_ino}), so every read would be stored twice. Give each input once."
            )


def check_staging(staging: Path, *, must_be_ours: bool) -> None:
    """Check every entry of an existing staging directory without following links.

    Staging holds only real directories and regular files the converter wrote; a symlink
    (or device, fifo, ...) anywhere in it is refused, named. With ``must_be_ours`` a
    non-empty directory without the converter's ``.lock`` is not ours and is refused.

    Raises:
        UnsafePathError: naming the offending path.
    """
    st = _lstat(staging)
    if st is None:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePathError(
            f"staging path {staging} is {_kind(st.st_mode)}, not a directory the converter made; "
            "remove it (the converter never writes through it) and rerun."
        )
    for root, dirs, files in os.walk(staging):
        for name in dirs + files:
            p = Path(root) / name
            mode = os.lstat(p).st_mode
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise UnsafePathError(
                    f"{p} in the staging directory is {_kind(mode)}; the converter never writes through links "
                    f"or special files. Remove it (or the whole {staging}) and rerun."
                )
    if must_be_ours:
        names = os.listdir(staging)
        if names and ".lock" not in names:
            raise UnsafePathError(
                f"{staging} exists but was not made by the converter (no .lock; it holds {_listing(staging)}); "
                "move it away and rerun."
            )


def make_dir(path: Path) -> None:
    """Create ``path`` as a real directory (its parents as needed); an existing link is refused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path)
    except FileExistsError:
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode):
            raise UnsafePathError(
                f"{path} is {_kind(st.st_mode)}, not a directory; the converter never writes through it. "
                "Remove it and rerun."
            ) from None


def open_lock(path: Path) -> int:
    """Open (creating) a lock file without following a link; it must be a regular, unshared file.

    Raises:
        UnsafePathError: ``path`` is a symlink, not a regular file, or hard-linked elsewhere.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePathError(
                f"lock file {path} is a symbolic link; the converter never writes through it. Remove it and rerun."
            ) from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        what = _kind(st.st_mode) if not stat.S_ISREG(st.st_mode) else f"hard-linked ({st.st_nlink} names)"
        raise UnsafePathError(f"lock file {path} is {what}; the converter never writes to it. Remove it and rerun.")
    return fd


def _remove_trash(trash: Path) -> None:
    st = _lstat(trash)
    if st is None:
        return
    check_replaceable(trash, "trash directory")
    shutil.rmtree(trash)


def publish(staging: Path, out: Path) -> None:
    """Rename the finished ``staging`` to ``out``, replacing an existing dataset at ``out``.

    The old dataset is moved to the trash directory first and removed after; only a
    dataset or an empty directory is ever moved or removed (checked again here).
    """
    if _lstat(out) is None:
        os.replace(staging, out)
        return
    check_replaceable(out)
    trash = trash_dir(out)
    _remove_trash(trash)
    os.replace(out, trash)
    os.replace(staging, out)
    try:
        _remove_trash(trash)
    except (OSError, UnsafePathError):
        pass  # the new dataset is published; a leftover old copy only costs space
