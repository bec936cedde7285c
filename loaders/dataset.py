"""Map-style access to a readshard dataset: O(1) random reads from memory-mapped shards.

Global index ``i`` lives in shard ``s = searchsorted(starts, i, "right") - 1`` at row
``i - starts[s]``, where ``starts`` are the cumulative shard sizes from the manifest.
Nothing that grows with the read count is built at open time; opening needs the manifest
and one ``stat`` per shard (no HDF5 call). Shards are mapped lazily, in the process that
reads them (see :mod:`loaders._shardio`), and the dataset pickles as paths plus small
arrays, so it works under ``fork``, ``spawn`` and ``forkserver`` DataLoader workers.
"""

from __future__ import annotations

import functools
import mmap
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import numpy as np
from torch.utils.data import Dataset

from convert.format import CHUNK_ROWS, ROW_VECTORS, FormatError, check_compatible
from convert.reader import ShardReader, available_memory, choose_access
from convert.provenance import records_before
from loaders.batch import ReadBatch
from loaders._shardio import ShardHandles
from loaders._span import SpanTable, guarded_import

__all__ = ["ShardDataset", "ShardSubset", "BATCH_KEYS"]

# Keys of the batch dict returned by ``__getitems__``.
BATCH_KEYS = ("input_ids", "lengths", "labels")
_VECTOR_NAMES = tuple(n for n in ROW_VECTORS if n != "class_rows")
# A gather slower than this went to the disk for a fair share of its rows: check the next batch.
# A resident row costs well under a microsecond once mapped and ~2 us on its first touch of a
# fresh mapping (three minor faults); a read from disk costs 50 us or more.
_COLD_NS_FIXED, _COLD_NS_PER_ROW = 200_000, 8_000


def _as_index_array(indices: Any) -> np.ndarray:
    idx = np.asarray(indices)
    if idx.dtype == np.bool_ or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
    if idx.dtype.kind == "u" and idx.size and int(idx.max()) > np.iinfo(np.int64).max:
        # astype(int64) would wrap these to negative indices, i.e. rows counted from the end
        raise IndexError(f"index {int(idx.max())} out of range")
    return idx.astype(np.int64, copy=False).reshape(-1)


def _distinct(a: np.ndarray) -> np.ndarray:
    """Sorted distinct values. Not ``np.unique``: its first call imports ``numpy.ma``, and a
    fork while another thread is inside that import leaves the child waiting on its lock forever."""
    a = np.sort(a)
    if a.size < 2:
        return a
    keep = np.empty(a.size, dtype=bool)
    keep[0] = True
    np.not_equal(a[1:], a[:-1], out=keep[1:])
    return a[keep]


_F = TypeVar("_F", bound=Callable[..., Any])


def _pinned(method: _F) -> _F:
    """Run a ShardDataset method pinned: no mapping it uses is closed under it by another thread."""

    @functools.wraps(method)
    def wrapper(self: "ShardDataset", *args: Any, **kwargs: Any) -> Any:
        handles = self._handles
        handles.pin()
        try:
            return method(self, *args, **kwargs)
        finally:
            handles.unpin()

    return wrapper  # type: ignore[return-value]


class _ViewMixin:
    """Metadata every dataset view shares with its base ``ShardDataset``."""

    _base: "ShardDataset"

    @property
    def num_classes(self) -> int:
        """C, the number of contiguous labels."""
        return int(self._base.manifest["num_classes"])

    @property
    def class_names(self) -> list[str]:
        """Label names, index = label."""
        return list(self._base.manifest["label_names"])

    @property
    def tokenizer_info(self) -> dict[str, Any]:
        """The manifest's tokenizer identity dict (name, kind, sha256, vocab_size, pad_id, ...)."""
        return dict(self._base.manifest["tokenizer"])

    @property
    def max_length(self) -> int:
        """L, the padded token length."""
        return int(self._base.manifest["max_length"])

    @property
    def pad_id(self) -> int:
        """The tokenizer's pad id (padding value of ``input_ids``)."""
        return int(self._base.manifest["tokenizer"]["pad_id"])

    @property
    def layout(self) -> str:
        """``"mmap"`` or ``"compressed"``."""
        return str(self._base.manifest["layout"])


class ShardDataset(_ViewMixin, Dataset):
    """A readshard dataset directory as a map-style torch Dataset.

    ``ds[i]`` returns ``{"input_ids": (L,) int64, "attention_mask": (L,) int64, "labels": int}``
    (model-ready, what default collators stack) with the mask built from the stored length
    (never from ``id != pad``). ``ds.__getitems__(indices)`` (used by ``DataLoader`` for
    whole batches) returns a :class:`loaders.batch.ReadBatch`: the gathered arrays
    ``{"input_ids": (B, L) int16, "lengths": (B,) int16, "labels": (B,) int64}`` by key, and
    the list of item dicts torch's ``__getitems__`` contract asks for by position.
    :func:`loaders.collate_batch` takes either form.

    Layout ``compressed``: ``input_ids`` sits in gzip/lzf chunks of ``CHUNK_ROWS`` rows, and
    a random row costs a whole chunk decompression (~1000x slower than a mapped row).
    ``ds[i]`` and ``__getitems__`` still work there (h5py reads, one chunk per distinct
    chunk touched) but are slow; train on that layout with :meth:`iter_chunk_shuffled` or
    ``IterableShardDataset(shuffle=True)``, which read whole chunks in a shuffled order.

    Plain ``DataLoader(ds, batch_size=B, shuffle=True)`` and Hugging Face ``Trainer`` with
    their default collators give correct full-width int64 batches (a per-read Python step);
    the fast path is ``ReadLoader`` or ``collate_fn``/``data_collator=collate_batch``, which
    trims to the longest read and never leaves numpy per read.

    Args:
        path: dataset directory (holding ``manifest.json``).
        verify: also check every shard's sha256 against the manifest (reads all bytes).
        expect_tokenizer: tokenizer identity the caller needs (``name``/``sha256`` compared).
        expect_max_length: L the caller needs.
        max_open_shards: shards of this dataset kept mapped per process (LRU); each costs
            one descriptor on Python < 3.13. Default: every shard the process's descriptor
            budget allows; that budget is shared by every dataset open in the process (the
            soft limit is raised toward the hard one if needed, see ``loaders._shardio``).
        access: cold-start policy, ``"auto"`` (default: ``"sequential"`` when the shards fit
            in half the available memory, else ``"random"``), ``"sequential"`` (read each
            shard ahead whole when first mapped) or ``"random"`` (``MADV_RANDOM``: a random
            row faults in its own pages only); see ``convert.reader.choose_access``.
        prefetch: before gathering a cold batch, start reading every row's non-resident
            pages at once (``MADV_WILLNEED``), so the disk serves many reads in parallel
            instead of one fault at a time (see ``loaders._span``). ``None`` (default): on
            when ``access`` resolves to ``"random"``; ``True``/``False`` force it. Once a
            batch finds its pages resident the check stops until a gather is slow again
            (the warm path pays one clock read per batch).

    Raises:
        FormatError: missing/other-version manifest, tokenizer or length mismatch, a
            missing, truncated or (with ``verify``) modified shard, row counts that disagree
            with the manifest's record of the conversion; the message names the file and
            says what to do. Reads raise a ``FormatError`` too for a shard whose class index
            disagrees with the manifest's row count, and ``convert.reader.CorruptRowError``
            for a row whose label (0..C-1) or length (0..L) is out of range.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        verify: bool = False,
        expect_tokenizer: Mapping[str, Any] | None = None,
        expect_max_length: int | None = None,
        max_open_shards: int | None = None,
        access: str = "auto",
        prefetch: bool | None = None,
    ) -> None:
        self.path = Path(path)
        reader = ShardReader(self.path, verify=verify)  # manifest validated, shards stat'ed
        reader.check_row_counts()
        check_compatible(
            reader.manifest, tokenizer=expect_tokenizer, max_length=expect_max_length, where=str(self.path)
        )
        self._reader = reader
        self.manifest = reader.manifest
        self._base = self
        self._counts, self._starts = reader.counts, reader.starts
        self._max_open = None if max_open_shards is None else int(max_open_shards)
        self._span_gather = True  # False forces the per-shard path (tests compare both)
        self._span_kernel = True  # False forces the span table's numpy path (tests compare both)
        self._nonempty = int((self._counts > 0).sum())
        self._fast_layout = self.manifest["layout"] == "mmap"
        # Decided once, at open, in the process that opens (workers inherit the decision).
        self.access = choose_access(reader.total_bytes, available_memory(), access)
        self._advice = getattr(mmap, "MADV_WILLNEED" if self.access == "sequential" else "MADV_RANDOM", None)
        self.prefetch = self.access == "random" if prefetch is None else bool(prefetch)
        self._init_process_state()

    def _init_process_state(self) -> None:
        self._handles = ShardHandles(self._open_shard, self._max_open, self.num_shards)
        self._vectors: dict[str, np.ndarray] = {}
        self._class_table: np.ndarray | None = None
        self._class_cum: np.ndarray | None = None
        # Prefetch state of this process: check residency (True) until a batch finds its
        # pages resident; threads share it (a stale value costs one check, never a wrong row).
        self._cold = True
        self._io = {"prefetch_checks": 0, "prefetch_ranges": 0}

    @property
    def io_stats(self) -> dict[str, int]:
        """This process's prefetch counters: batches checked for residency, byte ranges issued."""
        return dict(self._io)

    def _open_shard(self, s: int) -> tuple[dict[str, Any], Any]:
        """Map shard ``s``: numpy views into one mmap (+ an h5py dataset when compressed).

        Called by ``ShardHandles.get`` under its lock; the closer runs under it too.
        """
        mm, views = self._reader.map(
            s, ("input_ids", "lengths", "labels", "class_rows", "class_ids", "tax_ids", "class_offsets"), self._advice
        )
        offsets = np.array(views.pop("class_offsets"))  # a copy: an error's traceback keeps it
        try:
            self._reader.check_class_offsets(s, offsets)
        except FormatError:
            views.clear()
            mm.close()
            raise
        table = self._span_table(self._handles.local)
        registered = None
        if "input_ids" in views and self._counts[s] > 0:
            registered = table.register(s, views)
        h5 = None
        if "input_ids" not in views:
            h5py = guarded_import("h5py")  # only the compressed layout needs HDF5 at read time

            h5 = h5py.File(self._reader.files[s], "r")
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

        close.fork_safe = h5 is None  # type: ignore[attr-defined]  # see loaders._shardio
        return views, close

    # -- one gather across all mapped shards (see loaders._span for the invariant) ------
    def _gather_span(self, idx: np.ndarray) -> dict[str, np.ndarray] | None:
        """The batch via the span table, or None (bad index, or its shards can't all be open).

        The caller is pinned (``ShardHandles.pin``): mappings in a span snapshot stay mapped
        until it unpins, whatever other threads evict. The common case (every shard of the
        batch mapped, indices valid) is one compiled pass on the cached snapshot, without
        the lock; anything else takes the locked numpy path below.
        """
        handles = self._handles
        table = self._span_table(handles.local)
        if self._span_kernel:
            out = self._gather_compiled(table, table.current(), idx)
            if out is not None:
                return out
        n = len(self)
        if idx.view(np.uint64).max() >= n:  # negative or too large
            if idx.min() < -n or idx.max() >= n:
                return None  # the careful path names the bad index
            idx = np.where(idx < 0, idx + n, idx)
        shard = self._starts.searchsorted(idx, side="right") - 1
        with handles.lock:
            if table.live < self._nonempty and table.missing(shard).size:  # some shard is not mapped yet
                needed = _distinct(shard)
                if needed.size > handles.max_open:
                    return None
                handles.touch(needed.tolist())  # open batch members are evicted last
                for s in _distinct(table.missing(shard)).tolist():
                    handles.get(s)
                if table.missing(shard).size:
                    return None
            snap = table.snapshot()
        if self._span_kernel:
            out = self._gather_compiled(table, snap, idx)
            if out is not None:
                return out
        return table.gather(snap, shard, idx)

    def _gather_compiled(self, table: SpanTable, snap: Any, idx: np.ndarray) -> dict[str, np.ndarray] | None:
        """``table.gather_rows``, with the cold-batch prefetch when it is on (caller pinned)."""
        if not self.prefetch or snap is None:
            return table.gather_rows(snap, idx)
        t0 = time.perf_counter_ns()
        if self._cold:
            issued = table.prefetch_rows(snap, idx)
            self._io["prefetch_checks"] += 1
            if issued > 0:
                self._io["prefetch_ranges"] += issued
                return table.gather_rows(snap, idx)  # waits on the reads just started
            self._cold = False  # all resident (or no prefetch here): gather without checking
        out = table.gather_rows(snap, idx)
        if time.perf_counter_ns() - t0 > _COLD_NS_FIXED + _COLD_NS_PER_ROW * idx.shape[0]:
            self._cold = True  # this gather went to the disk: check the next batch
        return out

    def _span_table(self, local: dict[str, Any]) -> SpanTable:
        table = local.get("span")
        if table is None:
            table = local["span"] = SpanTable(
                self._starts, self.max_length, num_classes=self.num_classes, on_bad=self._bad_row
            )
        return table

    def _bad_row(self, i: int, label: int, length: int) -> Exception:
        """The error for global row ``i`` holding an out-of-range label or length (span gathers)."""
        s = int(self._starts.searchsorted(i, side="right")) - 1
        return self._reader.corrupt_row(s, i - int(self._starts[s]), label, length, i)

    def __getstate__(self) -> dict[str, Any]:
        # Paths and small arrays only: open maps, HDF5 handles and lazily built vectors
        # are per process and rebuilt on first use.
        state = self.__dict__.copy()
        for key in ("_handles", "_vectors", "_class_table", "_class_cum", "_cold", "_io"):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_process_state()

    def close(self) -> None:
        """Unmap every shard this process opened (they reopen on the next access)."""
        self._handles.close()
        self._cold = True  # their pages may be evicted by the time they reopen

    # -- sizes ---------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def num_shards(self) -> int:
        """Number of shard files."""
        return self._reader.num_shards

    @property
    def shard_counts(self) -> np.ndarray:
        """(S,) rows per shard (read-only)."""
        out = self._counts.view()
        out.flags.writeable = False
        return out

    @property
    def shard_files(self) -> list[str]:
        """Paths of the shard files, in shard order."""
        return list(self._reader.files)

    @property
    def shard_starts(self) -> np.ndarray:
        """(S+1,) cumulative row counts: shard ``s`` holds global rows ``starts[s]:starts[s+1]``."""
        return self._starts

    def _locate(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            bad = idx[(idx < -n) | (idx >= n)][0]
            raise IndexError(f"index {int(bad)} out of range for a dataset of {n} reads")
        if idx.size and idx.min() < 0:
            idx = np.where(idx < 0, idx + n, idx)
        shard = np.searchsorted(self._starts, idx, side="right") - 1
        return shard, idx - self._starts[shard]

    # -- item access ---------------------------------------------------------------------
    def __getitem__(self, index: int) -> dict[str, Any]:
        """One read as ``{"input_ids", "attention_mask", "labels"}`` (copies, not views).

        On the compressed layout this decompresses a whole chunk per call: slow, use the
        chunk-shuffled iteration for training there.
        """
        if not isinstance(index, (int, np.integer)) or isinstance(index, (bool, np.bool_)):
            raise TypeError(f"ShardDataset indices are integers, got {type(index).__name__}")
        i, n = int(index), len(self)  # int() keeps np.uint64 values exact
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} reads")
        shard, row = self._locate(np.array([i], dtype=np.int64))
        s, r = int(shard[0]), int(row[0])
        handles = self._handles
        handles.pin()
        try:
            views = handles.get(s)
            ids = np.array(views["input_ids"][r], dtype=np.int64)
            length = int(views["lengths"][r])
            label = int(views["labels"][r])
        finally:
            handles.unpin()
        if not (0 <= label < self.num_classes and 0 <= length <= ids.shape[0]):
            raise self._reader.corrupt_row(s, r, label, length, int(self._starts[s]) + r)
        mask = np.zeros(ids.shape[0], dtype=np.int64)
        mask[:length] = 1
        return {"input_ids": ids, "attention_mask": mask, "labels": label}

    def __getitems__(self, indices: Sequence[int] | np.ndarray) -> ReadBatch:
        """A whole batch as a :class:`loaders.batch.ReadBatch`, gathered in one vectorised step.

        ``batch["input_ids"]`` (B, L) int16, ``batch["lengths"]`` (B,) int16 and
        ``batch["labels"]`` (B,) int64 are the gathered arrays (what ``collate_batch`` and
        ``ReadLoader`` use); ``len(batch)``, ``batch[k]`` and iteration give item dicts like
        ``ds[i]``, so torch's default collate and Hugging Face's default collator work too.
        Safe from any number of threads (see ``loaders._shardio.ShardHandles``).
        """
        handles = self._handles
        handles.pin()
        try:
            return ReadBatch(self._getitems(indices))
        finally:
            handles.unpin()

    def _getitems(self, indices: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """A whole batch: ``{"input_ids" (B, L) int16, "lengths" (B,) int16, "labels" (B,) int64}``.

        Layout ``mmap``: one vectorised gather per field across all shards touched (see
        ``_gather_span``); otherwise, or when a batch spans more shards than may be open,
        one gather per shard (rows grouped with a stable sort). Output order follows
        ``indices``.
        """
        idx = indices if isinstance(indices, np.ndarray) and indices.dtype == np.int64 else None
        idx = _as_index_array(indices) if idx is None or idx.ndim != 1 else idx
        B, L = idx.size, self.max_length
        if B == 0:
            return {
                "input_ids": np.empty((0, L), dtype=np.int16),
                "lengths": np.empty(0, dtype=np.int16),
                "labels": np.empty(0, dtype=np.int64),
            }
        if self._span_gather and self._fast_layout:
            out = self._gather_span(idx)
            if out is not None:
                return out
        shard, row = self._locate(idx)  # raises IndexError naming a bad index
        if shard[0] == shard[-1] and (shard == shard[0]).all():
            return self._gather_one(int(shard[0]), row)
        ids = np.empty((B, L), dtype=np.int16)
        lengths = np.empty(B, dtype=np.int16)
        labels = np.empty(B, dtype=np.int64)
        order = np.argsort(shard, kind="stable")
        sorted_shards = shard[order]
        cuts = np.flatnonzero(sorted_shards[1:] != sorted_shards[:-1]) + 1
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, B]):
            pos = order[a:b]
            part = self._gather_one(int(sorted_shards[a]), row[pos])
            ids[pos] = part["input_ids"]
            lengths[pos] = part["lengths"]
            labels[pos] = part["labels"]
        return {"input_ids": ids, "lengths": lengths, "labels": labels}

    def _gather_one(self, s: int, rows: np.ndarray) -> dict[str, np.ndarray]:
        views = self._handles.get(s)
        src = views["input_ids"]
        if isinstance(src, np.ndarray):
            ids = src[rows]
        else:
            ids = self._read_compressed_rows(src, rows)
        out = {
            "input_ids": ids,
            "lengths": views["lengths"][rows],
            "labels": views["labels"][rows].astype(np.int64),
        }
        self._reader.check_rows(s, rows, out["lengths"], out["labels"])
        return out

    @staticmethod
    def _read_compressed_rows(dset: Any, rows: np.ndarray) -> np.ndarray:
        # Decompress each distinct chunk touched once, then gather from it.
        out = np.empty((rows.size, dset.shape[1]), dtype=np.int16)
        chunk = (dset.chunks or (CHUNK_ROWS,))[0]
        which = rows // chunk
        order = np.argsort(which, kind="stable")
        sw = which[order]
        cuts = np.flatnonzero(sw[1:] != sw[:-1]) + 1
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, rows.size]):
            c = int(sw[a])
            block = dset[c * chunk : min((c + 1) * chunk, dset.shape[0])]
            pos = order[a:b]
            out[pos] = block[rows[pos] - c * chunk]
        return out

    # -- per-read vectors without tokens -------------------------------------------------
    def read_vector(self, s: int, name: str) -> np.ndarray:
        """Shard ``s``'s whole vector ``name`` (e.g. ``labels``) read with one pread."""
        return self._reader.read_vector(s, name)

    def read_rows(self, s: int, row0: int, n: int) -> dict[str, np.ndarray]:
        """Rows ``row0 .. row0+n-1`` of shard ``s`` read whole (sequential I/O, read-ahead).

        Returns ``{"input_ids" (n, L) int16, "lengths" (n,) int16, "labels" (n,) int64}``;
        in the compressed layout ``input_ids`` comes from whole HDF5 chunks.
        """
        if n == 0 or self._reader.offsets[s].get("input_ids") is not None:
            return self._reader.read_rows(s, row0, n)
        handles = self._handles
        handles.pin()
        try:
            ids = np.asarray(handles.get(s)["input_ids"][row0 : row0 + n], dtype=np.int16)
        finally:
            handles.unpin()
        out = {
            "input_ids": ids,
            "lengths": self._reader.pread(s, "lengths", row0, n),
            "labels": self._reader.pread(s, "labels", row0, n).astype(np.int64),
        }
        self._reader.check_rows(s, row0, out["lengths"], out["labels"])
        return out

    def _concat(self, name: str) -> np.ndarray:
        if name not in self._vectors:
            parts = [self.read_vector(s, name) for s in range(self.num_shards)]
            if name in ("labels", "lengths"):  # what samplers count and models index: checked once
                for s, part in enumerate(parts):
                    zeros = np.zeros(part.size, dtype=np.int16)
                    self._reader.check_rows(s, 0, part if name == "lengths" else zeros, zeros if name == "lengths" else part)
            out = np.concatenate(parts) if parts else np.empty(0, dtype=ROW_VECTORS[name])
            out.flags.writeable = False
            self._vectors[name] = out
        return self._vectors[name]

    @property
    def labels(self) -> np.ndarray:
        """(N,) int32 labels of every read (read once from the shards, then cached)."""
        return self._concat("labels")

    @property
    def class_ids(self) -> np.ndarray:
        """(N,) int32 header class ids (cached)."""
        return self._concat("class_ids")

    @property
    def tax_ids(self) -> np.ndarray:
        """(N,) int32 NCBI tax ids, -1 unknown (cached)."""
        return self._concat("tax_ids")

    @property
    def lengths(self) -> np.ndarray:
        """(N,) int16 stored token counts (cached)."""
        return self._concat("lengths")

    @property
    def record_numbers(self) -> np.ndarray:
        """(N,) int64 global input record number of every row (cached; see :mod:`convert.provenance`)."""
        if "record_numbers@global" not in self._vectors:
            base = np.repeat(records_before(self.manifest), self._counts)
            out = self._concat("record_numbers") + base
            out.flags.writeable = False
            self._vectors["record_numbers@global"] = out
        return self._vectors["record_numbers@global"]

    @property
    def fragment_hashes(self) -> np.ndarray:
        """(N,) uint64 FNV-1a 64 of each row's fragment name; mates share it (cached)."""
        return self._concat("fragment_hashes")

    @_pinned
    def gather_vector(self, name: str, indices: Any) -> np.ndarray:
        """Vector ``name`` at global ``indices`` from the mapped shards (no full concat)."""
        idx = _as_index_array(indices)
        out = np.empty(idx.size, dtype=ROW_VECTORS[name])
        if not idx.size:
            return out
        shard, row = self._locate(idx)
        order = np.argsort(shard, kind="stable")
        ss = shard[order]
        cuts = np.flatnonzero(ss[1:] != ss[:-1]) + 1
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, idx.size]):
            pos = order[a:b]
            out[pos] = self._handles.get(int(ss[a]))[name][row[pos]]
        return out

    # -- the per-class CSR index ---------------------------------------------------------
    @property
    def class_table(self) -> np.ndarray:
        """(S, C+1) int64: each shard's ``class_offsets`` (C+1 ints per shard, not per read)."""
        if self._class_table is None:
            C = self.num_classes
            table = np.zeros((self.num_shards, C + 1), dtype=np.int64)
            for s in range(self.num_shards):
                table[s] = self.read_vector(s, "class_offsets")
                self._reader.check_class_offsets(s, table[s])
            self._class_table = table
        return self._class_table

    @property
    def class_counts(self) -> np.ndarray:
        """(C,) int64 reads per label, from the CSR offsets (no label scan)."""
        return np.diff(self.class_table, axis=1).sum(axis=0)

    def _cum_class_major(self) -> np.ndarray:
        # Positions ordered class-major, then shard: entry c*S+s starts class c's rows in
        # shard s. (C*S + 1,) int64 - grows with classes x shards, never with reads.
        if self._class_cum is None:
            per = np.diff(self.class_table, axis=1).T.reshape(-1)  # (C*S,) class-major
            cum = np.zeros(per.size + 1, dtype=np.int64)
            np.cumsum(per, out=cum[1:])
            self._class_cum = cum
        return self._class_cum

    @_pinned
    def class_positions_to_indices(self, classes: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Global indices of the ``positions[k]``-th read of label ``classes[k]``.

        Reads of one label are numbered in shard order, then in stored (row) order. Only
        ``class_rows`` entries at those positions are read.
        """
        classes = np.asarray(classes, dtype=np.int64)
        positions = np.asarray(positions, dtype=np.int64)
        S = self.num_shards
        cum = self._cum_class_major()
        g = cum[classes * S] + positions
        pair = np.searchsorted(cum, g, side="right") - 1
        shard = pair % S
        csr_pos = self.class_table[shard, classes] + (g - cum[pair])
        out = np.empty(g.size, dtype=np.int64)
        if not g.size:
            return out
        order = np.argsort(shard, kind="stable")
        ss = shard[order]
        cuts = np.flatnonzero(ss[1:] != ss[:-1]) + 1
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, g.size]):
            pos = order[a:b]
            s = int(ss[a])
            out[pos] = self._starts[s] + self._handles.get(s)["class_rows"][csr_pos[pos]]
        return out

    def _class_list(self, classes: Sequence[int | str] | None) -> np.ndarray:
        C = self.num_classes
        if classes is None:
            return np.arange(C, dtype=np.int64)
        names = {name: i for i, name in enumerate(self.manifest["label_names"])}
        out = []
        for c in classes:
            if isinstance(c, str):
                if c not in names:
                    raise KeyError(f"unknown class name {c!r}")
                out.append(names[c])
            else:
                if not 0 <= int(c) < C:
                    raise IndexError(f"label {c} outside 0..{C - 1}")
                out.append(int(c))
        return np.unique(np.asarray(out, dtype=np.int64))

    def subset(
        self, per_class: int | None = None, *, classes: Sequence[int | str] | None = None, seed: int = 0
    ) -> "ShardSubset":
        """An instant view built from the stored per-class index (no label scan).

        Args:
            per_class: keep at most this many reads per label, chosen uniformly without
                replacement (deterministic per ``seed``); None keeps all.
            classes: keep only these labels (ints) or label names; None keeps all.
            seed: sampling seed for ``per_class``.

        Returns:
            A :class:`ShardSubset` in ascending global index order.
        """
        sel = self._class_list(classes)
        counts = self.class_counts
        if per_class is None:
            return self._subset_whole_classes(sel)
        if per_class < 0:
            raise ValueError(f"per_class must be >= 0, got {per_class}")
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed) % (1 << 64), 0x5B5E7])))
        cls_parts, pos_parts = [], []
        for c in sel.tolist():  # a loop over classes, never over reads
            n_c = int(counts[c])
            k = min(int(per_class), n_c)
            if k == 0:
                continue
            pos_parts.append(rng.choice(n_c, size=k, replace=False).astype(np.int64))
            cls_parts.append(np.full(k, c, dtype=np.int64))
        if not pos_parts:
            return ShardSubset(self, np.empty(0, np.int64), np.empty(0, np.int32))
        cls = np.concatenate(cls_parts)
        idx = self.class_positions_to_indices(cls, np.concatenate(pos_parts))
        order = np.argsort(idx, kind="stable")
        return ShardSubset(self, idx[order], cls[order].astype(np.int32))

    @_pinned
    def _subset_whole_classes(self, sel: np.ndarray) -> "ShardSubset":
        table = self.class_table
        idx_parts, lab_parts = [], []
        for s in range(self.num_shards):  # a loop over shards, vectorised within
            lo, hi = table[s, sel], table[s, sel + 1]
            n = hi - lo
            total = int(n.sum())
            if total == 0:
                continue
            # positions lo[c]..hi[c]-1 for every selected class, concatenated
            pos = np.repeat(lo - np.r_[0, np.cumsum(n)[:-1]], n) + np.arange(total)
            rows = self._handles.get(s)["class_rows"][pos]
            idx_parts.append(self._starts[s] + rows.astype(np.int64))
            lab_parts.append(np.repeat(sel, n).astype(np.int32))
        if not idx_parts:
            return ShardSubset(self, np.empty(0, np.int64), np.empty(0, np.int32))
        idx, lab = np.concatenate(idx_parts), np.concatenate(lab_parts)
        order = np.argsort(idx, kind="stable")
        return ShardSubset(self, idx[order], lab[order])

    def select(self, indices: Any) -> "ShardSubset":
        """A view of the given global indices (kept in the given order)."""
        idx = _as_index_array(indices)
        self._locate(idx)  # bounds check
        idx = np.where(idx < 0, idx + len(self), idx)
        return ShardSubset(self, idx, self.gather_vector("labels", idx))

    def iter_chunk_shuffled(
        self,
        seed: int = 0,
        epoch: int = 0,
        *,
        buffer_chunks: int = 16,
        batch_size: int = 256,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        return_index: bool = False,
        chunk_rows: int = CHUNK_ROWS,
    ) -> Iterator[dict[str, np.ndarray]]:
        """Batches from whole-chunk reads in a shuffled chunk order (any layout).

        The way to train on the ``compressed`` layout: chunks of ``CHUNK_ROWS`` rows are
        visited in a random order (per seed and epoch); ``buffer_chunks`` chunks at a time are
        read whole, their rows are shuffled together and cut into batches. Every read is
        served once per epoch, but a batch draws from ``buffer_chunks`` chunks only, so
        it is less mixed than a full shuffle (converters write reads grouped by source);
        :func:`loaders.chunks.shuffle_quality` measures how close it comes.

        Yields:
            ``{"input_ids", "lengths", "labels"}`` batch dicts (plus ``"index"`` if asked).
        """
        from loaders.chunks import chunk_shuffle_groups, iter_groups

        groups = chunk_shuffle_groups(
            self.shard_counts, seed, epoch, buffer_chunks, consumer=rank, num_consumers=world_size, chunk_rows=chunk_rows
        )
        return iter_groups(self, groups, batch_size, drop_last=drop_last, return_index=return_index)


class ShardSubset(_ViewMixin, Dataset):
    """A view of a :class:`ShardDataset`: an int64 index array (and its labels).

    Behaves like the base dataset (``[i]``, ``__getitems__``, ``labels``, ``subset``) and
    pickles as the base's small state plus the index array.
    """

    def __init__(self, base: ShardDataset, indices: np.ndarray, labels: np.ndarray) -> None:
        self._base = base
        self.indices = np.asarray(indices, dtype=np.int64)
        self._labels = np.asarray(labels, dtype=np.int32)
        self.indices.flags.writeable = False
        self._labels.flags.writeable = False

    @property
    def base(self) -> ShardDataset:
        """The dataset this view selects from."""
        return self._base

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One read of the view (see :meth:`ShardDataset.__getitem__`)."""
        return self._base[int(self.indices[index])]

    def __getitems__(self, indices: Sequence[int] | np.ndarray) -> dict[str, np.ndarray]:
        """A batch of the view (see :meth:`ShardDataset.__getitems__`)."""
        return self._base.__getitems__(self.indices[_as_index_array(indices)])

    @property
    def labels(self) -> np.ndarray:
        """(n,) int32 labels of the view."""
        return self._labels

    @property
    def class_ids(self) -> np.ndarray:
        """(n,) int32 header class ids of the view."""
        return self._base.gather_vector("class_ids", self.indices)

    @property
    def tax_ids(self) -> np.ndarray:
        """(n,) int32 tax ids of the view."""
        return self._base.gather_vector("tax_ids", self.indices)

    @property
    def class_counts(self) -> np.ndarray:
        """(C,) int64 reads per label in the view."""
        return np.bincount(self._labels, minlength=self.num_classes).astype(np.int64)

    def subset(
        self, per_class: int | None = None, *, classes: Sequence[int | str] | None = None, seed: int = 0
    ) -> "ShardSubset":
        """Narrow this view further (same arguments as :meth:`ShardDataset.subset`)."""
        keep = np.ones(len(self), dtype=bool)
        if classes is not None:
            keep = np.isin(self._labels, self._base._class_list(classes))
        pos = np.flatnonzero(keep)
        if per_class is not None:
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed) % (1 << 64), 0x5B5E7])))
            pos = pos[rng.permutation(pos.size)]
            lab = self._labels[pos]
            order = np.argsort(lab, kind="stable")
            pos, lab = pos[order], lab[order]
            starts = np.searchsorted(lab, lab, side="left")
            pos = np.sort(pos[(np.arange(pos.size) - starts) < per_class])
        return ShardSubset(self._base, self.indices[pos], self._labels[pos])
