"""Per-process access to shard files: one read-only mmap per shard, an LRU over open shards.

Why this shape:

* One ``mmap`` per *file* (numpy views at the manifest's dataset offsets), not one
  ``np.memmap`` per dataset: CPython's mmap keeps a dup of the file descriptor, so eight
  ``np.memmap`` objects per shard would cost eight descriptors. On Python >= 3.13 the
  mapping keeps none (``trackfd=False``).
* ``madvise(MADV_RANDOM)``: the default 8 MiB read-ahead would fault in 8 MiB per random
  row once the data exceeds the page cache.
* The cache belongs to one process: it is keyed by ``os.getpid()``; a forked child drops
  what it inherited (without closing it: the parent still uses its own copies) and opens
  its own files on first use.
* Sequential reads of whole chunks (the iterable and chunk-shuffle modes) use ``pread``
  (``np.fromfile`` at an offset) instead, so they get the kernel's read-ahead.
* Identity: every open compares the file's ``(inode, device, size, mtime)`` with what the
  reader recorded when it opened the dataset; a rebuilt or replaced shard raises
  :class:`convert.format.DatasetChangedError` instead of serving another dataset's bytes.
* Threads: every access runs between :meth:`ShardHandles.pin` and :meth:`ShardHandles.unpin`.
  An eviction while any thread is pinned only *defers* the close: a mapping is unmapped
  only when no thread can be reading it (the span gather reads raw addresses, which no
  Python reference keeps alive).
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import sys
import threading
from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np

from convert.format import DatasetChangedError, FormatError

__all__ = ["ShardHandles", "map_file", "read_array", "open_shard_budget", "file_identity", "check_identity"]

_MMAP_KW: dict[str, Any] = {"trackfd": False} if sys.version_info >= (3, 13) else {}
_FD_HEADROOM = 256  # descriptors left for sockets, worker pipes, logs, ...


def open_shard_budget(num_shards: int) -> int:
    """How many shards this process may keep mapped: all of them if descriptors allow.

    A full shuffle touches every shard in every batch once there are hundreds, so an LRU
    smaller than the shard count turns each batch into a churn of open/close. On Python <
    3.13 each mapping holds a descriptor: raise this process's soft RLIMIT_NOFILE toward
    the hard limit when needed, and keep ``_FD_HEADROOM`` free.
    """
    if sys.version_info >= (3, 13):
        return max(1, num_shards)
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = num_shards + _FD_HEADROOM
        if soft != resource.RLIM_INFINITY and soft < want:
            new = want if hard == resource.RLIM_INFINITY else min(want, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
    except (ImportError, ValueError, OSError):
        return max(1, min(num_shards, 512))
    if soft == resource.RLIM_INFINITY:
        return max(1, num_shards)
    return max(1, min(num_shards, soft - _FD_HEADROOM))


_REOPEN = (
    "the dataset changed since it was opened (rebuilt, replaced or modified under the reader); "
    "reopen it (create a new ShardDataset / restart the DataLoader)"
)


def file_identity(path: str) -> tuple[int, int, int, int]:
    """``(inode, device, size, mtime_ns)`` of a regular file, not following a symlink.

    Raises:
        FileNotFoundError: no such file.
        FormatError: a symlink or not a regular file.
    """
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise FormatError(
            f"{path}: a shard must be a regular file inside the dataset directory (this is a "
            f"{'symlink' if stat.S_ISLNK(st.st_mode) else 'special file'}); copy the real file there"
        )
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


def check_identity(path: str, fd: int, expect: Sequence[int] | None) -> None:
    """Raise DatasetChangedError if the open ``fd`` is not the file recorded as ``expect``."""
    if expect is None:
        return
    st = os.fstat(fd)
    if (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns) != tuple(int(x) for x in expect):
        raise DatasetChangedError(f"{path}: {_REOPEN}")


def _open_ro(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise DatasetChangedError(f"{path}: shard is gone; {_REOPEN}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise FormatError(f"{path}: a shard must be a regular file, not a symlink") from None
        raise


def map_file(path: str, identity: Sequence[int] | None = None, advice: int | None = None) -> mmap.mmap:
    """Map ``path`` read-only (random-access advice by default); the fd is closed at once.

    Args:
        path: the shard file (never followed if it is a symlink).
        identity: :func:`file_identity` recorded at open; checked on the open descriptor.
        advice: an ``mmap.MADV_*`` value (default ``MADV_RANDOM``).
    """
    fd = _open_ro(path)
    try:
        check_identity(path, fd, identity)
        mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ, **_MMAP_KW)
    finally:
        os.close(fd)
    if advice is None:
        advice = getattr(mmap, "MADV_RANDOM", None)
    if advice is not None and hasattr(mm, "madvise"):
        mm.madvise(advice)
    return mm


def read_array(
    path: str,
    dtype: np.dtype,
    count: int,
    offset: int,
    identity: Sequence[int] | None = None,
    expect_id: tuple[int, bytes] | None = None,
) -> np.ndarray:
    """Read ``count`` items of ``dtype`` at byte ``offset`` with one ``pread``-style call.

    Args:
        identity: :func:`file_identity` recorded at open, checked on the descriptor.
        expect_id: ``(offset, bytes)`` of the dataset identity stored in the file.
    """
    if count == 0:
        return np.empty(0, dtype=dtype)
    fd = _open_ro(path)
    with open(fd, "rb") as f:
        check_identity(path, fd, identity)
        if expect_id is not None and os.pread(fd, len(expect_id[1]), expect_id[0]) != expect_id[1]:
            raise DatasetChangedError(f"{path}: this shard belongs to another dataset; {_REOPEN}")
        out = np.fromfile(f, dtype=dtype, count=count, offset=offset)
    if out.size != count:
        raise DatasetChangedError(f"{path}: short read ({out.size} of {count} items at offset {offset}); {_REOPEN}")
    return out


class ShardHandles:
    """Thread-safe LRU of per-shard open objects (mmap views or h5py datasets) for this process.

    Invariant: a closer runs only while no thread is pinned (between :meth:`pin` and
    :meth:`unpin`); evictions and :meth:`close` during a pinned section are deferred to
    the last :meth:`unpin`. Readers therefore pin, get what they need, read, then unpin.

    Args:
        opener: ``opener(shard_index) -> (obj, closer)``; ``closer()`` releases ``obj``.
        max_open: shards kept open at once (file descriptors are the scarce resource).
    """

    def __init__(self, opener: Callable[[int], tuple[Any, Callable[[], None]]], max_open: int = 512) -> None:
        self._opener = opener
        self.max_open = max(1, int(max_open))
        self._inherited: list[Any] = []
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._open: OrderedDict[int, tuple[Any, Callable[[], None]]] = OrderedDict()
        self._local: dict[str, Any] = {}
        # A lock held by another thread at fork time would never be released in the child.
        self.lock = threading.RLock()
        self._pinned = 0
        self._deferred: list[Callable[[], None]] = []

    def _check_pid(self) -> None:
        if os.getpid() != self._pid:
            # Forked child: never use or close the parent's handles; keep them referenced
            # so no HDF5/munmap call runs on inherited state.
            self._inherited.append((self._open, self._local, self._deferred))
            self._reset()

    @property
    def local(self) -> dict[str, Any]:
        """Scratch state of the owner for this process (reset in a forked child); use under ``lock``."""
        self._check_pid()
        return self._local

    def pin(self) -> None:
        """Enter a read: nothing is closed until the matching :meth:`unpin`."""
        self._check_pid()
        with self.lock:
            self._pinned += 1

    def unpin(self) -> None:
        """Leave a read; the last reader out runs the deferred closes."""
        with self.lock:
            self._pinned -= 1
            if self._pinned == 0 and self._deferred:
                run, self._deferred = self._deferred, []
                for closer in run:
                    closer()

    def _release(self, closer: Callable[[], None]) -> None:
        if self._pinned:
            self._deferred.append(closer)
        else:
            closer()

    def touch(self, shards: list[int]) -> None:
        """Mark open ``shards`` as recently used (so opening others evicts them last)."""
        with self.lock:
            for s in shards:
                if s in self._open:
                    self._open.move_to_end(s)

    def get(self, shard: int) -> Any:
        """The open object for ``shard``, opening it (and evicting the oldest) if needed."""
        self._check_pid()
        with self.lock:
            hit = self._open.get(shard)
            if hit is not None:
                self._open.move_to_end(shard)
                return hit[0]
            obj, closer = self._opener(shard)
            self._open[shard] = (obj, closer)
            while len(self._open) > self.max_open:
                _, (_, old_closer) = self._open.popitem(last=False)
                self._release(old_closer)
            return obj

    def __len__(self) -> int:
        return len(self._open) if os.getpid() == self._pid else 0

    def close(self) -> None:
        """Release every handle this process opened (deferred while a read is in progress)."""
        self._check_pid()
        with self.lock:
            while self._open:
                _, (_, closer) = self._open.popitem(last=False)
                self._release(closer)
