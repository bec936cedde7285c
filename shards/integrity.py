"""The one rule that decides whether a shard file is intact.

A shard is intact when its path is a regular file (never a symbolic link or a special
file: a reader must not be led outside the dataset directory), of the size its manifest
entry records, and, when asked, with the recorded sha256. :func:`check_shard` is the only
function that decides it: the reader (at open), ``convert verify``, ``--resume`` (which
shards to re-convert), the converter's finished-unit check and the publish check all call
it, and word their own message from the :class:`ShardState` it returns.
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import Any, Mapping, NamedTuple

from .spec import FormatError

__all__ = ["ShardState", "check_shard", "file_identity", "file_sha256"]

_NOFOLLOW = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


class ShardState(NamedTuple):
    """What :func:`check_shard` found.

    ``problem``: None (intact), ``"missing"``, ``"symlink"``, ``"special"`` (not a regular
    file), ``"size"`` or ``"sha256"``. ``identity``: ``(inode, device, size, mtime_ns)``
    when the path is a regular file; ``size`` its size; ``digest`` its sha256 when hashed.
    """

    problem: str | None
    identity: tuple[int, int, int, int] | None = None
    size: int | None = None
    digest: str | None = None

    @property
    def intact(self) -> bool:
        """True when nothing is wrong."""
        return self.problem is None


def file_sha256(path: str | os.PathLike[str], bufsize: int = 1 << 22, *, follow: bool = True) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks (``follow=False``: refuse a symbolic link, ELOOP)."""
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY if follow else _NOFOLLOW)
    with open(fd, "rb") as f:
        buf = bytearray(bufsize)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def file_identity(path: str | os.PathLike[str]) -> tuple[int, int, int, int]:
    """``(inode, device, size, mtime_ns)`` of a regular file, not following a symlink.

    Raises:
        FileNotFoundError: no such file.
        FormatError: a symlink or not a regular file.
    """
    state = check_shard(path, None)
    if state.problem == "missing":
        raise FileNotFoundError(2, "No such file or directory", str(path))
    if state.identity is None:
        raise FormatError(
            f"{path}: a shard must be a regular file inside the dataset directory (this is a "
            f"{'symlink' if state.problem == 'symlink' else 'special file'}); copy the real file there"
        )
    return state.identity


def check_shard(path: str | os.PathLike[str], entry: Mapping[str, Any] | None, *, hash: bool = False) -> ShardState:
    """Is the shard at ``path`` the one manifest ``entry`` records? Never follows a link.

    Args:
        path: the shard file.
        entry: its manifest (or unit) entry: ``bytes`` and ``sha256``; None checks only that
            the path is a regular file.
        hash: also compare the sha256 (reads every byte); an entry without one is not hashed.
    """
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return ShardState("missing")
    if not stat.S_ISREG(st.st_mode):
        return ShardState("symlink" if stat.S_ISLNK(st.st_mode) else "special")
    identity = (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)
    if entry is None:
        return ShardState(None, identity, st.st_size)
    if st.st_size != int(entry["bytes"]):
        return ShardState("size", identity, st.st_size)
    if hash and entry.get("sha256"):
        try:
            digest = file_sha256(path, follow=False)
        except FileNotFoundError:
            return ShardState("missing")
        except OSError:  # replaced by a link since the lstat (ELOOP)
            return ShardState("symlink")
        if digest != entry["sha256"]:
            return ShardState("sha256", identity, st.st_size, digest)
        return ShardState(None, identity, st.st_size, digest)
    return ShardState(None, identity, st.st_size)
