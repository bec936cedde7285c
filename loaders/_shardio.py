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
"""

from __future__ import annotations

import mmap
import os
import sys
from collections import OrderedDict
from typing import Any, Callable

import numpy as np

__all__ = ["ShardHandles", "map_file", "read_array", "open_shard_budget"]

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


def map_file(path: str) -> mmap.mmap:
    """Map ``path`` read-only with random-access advice; the caller's fd is closed at once."""
    fd = os.open(path, os.O_RDONLY)
    try:
        mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ, **_MMAP_KW)
    finally:
        os.close(fd)
    if hasattr(mm, "madvise") and hasattr(mmap, "MADV_RANDOM"):
        mm.madvise(mmap.MADV_RANDOM)
    return mm


def read_array(path: str, dtype: np.dtype, count: int, offset: int) -> np.ndarray:
    """Read ``count`` items of ``dtype`` at byte ``offset`` with one ``pread``-style call."""
    if count == 0:
        return np.empty(0, dtype=dtype)
    with open(path, "rb") as f:
        out = np.fromfile(f, dtype=dtype, count=count, offset=offset)
    if out.size != count:
        raise OSError(f"{path}: short read ({out.size} of {count} items at offset {offset})")
    return out


class ShardHandles:
    """LRU of per-shard open objects (mmap views or h5py datasets) for the current process.

    Args:
        opener: ``opener(shard_index) -> (obj, closer)``; ``closer()`` releases ``obj``.
        max_open: shards kept open at once (file descriptors are the scarce resource).
    """

    def __init__(self, opener: Callable[[int], tuple[Any, Callable[[], None]]], max_open: int = 512) -> None:
        self._opener = opener
        self.max_open = max(1, int(max_open))
        self._pid = os.getpid()
        self._open: OrderedDict[int, tuple[Any, Callable[[], None]]] = OrderedDict()
        self._inherited: list[Any] = []
        self._local: dict[str, Any] = {}

    def _check_pid(self) -> None:
        if os.getpid() != self._pid:
            # Forked child: never use or close the parent's handles; keep them referenced
            # so no HDF5/munmap call runs on inherited state.
            self._inherited.append((self._open, self._local))
            self._open = OrderedDict()
            self._local = {}
            self._pid = os.getpid()

    @property
    def local(self) -> dict[str, Any]:
        """Scratch state of the owner for this process (reset in a forked child)."""
        self._check_pid()
        return self._local

    def touch(self, shards: list[int]) -> None:
        """Mark open ``shards`` as recently used (so opening others evicts them last)."""
        for s in shards:
            if s in self._open:
                self._open.move_to_end(s)

    def get(self, shard: int) -> Any:
        """The open object for ``shard``, opening it (and evicting the oldest) if needed."""
        self._check_pid()
        hit = self._open.get(shard)
        if hit is not None:
            self._open.move_to_end(shard)
            return hit[0]
        obj, closer = self._opener(shard)
        self._open[shard] = (obj, closer)
        while len(self._open) > self.max_open:
            _, (_, old_closer) = self._open.popitem(last=False)
            old_closer()
        return obj

    def __len__(self) -> int:
        return len(self._open) if os.getpid() == self._pid else 0

    def close(self) -> None:
        """Release every handle this process opened."""
        self._check_pid()
        while self._open:
            _, (_, closer) = self._open.popitem(last=False)
            closer()
