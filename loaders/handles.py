"""Per-process, thread-safe LRU over open shards (the mapping itself: ``shards.reader``).

Why this shape:

* One ``mmap`` per *file* (numpy views at the manifest's dataset offsets), not one
  ``np.memmap`` per dataset: CPython's mmap keeps a dup of the file descriptor, so eight
  ``np.memmap`` objects per shard would cost eight descriptors. On Python >= 3.13 the
  mapping keeps none (``trackfd=False``).
* ``madvise(MADV_RANDOM)``: the default 8 MiB read-ahead would fault in 8 MiB per random
  row once the data exceeds the page cache.
* **One descriptor budget per process**, shared by every open dataset: all
  :class:`ShardHandles` of a process share one lock and one LRU of open shards
  (:class:`_Budget`), whose size comes from ``RLIMIT_NOFILE`` (raised toward the hard limit
  when the datasets need it) less the descriptors already in use and a headroom. A train and
  a val set of ~8,500 shards each in one process therefore evict each other's oldest shards
  instead of failing with EMFILE.
* The cache belongs to one process: a forked child (``os.register_at_fork``) drops what it
  inherited, closing the inherited mappings' descriptors (munmap in the child never touches
  the parent's copies; inherited HDF5 handles are only kept referenced, never used), and
  opens its own files on first use. ``os.getpid()`` is checked as well, for a fork that
  bypasses the hooks.
* Sequential reads of whole chunks (the iterable and chunk-shuffle modes) use ``pread``
  (``np.fromfile`` at an offset) instead, so they get the kernel's read-ahead.
* Identity: every open compares the file's ``(inode, device, size, mtime)`` with what the
  reader recorded when it opened the dataset; a rebuilt or replaced shard raises
  :class:`shards.DatasetChangedError` instead of serving another dataset's bytes.
* Threads: every access runs between :meth:`ShardHandles.pin` and :meth:`ShardHandles.unpin`.
  An eviction while *another* thread is pinned on the same dataset only *defers* the close:
  a mapping is unmapped only when no other thread can be reading it (the span gather reads
  raw addresses, which no Python reference keeps alive). The evicting thread's own pins do
  not defer it: no code path holds a span snapshot while it opens shards, so a batch that
  touches more shards than the budget keeps at most the budget open.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref

try:  # imported here, not on first use: a fork during another thread's import would hang the child
    import resource
except ImportError:  # not a Unix: no descriptor limit to read
    resource = None  # type: ignore[assignment]
from collections import OrderedDict
from typing import Any, Callable

__all__ = ["ShardHandles", "open_shard_budget", "process_budget"]

_FD_HEADROOM = 256  # descriptors left for sockets, worker pipes, logs, ... (at most half the limit)


def _headroom(soft: int) -> int:
    return min(_FD_HEADROOM, soft // 2)


def open_shard_budget(num_shards: int, in_use: int = 0) -> int:
    """How many shards this process may keep mapped: all of them if descriptors allow.

    A full shuffle touches every shard in every batch once there are hundreds, so an LRU
    smaller than the shard count turns each batch into a churn of open/close. On Python <
    3.13 each mapping holds a descriptor: raise this process's soft RLIMIT_NOFILE toward
    the hard limit when needed, and keep ``in_use`` (descriptors open for other things) plus
    a headroom (256, or half a smaller limit) free.
    """
    if sys.version_info >= (3, 13):
        return max(1, num_shards)
    try:
        if resource is None:
            raise ImportError("no resource module")
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = num_shards + in_use + _FD_HEADROOM
        if soft != resource.RLIM_INFINITY and soft < want:
            new = want if hard == resource.RLIM_INFINITY else min(want, hard)
            if new > soft:
                resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
                soft = new
    except (ImportError, ValueError, OSError):
        return max(1, min(num_shards, 512))
    if soft == resource.RLIM_INFINITY:
        return max(1, num_shards)
    return max(1, min(num_shards, soft - in_use - _headroom(soft)))


def _fds_in_use() -> int:
    """Descriptors open in this process now (0 where ``/proc/self/fd`` is unavailable)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # listdir's own descriptor
    except OSError:
        return 0


class _Budget:
    """The process's one lock and one LRU of open shards, across every :class:`ShardHandles`."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.RLock()
        # (id(handles), shard) -> weak reference to the handles holding it; oldest first.
        self.lru: OrderedDict[tuple[int, int], weakref.ref[ShardHandles]] = OrderedDict()
        self.members: weakref.WeakSet[ShardHandles] = weakref.WeakSet()
        self._limit: int | None = None

    @property
    def limit(self) -> int:
        """Shards all datasets of this process may keep open together (computed on demand)."""
        if self._limit is None:
            with self.lock:
                wanted = sum(h.num_shards for h in list(self.members))
                others = max(0, _fds_in_use() - len(self.lru))
                self._limit = open_shard_budget(max(1, wanted), others)
        return self._limit

    def join(self, handles: ShardHandles) -> None:
        """Count ``handles``'s shards in the budget (the limit is recomputed on next use)."""
        with self.lock:
            self.members.add(handles)
            self._limit = None

    def opened(self, handles: ShardHandles, shard: int) -> None:
        """Record an open shard; close the process's oldest ones beyond the limit (lock held)."""
        key = (id(handles), shard)
        self.lru[key] = weakref.ref(handles)
        self.lru.move_to_end(key)  # a key left by a dead handles of the same id
        limit = self.limit
        while len(self.lru) > limit:
            (_, old_shard), ref = self.lru.popitem(last=False)
            owner = ref()
            if owner is not None:  # a dead owner's mappings went with it
                owner._evict(old_shard, own_pins=1 if owner is handles else 0)  # handles.get runs pinned

    def used(self, handles: ShardHandles, shard: int) -> None:
        key = (id(handles), shard)
        if key in self.lru:
            self.lru.move_to_end(key)

    def forget(self, handles: ShardHandles, shard: int) -> None:
        self.lru.pop((id(handles), shard), None)

    def after_fork(self) -> None:
        """In a forked child (once per process): fresh lock and LRU; every member drops what it inherited."""
        if self.pid == os.getpid():
            return
        self.pid = os.getpid()
        self.lock = threading.RLock()
        self.lru = OrderedDict()
        self._limit = None
        for handles in list(self.members):
            handles._drop_inherited()


_BUDGET = _Budget()


def process_budget() -> _Budget:
    """This process's shared descriptor budget (one lock, one LRU, one limit)."""
    return _BUDGET


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _BUDGET.after_fork())


class ShardHandles:
    """Thread-safe LRU of per-shard open objects (mmap views or h5py datasets) for this process.

    Invariant: a closer runs only while no *other* thread is pinned (between :meth:`pin` and
    :meth:`unpin`); evictions and :meth:`close` while another thread is pinned are deferred
    to the last :meth:`unpin`. Readers therefore pin, get what they need, read, then unpin,
    call :meth:`get` only while pinned, and never hold a raw-address snapshot across it.

    Args:
        opener: ``opener(shard_index) -> (obj, closer)``; ``closer()`` releases ``obj``. A
            closer with ``fork_safe = True`` may also run in a forked child (plain mappings).
        max_open: this dataset's own cap on open shards (the process budget caps it too).
        num_shards: shards of the dataset, counted in the process budget.
    """

    def __init__(
        self, opener: Callable[[int], tuple[Any, Callable[[], None]]], max_open: int | None = None, num_shards: int = 1
    ) -> None:
        self._opener = opener
        self._max_open = None if max_open is None else max(1, int(max_open))
        self.num_shards = max(1, int(num_shards))
        self._inherited: list[Any] = []
        self._reset()
        _BUDGET.join(self)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._open: OrderedDict[int, tuple[Any, Callable[[], None]]] = OrderedDict()
        self._local: dict[str, Any] = {}
        self._pinned = 0
        self._deferred: list[Callable[[], None]] = []

    @property
    def lock(self) -> threading.RLock:
        """The process-wide lock every dataset's handles share (replaced in a forked child)."""
        return _BUDGET.lock

    @property
    def max_open(self) -> int:
        """Shards this dataset may have open at once: its own cap within the process budget."""
        limit = _BUDGET.limit
        return limit if self._max_open is None else min(self._max_open, limit)

    def _drop_inherited(self) -> None:
        """In a forked child: forget the parent's handles, closing only what is safe to close."""
        if self._pid == os.getpid():
            return
        for _, closer in list(self._open.values()) + [(None, c) for c in self._deferred]:
            if getattr(closer, "fork_safe", False):
                try:
                    closer()  # unmaps the child's copy and closes the child's descriptor
                except Exception:  # noqa: BLE001 - best effort; the parent is unaffected
                    pass
        # Keep the rest referenced so no HDF5 call runs on inherited state.
        self._inherited.append((self._open, self._local, self._deferred))
        self._reset()

    def _check_pid(self) -> None:
        if os.getpid() != self._pid:  # a fork the hook did not see (it normally runs first)
            _BUDGET.after_fork()
            self._drop_inherited()

    @property
    def local(self) -> dict[str, Any]:
        """Scratch state of the owner for this process (reset in a forked child); use under ``lock``."""
        self._check_pid()
        return self._local

    def pin(self) -> None:
        """Enter a read: nothing is closed under it by another thread until the matching :meth:`unpin`."""
        self._check_pid()
        with _BUDGET.lock:
            self._pinned += 1

    def unpin(self) -> None:
        """Leave a read; the last reader out runs the deferred closes."""
        with _BUDGET.lock:
            self._pinned -= 1
            if self._pinned == 0 and self._deferred:
                run, self._deferred = self._deferred, []
                for closer in run:
                    closer()

    def _release(self, closer: Callable[[], None], own_pins: int = 0) -> None:
        # own_pins: pins of the calling thread on this dataset (1 inside get(), which is
        # called pinned); any pin beyond them is another thread that may read these addresses.
        if self._pinned > own_pins:
            self._deferred.append(closer)
        else:
            closer()

    def _evict(self, shard: int, own_pins: int = 0) -> None:
        """Close ``shard`` for the process budget (lock held; ``own_pins`` as in :meth:`_release`)."""
        hit = self._open.pop(shard, None)
        if hit is not None:
            self._release(hit[1], own_pins)

    def touch(self, shards: list[int]) -> None:
        """Mark open ``shards`` as recently used (so opening others evicts them last)."""
        with _BUDGET.lock:
            for s in shards:
                if s in self._open:
                    self._open.move_to_end(s)
                    _BUDGET.used(self, s)

    def get(self, shard: int) -> Any:
        """The open object for ``shard``, opening it (and evicting the oldest) if needed.

        Call it pinned (see the class invariant): the caller's own pin does not defer the
        closes of what it evicts, so a batch over more shards than the budget keeps at most
        the budget open.
        """
        self._check_pid()
        with _BUDGET.lock:
            hit = self._open.get(shard)
            if hit is not None:
                self._open.move_to_end(shard)
                _BUDGET.used(self, shard)
                return hit[0]
            obj, closer = self._opener(shard)
            self._open[shard] = (obj, closer)
            while self._max_open is not None and len(self._open) > self._max_open:
                old, (_, old_closer) = self._open.popitem(last=False)
                _BUDGET.forget(self, old)
                self._release(old_closer, own_pins=1)
            _BUDGET.opened(self, shard)
            return obj

    def __len__(self) -> int:
        return len(self._open) if os.getpid() == self._pid else 0

    def close(self) -> None:
        """Release every handle this process opened (deferred while another thread reads)."""
        self._check_pid()
        with _BUDGET.lock:
            while self._open:
                s, (_, closer) = self._open.popitem(last=False)
                _BUDGET.forget(self, s)
                self._release(closer)
