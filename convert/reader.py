"""The one reader of a readshard dataset: validated manifest, identity-checked mapping and preads.

:class:`ShardReader` is the only code that turns a dataset directory into bytes: it reads
and validates the manifest (:func:`convert.format.read_manifest`), stats every shard once
(recording each file's identity), and then maps a shard (one read-only ``mmap`` per file,
numpy views at the manifest's offsets) or reads a range of one of its datasets with one
``pread``. Every open checks that the file is still the one recorded (inode, device, size,
mtime) and, for datasets with an identity, that the shard's stored ``dataset_id`` is the
manifest's; otherwise :class:`convert.format.DatasetChangedError` says the dataset changed
and to reopen it. Item sizes come from :data:`convert.format.DATASET_DTYPES`.

Users: ``loaders.ShardDataset`` (random rows, via the per-process LRU in
``loaders.handles``), the chunk reader and ``IterableShardDataset`` (``read_rows``),
``python -m convert verify`` and ``stats``.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .format import (
    DATASET_DTYPES,
    DATASET_ID_BYTES,
    DatasetChangedError,
    FormatError,
    dataset_shape,
    file_sha256,
    read_manifest,
)

__all__ = [
    "ACCESS_MODES",
    "CorruptRowError",
    "first_bad_row",
    "ShardReader",
    "available_memory",
    "choose_access",
    "file_identity",
    "check_identity",
    "map_file",
    "read_array",
]

ACCESS_MODES = ("auto", "random", "sequential")


def available_memory() -> int | None:
    """Bytes the kernel reports as available (``MemAvailable``), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def choose_access(total_bytes: int, available: int | None, access: str = "auto") -> str:
    """The cold-start policy: ``"sequential"`` or ``"random"``.

    ``sequential`` (the dataset fits in half the available memory): each shard is read ahead
    whole when first mapped (``MADV_WILLNEED``), so a cold start runs at the disk's streaming
    rate and later random rows hit the page cache. ``random`` (it does not fit):
    ``MADV_RANDOM``, so a random row faults in its own pages, not 8 MiB of read-ahead that
    would evict rows still needed. ``auto`` picks by size; the others force a policy.

    Raises:
        ValueError: an unknown ``access``.
    """
    if access not in ACCESS_MODES:
        raise ValueError(f"access must be one of {', '.join(ACCESS_MODES)}, got {access!r}")
    if access != "auto":
        return access
    if available is None:
        return "random"
    return "sequential" if total_bytes <= available // 2 else "random"

_MMAP_KW: dict[str, Any] = {"trackfd": False} if sys.version_info >= (3, 13) else {}


_REOPEN = (
    "the dataset changed since it was opened (rebuilt, replaced or modified under the reader); "
    "reopen it (create a new ShardDataset / restart the DataLoader)"
)


def first_bad_row(lengths: np.ndarray, labels: np.ndarray, max_length: int, num_classes: int) -> int:
    """Position of the first row whose label is outside 0..C-1 or length outside 0..L, else -1.

    One unsigned maximum per field (a negative value reads as a huge one): ~1 us per batch.
    """
    lab, ln = np.asarray(labels), np.asarray(lengths)
    if not lab.size:
        return -1
    ulab = lab.view(np.dtype(f"u{lab.dtype.itemsize}"))
    uln = ln.view(np.dtype(f"u{ln.dtype.itemsize}"))
    if int(ulab.max()) < num_classes and int(uln.max()) <= max_length:
        return -1
    return int(np.flatnonzero((ulab >= num_classes) | (uln > max_length))[0])


class CorruptRowError(FormatError):
    """A stored label or length outside its range (a damaged shard); never served."""


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


class ShardReader:
    """A dataset directory opened for reading (picklable: paths and small arrays only).

    Args:
        directory: the dataset directory.
        manifest: its manifest if already read (else read and validated here).
        check_files: stat every shard now (missing, truncated or resized shards raise) and
            record identities; False leaves checks to the caller (``verify`` reports them).
        verify: also check every shard's sha256 (reads every byte).

    Raises:
        FormatError: malformed manifest, missing/truncated/modified shard; the message
            names the file and what to do.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        manifest: Mapping[str, Any] | None = None,
        *,
        check_files: bool = True,
        verify: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.manifest = dict(manifest) if manifest is not None else read_manifest(self.directory)
        entries = self.manifest["shards"]
        root = str(self.directory)
        self.files = [os.path.join(root, e["file"]) for e in entries]
        self.counts = np.array([int(e["num_rows"]) for e in entries], dtype=np.int64)
        self.starts = np.zeros(len(entries) + 1, dtype=np.int64)
        np.cumsum(self.counts, out=self.starts[1:])
        self.offsets = [dict(e["offsets"]) for e in entries]
        self.total_bytes = int(sum(int(e["bytes"]) for e in entries))
        self.max_length = int(self.manifest["max_length"])
        self.num_classes = int(self.manifest["num_classes"])
        ident = self.manifest.get("dataset_id")
        self.dataset_id = None if ident is None else bytes.fromhex(ident)
        self.identity: np.ndarray | None = self._check_files(entries, verify) if check_files else None

    @property
    def num_shards(self) -> int:
        """Number of shard files."""
        return len(self.files)

    def _overwrite_advice(self) -> str:
        inputs = self.manifest.get("source", {}).get("inputs") or ["INPUT"]
        shown = " ".join(str(x) for x in inputs[:3]) + (" ..." if len(inputs) > 3 else "")
        return (f"re-convert it: `python -m convert {shown} --out {self.directory} --mapping TSV --overwrite` "
                f"(`python -m convert verify {self.directory}` lists what differs)")

    def check_row_counts(self) -> None:
        """Compare the manifest's row count with its own record of the conversion (no file read).

        The converter publishes only when records in = rows written + skipped + sent to the
        other split side; a manifest whose shard row counts were edited no longer adds up.
        Manifests without those counts (written by other tools) pass.

        Raises:
            FormatError: naming the manifest, both numbers and the command that repairs.
        """
        src = self.manifest.get("source")
        if not isinstance(src, Mapping):
            return
        parts = [src.get(k, 0 if k == "other_split" else None) for k in ("records_in", "skipped", "other_split")]
        if not all(type(x) is int for x in parts):
            return
        expect, have = parts[0] - parts[1] - parts[2], int(self.starts[-1])
        if expect != have:
            raise FormatError(
                f"{self.directory / 'manifest.json'}: its shards' num_rows add up to {have} reads, but its "
                f"source counts {parts[0]} records in, {parts[1]} skipped and {parts[2]} on the other split "
                f"side, i.e. {expect} written: the manifest was edited or damaged; {self._overwrite_advice()}"
            )

    def check_class_offsets(self, s: int, offsets: np.ndarray) -> None:
        """Check shard ``s``'s stored CSR offsets (C+1) against the manifest's row count.

        The shard records its own row count as ``class_offsets[C]``; a manifest that says
        otherwise would serve too few rows or index past its vectors.

        Raises:
            FormatError: naming the shard, both counts and the command that repairs.
        """
        n = int(self.counts[s])
        if offsets.size and int(offsets[-1]) == n and int(offsets[0]) == 0:
            return
        held = int(offsets[-1]) if offsets.size else 0
        raise FormatError(
            f"{self.files[s]}: the shard holds {held} reads (its class index), but "
            f"{self.directory / 'manifest.json'} says num_rows {n}: the manifest was edited or damaged; "
            f"{self._overwrite_advice()}"
        )

    def corrupt_row(self, s: int, row: int, label: int, length: int, index: int | None = None) -> CorruptRowError:
        """The error for row ``row`` of shard ``s`` whose label or length is out of range."""
        L, C = self.max_length, self.num_classes
        what = (f"label {label} outside 0..{C - 1}" if not 0 <= label < C else f"length {length} outside 0..{L}")
        at = "" if index is None else f" (global index {index})"
        return CorruptRowError(
            f"{self.files[s]}: row {row}{at} holds {what}; the shard is damaged (a bad disk block, an edit "
            f"or a copy error) and is not served. `python -m convert verify {self.directory}` lists every "
            f"damaged shard and `python -m convert INPUT --out {self.directory} --resume` re-converts them "
            "from the inputs (INPUT: the files the dataset was converted from)"
        )

    def check_rows(self, s: int, rows: np.ndarray | int, lengths: np.ndarray, labels: np.ndarray) -> None:
        """Raise :meth:`corrupt_row` for the first of these rows (of shard ``s``) out of range.

        ``rows``: the shard rows of ``lengths``/``labels`` (an array), or the first of a range.
        """
        k = first_bad_row(lengths, labels, self.max_length, self.num_classes)
        if k >= 0:
            row = int(rows[k]) if isinstance(rows, np.ndarray) else int(rows) + k
            raise self.corrupt_row(s, row, int(labels[k]), int(lengths[k]), int(self.starts[s]) + row)

    def extent(self, s: int, name: str) -> tuple[np.dtype, tuple[int, ...]]:
        """``(dtype, shape)`` of dataset ``name`` in shard ``s``."""
        return DATASET_DTYPES[name], dataset_shape(name, int(self.counts[s]), self.max_length, self.num_classes)

    def _check_files(self, entries: Sequence[Mapping[str, Any]], verify: bool) -> np.ndarray:
        """Stat every shard (sizes as recorded); return their (S, 4) identities."""
        identity = np.zeros((len(entries), 4), dtype=np.int64)
        for s, (entry, file) in enumerate(zip(entries, self.files)):
            try:
                identity[s] = file_identity(file)
            except FileNotFoundError:
                raise FormatError(
                    f"{file}: shard listed in the manifest is missing; restore it or re-convert "
                    "(`python -m convert INPUT --out DIR --resume`)"
                ) from None
            size, want = int(identity[s, 2]), int(entry["bytes"])
            if size < want:
                raise FormatError(
                    f"{file}: truncated shard ({size} bytes, the manifest needs {want}); re-convert it: "
                    "`python -m convert INPUT --out DIR --resume`"
                )
            if size != want:
                raise FormatError(
                    f"{file}: {size} bytes but the manifest says {want}; the shard was "
                    "modified or replaced: re-convert it (`python -m convert INPUT --out DIR --resume`)"
                )
            if verify and entry.get("sha256") and file_sha256(file) != entry["sha256"]:
                raise FormatError(
                    f"{file}: sha256 differs from the manifest (corrupt or modified shard); "
                    "re-convert it: `python -m convert INPUT --out DIR --resume`"
                )
        return identity

    def _identity(self, s: int) -> Any:
        return None if self.identity is None else self.identity[s]

    def _expect_id(self, s: int) -> tuple[int, bytes] | None:
        if self.dataset_id is None:
            return None
        return int(self.offsets[s]["dataset_id"]), self.dataset_id

    def map(self, s: int, names: Sequence[str] | None = None, advice: int | None = None) -> tuple[mmap.mmap, dict[str, np.ndarray]]:
        """Map shard ``s`` once; return the mapping and read-only numpy views of ``names``.

        Datasets without storage (empty shards, compressed ``input_ids``) are left out.
        The caller closes the mapping when no view is used any more.
        """
        file, offs = self.files[s], self.offsets[s]
        mm = map_file(file, self._identity(s), advice)
        try:
            expect = self._expect_id(s)
            if expect is not None and mm[expect[0] : expect[0] + DATASET_ID_BYTES] != expect[1]:
                raise DatasetChangedError(
                    f"{file}: this shard belongs to another dataset than {self.directory}'s manifest; "
                    "the dataset changed since it was opened (rebuilt or replaced): reopen it, and run "
                    f"`python -m convert verify {self.directory}` if the directory mixes two conversions"
                )
        except BaseException:
            mm.close()
            raise
        views: dict[str, np.ndarray] = {}
        for name in names or DATASET_DTYPES:
            off = offs.get(name)
            if off is None:
                continue
            dtype, shape = self.extent(s, name)
            count = int(np.prod(shape))
            views[name] = np.frombuffer(mm, dtype=dtype, count=count, offset=int(off)).reshape(shape)
        return mm, views

    def pread(self, s: int, name: str, start: int = 0, count: int | None = None) -> np.ndarray:
        """Items ``start .. start+count-1`` of dataset ``name`` (flattened) of shard ``s``, one pread.

        A dataset without storage reads as zeros (an empty shard's vectors).
        """
        dtype, shape = self.extent(s, name)
        total = int(np.prod(shape))
        count = total - start if count is None else count
        off = self.offsets[s].get(name)
        if off is None:
            return np.zeros(count, dtype=dtype)
        return read_array(self.files[s], dtype, count, int(off) + start * dtype.itemsize, self._identity(s), self._expect_id(s))

    def read_vector(self, s: int, name: str) -> np.ndarray:
        """Shard ``s``'s whole dataset ``name`` in its shape."""
        return self.pread(s, name).reshape(self.extent(s, name)[1])

    def read_rows(self, s: int, row0: int, n: int) -> dict[str, np.ndarray]:
        """Contiguous rows of a mapped-layout shard: ``input_ids`` (n, L), ``lengths``, ``labels`` (int64).

        Raises:
            FormatError: ``input_ids`` is compressed (read it by HDF5 chunks instead).
            CorruptRowError: a label or length out of range.
        """
        L = self.max_length
        if n and self.offsets[s].get("input_ids") is None:
            raise FormatError(f"{self.files[s]}: input_ids is compressed; read it by chunks")
        out = {
            "input_ids": self.pread(s, "input_ids", row0 * L, n * L).reshape(n, L),
            "lengths": self.pread(s, "lengths", row0, n),
            "labels": self.pread(s, "labels", row0, n).astype(np.int64),
        }
        self.check_rows(s, row0, out["lengths"], out["labels"])
        return out
