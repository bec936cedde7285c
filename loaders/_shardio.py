"""Per-process, thread-safe LRU over open shards (the mapping itself: ``convert.reader``).

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

import os
import sys
import threading
from collections import OrderedDict
from typing import Any, Callable

__all__ = ["ShardHandles", "open_shard_budget"]

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
