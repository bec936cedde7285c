"""Rows of a readshard dataset by global index: per-process shard handles, the span gather
with its cold-batch prefetch, and the per-shard fallback (compressed layout, too many shards).

:class:`ShardGather` is the I/O half of :class:`loaders.ShardDataset`: it maps shards through
``shards.ShardReader`` in the process that reads them (:mod:`loaders.handles`),
registers each mapping in the span table (:mod:`loaders.span`) and pickles as the reader plus
a few flags, so DataLoader workers (``fork``, ``spawn``, ``forkserver``) rebuild their own.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import numpy as np

from shards import CHUNK_ROWS, FormatError
from shards.reader import ShardReader
from loaders.handles import ShardHandles
from loaders.span import SpanTable, guarded_import

__all__ = ["ShardGather", "as_index_array", "distinct", "group_runs", "SHARD_FIELDS"]

# Everything a shard's mapping exposes (``input_ids`` comes from HDF5 in the compressed layout).
SHARD_FIELDS = ("input_ids", "lengths", "labels", "class_rows", "class_ids", "tax_ids", "class_offsets")
# A gather slower than this went to the disk for a fair share of its rows: check the next batch.
# A resident row costs well under a microsecond once mapped and ~2 us on its first touch of a
# fresh mapping (three minor faults); a read from disk costs 50 us or more.
_COLD_NS_FIXED, _COLD_NS_PER_ROW = 200_000, 8_000


def as_index_array(indices: Any) -> np.ndarray:
    """``indices`` as a flat int64 array; TypeError for non-integers, IndexError past int64."""
    idx = np.asarray(indices)
    if idx.dtype == np.bool_ or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
    if idx.dtype.kind == "u" and idx.size and int(idx.max()) > np.iinfo(np.int64).max:
        # astype(int64) would wrap these to negative indices, i.e. rows counted from the end
        raise IndexError(f"index {int(idx.max())} out of range")
    return idx.astype(np.int64, copy=False).reshape(-1)


def distinct(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values. Not ``np.unique``: its first call imports ``numpy.ma``, and a
    fork while another thread is inside that import leaves the child waiting on its lock forever."""
    a = np.sort(a)
    if a.size < 2:
        return a
    keep = np.empty(a.size, dtype=bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


def group_runs(keys: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """``(key, positions)`` for each distinct key (ascending), positions in input order.

    The one group-rows-by-shard (or by chunk) step: a stable sort, then one slice per run.
    """
    if not keys.size:
        return
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    cuts = np.flatnonzero(sk[1:] != sk[:-1]) + 1
    for a, b in zip(np.r_[0, cuts].tolist(), np.r_[cuts, keys.size].tolist()):
        yield int(sk[a]), order[a:b]


def read_compressed_rows(dset: Any, rows: np.ndarray) -> np.ndarray:
    """Rows of an HDF5 ``input_ids`` dataset: each distinct chunk touched decompressed once."""
    out = np.empty((rows.size, dset.shape[1]), dtype=np.int16)
    chunk = (dset.chunks or (CHUNK_ROWS,))[0]
    for c, pos in group_runs(rows // chunk):
        block = dset[c * chunk : min((c + 1) * chunk, dset.shape[0])]
        out[pos] = block[rows[pos] - c * chunk]
    return out


class ShardGather:
    """Per-process handles over a dataset's shards and the gathers that read through them.

    Args:
        reader: the dataset's validated reader (manifest, files, offsets, row counts).
        max_open: shards kept mapped per process (None: the process's descriptor budget).
        advice: ``madvise`` advice applied to each new mapping (or None).
        prefetch: issue ``MADV_WILLNEED`` for a cold batch's pages before gathering it.
    """

    def __init__(self, reader: ShardReader, *, max_open: int | None, advice: int | None, prefetch: bool) -> None:
        self.reader = reader
        self.starts = reader.starts
        self.max_length = int(reader.manifest["max_length"])
        self.num_classes = int(reader.manifest["num_classes"])
        self.max_open = max_open
        self.advice = advice
        self.prefetch = prefetch
        self.span = True  # False forces the per-shard path (tests compare both)
        self.kernel = True  # False forces the span table's numpy path (tests compare both)
        self.nonempty = int((reader.counts > 0).sum())
        self.fast_layout = reader.manifest["layout"] == "mmap"
        self._init_process_state()

    def _init_process_state(self) -> None:
        self.handles = ShardHandles(self.open_shard, self.max_open, self.reader.num_shards)
        # Prefetch state of this process: check residency (True) until a batch finds its
        # pages resident; threads share it (a stale value costs one check, never a wrong row).
        self.cold = True
        self.io = {"prefetch_checks": 0, "prefetch_ranges": 0}

    def __getstate__(self) -> dict[str, Any]:
        # Open maps and HDF5 handles are per process and rebuilt on first use.
        state = self.__dict__.copy()
        for key in ("handles", "cold", "io"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_process_state()

    def close(self) -> None:
        """Unmap every shard this process opened (they reopen on the next access)."""
        self.handles.close()
        self.cold = True  # their pages may be evicted by the time they reopen

    def pinned(self, fn: Callable[[], Any]) -> Any:
        """``fn()`` with the handles pinned: no mapping it uses is closed under it by another thread."""
        self.handles.pin()
        try:
            return fn()
        finally:
            self.handles.unpin()

    def open_shard(self, s: int) -> tuple[dict[str, Any], Callable[[], None]]:
        """Map shard ``s``: numpy views into one mmap (+ an h5py dataset when compressed).

        Called by ``ShardHandles.get`` under its lock; the closer runs under it too.
        """
        mm, views = self.reader.map(s, SHARD_FIELDS, self.advice)
        offsets = np.array(views.pop("class_offsets"))  # a copy: an error's traceback keeps it
        try:
            self.reader.check_class_offsets(s, offsets)
        except FormatError:
            views.clear()
            mm.close()
            raise
        table = self.span_table()
        registered = None
        if "input_ids" in views and self.reader.counts[s] > 0:
            registered = table.register(s, views)
        h5 = None
        if "input_ids" not in views:
            guarded_import("h5py")  # only the compressed layout needs HDF5 at read time

            h5 = self.reader.open_hdf5(s)
            views["input_ids"] = h5["input_ids"]

        def close() -> None:
            # A deferred close may run after the shard was mapped again: the token makes
            # it unregister only the mapping it registered.
            if registered is not None:
                table.unregister(s, registered)
            views.clear()
            if h5 is not None:
                h5.close()
            try:
                mm.close()
            except BufferError:  # a caller still holds a view; the GC unmaps it later
                pass

        close.fork_safe = h5 is None  # type: ignore[attr-defined]  # see loaders.handles
        return views, close

    def span_table(self) -> SpanTable:
        """This process's span table (built on first use, kept with the handles)."""
        local = self.handles.local
        table = local.get("span")
        if table is None:
            table = local["span"] = SpanTable(
                self.starts, self.max_length, num_classes=self.num_classes, on_bad=self.bad_row
            )
        return table

    def bad_row(self, i: int, label: int, length: int) -> Exception:
        """The error for global row ``i`` holding an out-of-range label or length (span gathers)."""
        s = int(self.starts.searchsorted(i, side="right")) - 1
        return self.reader.corrupt_row(s, i - int(self.starts[s]), label, length, i)

    def locate(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(shard, row)`` of global indices (negative count from the end); IndexError names a bad one."""
        n = int(self.starts[-1])
        if idx.size and (idx.min() < -n or idx.max() >= n):
            bad = idx[(idx < -n) | (idx >= n)][0]
            raise IndexError(f"index {int(bad)} out of range for a dataset of {n} reads")
        if idx.size and idx.min() < 0:
            idx = np.where(idx < 0, idx + n, idx)
        shard = np.searchsorted(self.starts, idx, side="right") - 1
        return shard, idx - self.starts[shard]

    def row(self, i: int) -> tuple[np.ndarray, int, int]:
        """Global row ``i`` (in range): its (L,) int64 token ids, length and label, checked."""
        shard, rows = self.locate(np.array([i], dtype=np.int64))
        s, r = int(shard[0]), int(rows[0])
        handles = self.handles
        handles.pin()
        try:
            views = handles.get(s)
            ids = np.array(views["input_ids"][r], dtype=np.int64)
            length = int(views["lengths"][r])
            label = int(views["labels"][r])
        finally:
            handles.unpin()
        if not (0 <= label < self.num_classes and 0 <= length <= ids.shape[0]):
            raise self.reader.corrupt_row(s, r, label, length, int(self.starts[s]) + r)
        return ids, length, label

    # -- batches (the caller is pinned) ---------------------------------------------------
    def batch(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """``{"input_ids" (B, L) int16, "lengths" (B,) int16, "labels" (B,) int64}`` at ``idx``.

        Layout ``mmap``: one vectorised gather per field across all shards touched (see
        :meth:`gather_span`); otherwise, or when a batch spans more shards than may be
        open, one gather per shard. Output order follows ``idx``; the caller is pinned.
        """
        if self.span and self.fast_layout:
            out = self.gather_span(idx)
            if out is not None:
                return out
        shard, row = self.locate(idx)  # raises IndexError naming a bad index
        if shard[0] == shard[-1] and (shard == shard[0]).all():
            return self.gather_shard(int(shard[0]), row)
        B = idx.size
        out = {
            "input_ids": np.empty((B, self.max_length), dtype=np.int16),
            "lengths": np.empty(B, dtype=np.int16),
            "labels": np.empty(B, dtype=np.int64),
        }
        for s, pos in group_runs(shard):
            part = self.gather_shard(s, row[pos])
            for key, value in out.items():
                value[pos] = part[key]
        return out

    def gather_span(self, idx: np.ndarray) -> dict[str, np.ndarray] | None:
        """The batch via the span table, or None (bad index, or its shards can't all be open).

        The caller is pinned (``ShardHandles.pin``): mappings in a span snapshot stay mapped
        until it unpins, whatever other threads evict. The common case (every shard of the
        batch mapped, indices valid) is one compiled pass on the cached snapshot, without
        the lock; anything else takes the locked numpy path below.
        """
        handles = self.handles
        table = self.span_table()
        if self.kernel:
            out = self.gather_compiled(table, table.current(), idx)
            if out is not None:
                return out
        n = int(self.starts[-1])
        if idx.view(np.uint64).max() >= n:  # negative or too large
            if idx.min() < -n or idx.max() >= n:
                return None  # the careful path names the bad index
            idx = np.where(idx < 0, idx + n, idx)
        shard = self.starts.searchsorted(idx, side="right") - 1
        with handles.lock:
            if table.live < self.nonempty and table.missing(shard).size:  # some shard is not mapped yet
                needed = distinct(shard)
                if needed.size > handles.max_open:
                    return None
                handles.touch(needed.tolist())  # open batch members are evicted last
                for s in distinct(table.missing(shard)).tolist():
                    handles.get(s)
                if table.missing(shard).size:
                    return None
            snap = table.snapshot()
        if self.kernel:
            out = self.gather_compiled(table, snap, idx)
            if out is not None:
                return out
        return table.gather(snap, shard, idx)

    def gather_compiled(self, table: SpanTable, snap: Any, idx: np.ndarray) -> dict[str, np.ndarray] | None:
        """``table.gather_rows``, with the cold-batch prefetch when it is on (caller pinned)."""
        if not self.prefetch or snap is None:
            return table.gather_rows(snap, idx)
        t0 = time.perf_counter_ns()
        if self.cold:
            issued = table.prefetch_rows(snap, idx)
            self.io["prefetch_checks"] += 1
            if issued > 0:
                self.io["prefetch_ranges"] += issued
                return table.gather_rows(snap, idx)  # waits on the reads just started
            self.cold = False  # all resident (or no prefetch here): gather without checking
        out = table.gather_rows(snap, idx)
        if time.perf_counter_ns() - t0 > _COLD_NS_FIXED + _COLD_NS_PER_ROW * idx.shape[0]:
            self.cold = True  # this gather went to the disk: check the next batch
        return out

    def gather_shard(self, s: int, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Rows of one shard (any layout), checked; the caller is pinned."""
        views = self.handles.get(s)
        src = views["input_ids"]
        ids = src[rows] if isinstance(src, np.ndarray) else read_compressed_rows(src, rows)
        out = {
            "input_ids": ids,
            "lengths": views["lengths"][rows],
            "labels": views["labels"][rows].astype(np.int64),
        }
        self.reader.check_rows(s, rows, out["lengths"], out["labels"])
        return out

    def vector_at(self, name: str, shard: np.ndarray, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Fill ``out`` with field ``name`` at ``(shard, rows)`` pairs from the mappings (caller pinned)."""
        for s, pos in group_runs(shard):
            out[pos] = self.handles.get(s)[name][rows[pos]]
        return out

    def read_rows(self, s: int, row0: int, n: int) -> dict[str, np.ndarray]:
        """Rows ``row0 .. row0+n-1`` of shard ``s`` read whole (sequential I/O, read-ahead).

        Returns ``{"input_ids" (n, L) int16, "lengths" (n,) int16, "labels" (n,) int64}``;
        in the compressed layout ``input_ids`` comes from whole HDF5 chunks.
        """
        reader = self.reader
        if n == 0 or reader.offsets[s].get("input_ids") is not None:
            return reader.read_rows(s, row0, n)
        ids = self.pinned(lambda: np.asarray(self.handles.get(s)["input_ids"][row0 : row0 + n], dtype=np.int16))
        out = {
            "input_ids": ids,
            "lengths": reader.pread(s, "lengths", row0, n),
            "labels": reader.pread(s, "labels", row0, n).astype(np.int64),
        }
        reader.check_rows(s, row0, out["lengths"], out["labels"])
        return out
