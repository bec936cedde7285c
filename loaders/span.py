"""One gather across every mapped shard: the span table (the only raw-address code).

A batch drawn uniformly from hundreds of shards touches hundreds of them, and a numpy call
per shard would cost more than the copy. Instead the address range spanning every
registered mapping is viewed as one byte-strided array per field (``ctypes`` gives the
buffer), and global row -> address arithmetic gathers the whole batch in one fancy-index
per field.

Invariant (what makes the raw view safe):

1. Only rows of *registered* shards are read: an unregistered shard's base is -2^62, so any
   index computed from it is out of bounds and numpy raises IndexError.
2. A registered shard's mapping stays mapped while any snapshot taken after its
   registration is in use. The owner guarantees it: ``ShardDataset`` registers and
   unregisters under ``ShardHandles.lock``, takes a snapshot there, and gathers while
   pinned, so the closer that unregisters and unmaps runs only when no reader holds a
   snapshot (``ShardHandles`` defers closes while pinned).
3. Row indices are bounds-checked against the dataset before they get here.

The gaps between mappings inside the span are never read (1 and 3).

The compiled pass (:meth:`SpanTable.gather_rows`, numba, ``nogil``) keeps the same
invariant with explicit checks instead of numpy's: it bounds-checks every global index,
finds its shard, refuses a shard whose base is the unregistered marker and checks every
byte address against the span before copying. It does in one call what the numpy path does
in about ten (each numpy call costs about a microsecond, the size of a 256-row copy); the
numpy path stays for when numba cannot be imported.

Both passes also check what they serve: a label outside 0..C-1 or a length outside 0..L (a
corrupt shard) is refused through the owner's ``on_bad`` callback, which names the shard and
row; the compiled pass compares each row's two values as it copies them, the numpy path does
one vectorised comparison per field and batch.

Fork safety: the compiled passes are imported, compiled (or loaded from numba's cache) and
run once on empty arrays under ``_KERNEL_LOCK``, and an ``os.register_at_fork`` hook takes
that lock before every fork. A fork therefore never happens while another thread is inside
numba's import or compiler (whose locks a child would inherit held and wait on forever): it
waits until the load is done, and the child gets a fresh lock and the loaded passes. Should
the wait exceed ``_FORK_WAIT_S`` the child is forked anyway and serves with the numpy path,
never importing numba itself.

The prefetch pass (:meth:`SpanTable.prefetch_rows`) walks the same addresses without
copying: for each row's byte range of each field it asks ``mincore`` whether the pages are
resident and, where not, issues ``madvise(MADV_WILLNEED)``, which starts the reads and
returns at once. A cold batch then has all its reads in flight together (the disk's queue
depth, not its latency, bounds the rate) before the gather faults on them. It reads no
data and skips anything the gather would refuse.
"""

from __future__ import annotations

import ctypes
import importlib
import mmap
import os
import sys
import threading
from typing import Any, Callable, Mapping, NamedTuple

import numpy as np

from shards.reader import first_bad_row

__all__ = ["SpanTable", "SpanSnapshot", "FIELDS", "guarded_import"]

# Fields gathered by address, and their item sizes per row (input_ids: L int16 per row).
FIELDS = ("input_ids", "lengths", "labels")
_UNOPENED = -(1 << 62)


class SpanSnapshot(NamedTuple):
    """Views over the span of the mappings registered when it was taken."""

    base: np.ndarray  # (3, S) int64: field k of global row i of shard s at base[k, s] + i * item[k]
    ids: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray
    raw: np.ndarray  # the span's bytes (uint8): what the compiled pass copies from


# Status codes of the compiled pass.
_OK, _OUT_OF_RANGE, _UNREGISTERED, _OUTSIDE_SPAN, _BAD_VALUE = 0, 1, 2, 3, 4


def _locate_py(i: int, starts: np.ndarray, base: np.ndarray) -> tuple[int, int]:
    """``(row, shard)`` of global row ``i`` (negative counts from the end); the shard is -1 if
    the row is out of range, -2 if its shard is not registered. Compiled with the passes."""
    n = starts[-1]
    if i < 0:
        i += n
    if i < 0 or i >= n:
        return i, -1
    lo, hi = 0, starts.size - 1  # the last shard with starts[s] <= i (searchsorted "right" - 1)
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if starts[mid] <= i:
            lo = mid
        else:
            hi = mid
    if base[0, lo] == _UNOPENED:
        return i, -2
    return i, lo


# The passes call the compiled _locate_py through this name (bound in _kernel()).
_locate: Any = _locate_py


def _gather_rows_py(idx: np.ndarray, starts: np.ndarray, base: np.ndarray, item: np.ndarray, raw: np.ndarray,
                    out_ids: np.ndarray, out_lens: np.ndarray, out_labs: np.ndarray) -> int:
    """Locate, check and copy global rows ``idx`` (compiled by numba; see the module invariant).

    ``out_ids`` is the (B, L) int16 output viewed as (B, 2L) bytes. Fields are assembled
    from little-endian bytes because a row's address has no alignment. ``item`` holds the three
    fields' row sizes, then C and L (fewer arguments: each costs the dispatcher a type check);
    the pass stops with ``_BAD_VALUE`` after copying the first row whose label is outside
    0..C-1 or length outside 0..L.
    """
    W = out_ids.shape[1]
    num_classes, max_length = item[3], item[4]
    top = raw.size
    for k in range(idx.size):
        i, lo = _locate(idx[k], starts, base)
        if lo < 0:
            return _OUT_OF_RANGE if lo == -1 else _UNREGISTERED
        o0 = base[0, lo] + item[0] * i
        o1 = base[1, lo] + item[1] * i
        o2 = base[2, lo] + item[2] * i
        if o0 < 0 or o1 < 0 or o2 < 0 or o0 + W > top or o1 + 2 > top or o2 + 4 > top:
            return _OUTSIDE_SPAN
        for j in range(W):  # a plain byte loop: numba's slice copy is several times slower here
            out_ids[k, j] = raw[o0 + j]
        out_lens[k] = np.int16(np.int32(raw[o1]) | (np.int32(raw[o1 + 1]) << 8))
        out_labs[k] = np.int32(
            np.uint32(raw[o2]) | (np.uint32(raw[o2 + 1]) << 8) | (np.uint32(raw[o2 + 2]) << 16)
            | (np.uint32(raw[o2 + 3]) << 24)
        )
        if out_labs[k] < 0 or out_labs[k] >= num_classes or out_lens[k] < 0 or out_lens[k] > max_length:
            return _BAD_VALUE
    return _OK


def _prefetch_rows_py(idx: np.ndarray, starts: np.ndarray, base: np.ndarray, item: np.ndarray, raw: np.ndarray,
                      width: int, page: int, advice: int) -> int:
    """Issue ``madvise(advice)`` on the non-resident pages of rows ``idx``; return how many ranges.

    ``width``: bytes of one row of ``input_ids`` (2L). Rows the gather would refuse are skipped.
    """
    top = raw.size
    origin = raw.ctypes.data
    vec = np.empty(width // page + 2, dtype=np.uint8)  # mincore's answer: one byte per page
    vaddr = vec.ctypes.data
    issued = 0
    for k in range(idx.size):
        i, lo = _locate(idx[k], starts, base)
        if lo < 0:
            continue
        for f in range(3):
            w = width if f == 0 else (2 if f == 1 else 4)
            o = base[f, lo] + item[f] * i
            if o < 0 or o + w > top:
                continue
            a = origin + o
            a0 = a - a % page  # both calls want a page-aligned start; a row may straddle pages
            size = a + w - a0
            if _mincore(a0, size, vaddr) != 0:
                continue
            resident = True
            for p in range((size + page - 1) // page):
                if (vec[p] & 1) == 0:
                    resident = False
            if not resident:
                _madvise(a0, size, advice)
                issued += 1
    return issued


_KERNEL: list[Callable[..., int] | None] = []  # [compiled pass or None], filled on first use
# Held while a pass is imported and compiled, and by the fork hook (see the module docstring).
_KERNEL_LOCK = threading.RLock()
_LOADING: list[int] = [0]  # loads in progress (read by the fork hook)
_FORK_WAIT_S = 300.0  # the longest a fork waits for a load in another thread (a cold compile: seconds)
_fork_state = threading.local()
_PREFETCH: list[Callable[..., int] | None] = []
_madvise: Any = None
_mincore: Any = None


def _empty_args() -> tuple[Any, ...]:
    """Arguments of the passes' exact types (the real calls' flags), over no rows: for compiling."""
    raw = np.zeros(8, dtype=np.uint8)
    raw.flags.writeable = False  # snapshots are read-only views
    return (np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros((3, 1), np.int64), np.zeros(5, np.int64), raw)


def _load(slot: list[Callable[..., int] | None], make: Callable[[], Callable[..., int] | None]) -> Callable[..., int] | None:
    """Fill ``slot`` once with ``make()``, under ``_KERNEL_LOCK`` (import and compile included)."""
    if not slot:
        with _KERNEL_LOCK:
            if not slot:
                _LOADING[0] += 1
                try:
                    fn = make()
                except Exception:  # numba missing or broken: the numpy path serves
                    fn = None
                finally:
                    _LOADING[0] -= 1
                slot.append(fn)
    return slot[0]


def _make_gather() -> Callable[..., int] | None:
    global _locate
    if sys.byteorder != "little":  # the pass assembles fields from little-endian bytes
        return None
    import numba

    _locate = numba.njit(nogil=True, cache=True, inline="always")(_locate_py)
    fn = numba.njit(nogil=True, cache=True)(_gather_rows_py)
    # Compile now, under the lock: a first call elsewhere would compile outside it.
    fn(*_empty_args(), np.empty((0, 2), np.uint8), np.empty(0, np.int16), np.empty(0, np.int64))
    return fn


def _make_prefetch() -> Callable[..., int] | None:
    global _madvise, _mincore
    if not (sys.platform.startswith("linux") and hasattr(mmap, "MADV_WILLNEED") and _kernel() is not None):
        return None
    from numba import njit, types

    # Addresses travel as intp (a pointer's width here); linked by symbol name, so numba can
    # cache the compiled pass on disk. Old numba without these: prefetching is an optimisation.
    _madvise = types.ExternalFunction("madvise", types.intc(types.intp, types.uintp, types.intc))
    _mincore = types.ExternalFunction("mincore", types.intc(types.intp, types.uintp, types.intp))
    fn = njit(nogil=True, cache=True)(_prefetch_rows_py)
    fn(*_empty_args(), 2, mmap.PAGESIZE, mmap.MADV_WILLNEED)
    return fn


def _prefetch_kernel() -> Callable[..., int] | None:
    """The compiled prefetch pass, or None (no numba, or no ``madvise``/``mincore`` here)."""
    return _load(_PREFETCH, _make_prefetch)


def _kernel() -> Callable[..., int] | None:
    """The compiled pass, or None without numba (imported on first use: ``import loaders`` stays light)."""
    return _load(_KERNEL, _make_gather)


def guarded_import(name: str) -> Any:
    """``import name`` under ``_KERNEL_LOCK``: a fork waits for it instead of copying a half-done import."""
    module = sys.modules.get(name)
    if module is not None and getattr(getattr(module, "__spec__", None), "_initializing", False) is False:
        return module
    with _KERNEL_LOCK:
        _LOADING[0] += 1
        try:
            return importlib.import_module(name)
        finally:
            _LOADING[0] -= 1


def _before_fork() -> None:
    # Wait for a load in another thread: the child must not inherit numba half-imported.
    _fork_state.held = _KERNEL_LOCK.acquire(timeout=_FORK_WAIT_S)


def _after_fork_parent() -> None:
    if getattr(_fork_state, "held", False):
        _fork_state.held = False
        _KERNEL_LOCK.release()


def _after_fork_child() -> None:
    global _KERNEL_LOCK
    held = getattr(_fork_state, "held", False)
    _fork_state.held = False
    _KERNEL_LOCK = threading.RLock()
    if not held and _LOADING[0]:  # forked mid-load after the wait: never import numba here
        _LOADING[0] = 0
        for slot in (_KERNEL, _PREFETCH):
            if not slot:
                slot.append(None)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_parent, after_in_child=_after_fork_child)


class SpanTable:
    """Addresses of each shard's ``input_ids``/``lengths``/``labels`` mapping and gathers by them.

    Args:
        starts: (S+1,) cumulative row counts of the shards.
        max_length: L.
        compiled: use the numba pass in :meth:`gather_rows` when numba can be imported
            (False: :meth:`gather_rows` always answers None, callers use :meth:`gather`).
        num_classes: C: a gathered label outside 0..C-1 is refused.
        on_bad: ``on_bad(global_row, label, length)`` returns the exception to raise for a
            row whose label or length (0..L) is out of range (default: a ValueError).
    """

    def __init__(self, starts: np.ndarray, max_length: int, compiled: bool = True, num_classes: int = 1 << 31,
                 on_bad: Callable[[int, int, int], BaseException] | None = None) -> None:
        self._starts = np.array(starts, dtype=np.int64)  # a writeable copy: the compiled signature's flags
        self._want_compiled = bool(compiled)
        self._counts = np.diff(self._starts)
        self._L = int(max_length)
        self._C = int(num_classes)
        self._on_bad = on_bad
        self._item = np.array([[2 * self._L], [2], [4]], dtype=np.int64)
        self._item_flat = np.array([2 * self._L, 2, 4, self._C, self._L], dtype=np.int64)  # sizes, then C and L
        self.addr = np.full((3, self._counts.size), -1, dtype=np.int64)
        self.live = 0
        self._snapshot: SpanSnapshot | None = None

    def register(self, s: int, views: Mapping[str, np.ndarray]) -> int:
        """Record shard ``s``'s mapped views; return a token for :meth:`unregister`."""
        for k, name in enumerate(FIELDS):
            view = views[name]
            if view.dtype != (np.int16, np.int16, np.int32)[k] or not view.flags.c_contiguous:
                raise ValueError(f"span field {name} must be a contiguous {view.dtype} view")
        self.addr[:, s] = [views[name].ctypes.data for name in FIELDS]
        self.live = int((self.addr[0] >= 0).sum())
        self._snapshot = None
        return int(self.addr[0, s])

    def unregister(self, s: int, token: int) -> None:
        """Forget shard ``s`` if ``token`` is still its registration (not a later one)."""
        if self.addr[0, s] == token:
            self.addr[:, s] = -1
            self.live = int((self.addr[0] >= 0).sum())
            self._snapshot = None

    @property
    def compiled(self) -> bool:
        """Whether :meth:`gather_rows` runs the compiled pass (numba importable and wanted)."""
        return self._want_compiled and _kernel() is not None

    @property
    def can_prefetch(self) -> bool:
        """Whether :meth:`prefetch_rows` can issue reads here (numba and Linux ``madvise``/``mincore``)."""
        return self._want_compiled and _prefetch_kernel() is not None

    def current(self) -> SpanSnapshot | None:
        """The cached snapshot, or None after a change (then take :meth:`snapshot` under the owner's lock).

        Lock-free: the cache is replaced by one attribute store, and a reader that pinned
        before reading it holds off the unmapping of everything it covers (invariant 2).
        """
        return self._snapshot

    def missing(self, shard: np.ndarray) -> np.ndarray:
        """The entries of ``shard`` (shard numbers) that are not registered."""
        return shard[self.addr[0, shard] < 0]

    def snapshot(self) -> SpanSnapshot:
        """Views over the span of all registered mappings (cached until the next change)."""
        snap = self._snapshot
        if snap is None:
            addr, L = self.addr, self._L
            live = np.flatnonzero(addr[0] >= 0)
            if not live.size:
                raise ValueError("no shard is registered")
            n = self._counts[live]
            lo = int(addr[:, live].min())
            hi = int(max((addr[0, live] + n * L * 2).max(), (addr[1, live] + n * 2).max(), (addr[2, live] + n * 4).max()))
            u8 = np.frombuffer((ctypes.c_char * (hi - lo)).from_address(lo), dtype=np.uint8)
            ids = np.ndarray((hi - lo - 2 * L + 1, L), dtype=np.int16, buffer=u8, strides=(1, 2))
            lens = np.ndarray((hi - lo - 1,), dtype=np.int16, buffer=u8, strides=(1,))
            labs = np.ndarray((hi - lo - 3,), dtype=np.int32, buffer=u8, strides=(1,))
            for view in (u8, ids, lens, labs):  # the mappings are read-only: a write would fault
                view.flags.writeable = False
            base = addr - lo - self._starts[None, :-1] * self._item
            base[:, addr[0] < 0] = _UNOPENED
            snap = self._snapshot = SpanSnapshot(base, ids, lens, labs, u8)
        return snap

    def gather(self, snap: SpanSnapshot, shard: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
        """Global rows ``idx`` (in shards ``shard``) as ``input_ids``/``lengths``/``labels`` (int64)."""
        # One take and one broadcast multiply-add for all three fields (each numpy call costs
        # about a microsecond, a fair share of a 256-row batch).
        b = snap.base.take(shard, axis=1)
        b += self._item * idx
        out = {
            "input_ids": snap.ids[b[0]],
            "lengths": snap.lengths[b[1]],
            "labels": snap.labels[b[2]].astype(np.int64),
        }
        self._check(idx, out)
        return out

    def _check(self, idx: np.ndarray, out: Mapping[str, np.ndarray]) -> None:
        """Raise the owner's error for the first row whose label or length is out of range."""
        k = first_bad_row(out["lengths"], out["labels"], self._L, self._C)
        if k >= 0:
            i = int(idx[k])
            if i < 0:
                i += int(self._starts[-1])
            lab, ln = int(out["labels"][k]), int(out["lengths"][k])
            if self._on_bad is not None:
                raise self._on_bad(i, lab, ln)
            raise ValueError(f"row {i}: label {lab} or length {ln} out of range")

    def gather_rows(self, snap: SpanSnapshot | None, idx: np.ndarray) -> dict[str, np.ndarray] | None:
        """Global rows ``idx`` (int64, negatives count from the end) in one compiled pass.

        Returns the fields as :meth:`gather` does, or None when the pass cannot serve the
        batch: no snapshot, no compiled pass, an index out of range, or a row whose shard is
        not registered in ``snap``. The caller then takes the numpy path, which opens what
        is missing and raises the error that names a bad index.

        Raises:
            IndexError: an address outside the span (the invariant was broken; never served).
            Exception: ``on_bad``'s, for a label or length out of range.
        """
        if snap is None or not self._want_compiled:
            return None
        kernel = _kernel()
        if kernel is None:
            return None
        if not (idx.flags.c_contiguous and idx.flags.writeable):
            idx = idx.copy()  # one compiled signature for every batch (numba types those flags)
        B = idx.shape[0]
        ids = np.empty((B, self._L), dtype=np.int16)
        lengths = np.empty(B, dtype=np.int16)
        labels = np.empty(B, dtype=np.int64)
        status = kernel(idx, self._starts, snap.base, self._item_flat, snap.raw, ids.view(np.uint8), lengths, labels)
        if status == _OK:
            return {"input_ids": ids, "lengths": lengths, "labels": labels}
        if status == _BAD_VALUE:  # rows after the bad one were not copied: the first bad one is it
            self._check(idx, {"lengths": lengths, "labels": labels})
        if status == _OUTSIDE_SPAN:
            raise IndexError("span gather: a row address falls outside the mapped span (reader bug; please report)")
        return None

    def prefetch_rows(self, snap: SpanSnapshot | None, idx: np.ndarray) -> int:
        """Start reading the non-resident pages of global rows ``idx`` (asynchronous; copies nothing).

        Returns the number of byte ranges issued (0: every page was resident), or -1 when
        it cannot run (no snapshot, no compiled pass). The caller holds the pin that keeps
        ``snap``'s mappings mapped; a bad or unregistered row is skipped (the gather reports it).
        """
        if snap is None or not self._want_compiled:
            return -1
        kernel = _prefetch_kernel()
        if kernel is None:
            return -1
        if not (idx.flags.c_contiguous and idx.flags.writeable):
            idx = idx.copy()
        return int(kernel(idx, self._starts, snap.base, self._item_flat, snap.raw, 2 * self._L,
                          mmap.PAGESIZE, mmap.MADV_WILLNEED))
