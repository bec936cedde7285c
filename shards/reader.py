"""The one reader of a readshard dataset: validated manifest, identity-checked mapping and preads.

:class:`ShardReader` is the only code that turns a dataset directory into bytes: it reads
and validates the manifest (:func:`shards.manifest.read_manifest`), checks every shard once
(:func:`shards.integrity.check_shard`, recording each file's identity), and then maps a shard
(one read-only ``mmap`` per file, numpy views at the manifest's offsets) or reads a range of
one of its datasets with one ``pread``. Every open checks that the file is still the one
recorded (inode, device, size, mtime) and, for datasets with an identity, that the shard's
stored ``dataset_id`` is the manifest's; otherwise :class:`shards.spec.DatasetChangedError`
says the dataset changed and to reopen it. Item sizes come from :data:`shards.spec.DATASET_DTYPES`.

Whole columns are read by the layout's column reader (:data:`COLUMN_READERS`, keyed by the
manifest's ``layout``): ``mmap`` maps the file, ``compressed`` lets HDF5 decode the chunked
``input_ids`` (h5py is imported only then). HDF5 metadata (attributes, storage layout) is
read here too (:func:`read_shard_attrs`, :func:`shard_layout_problems`).

Users: ``loaders`` (random rows, via the per-process LRU in ``loaders.handles``; chunk
reads and ``IterableShardDataset`` via ``read_rows``), ``python -m convert verify``,
``stats`` and ``leakage``, and ``train.baseline``.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from .integrity import check_shard, file_identity
from .manifest import read_manifest
from .spec import (
    CHUNK_ROWS,
    DATASET_DTYPES,
    DATASET_ID_BYTES,
    FORMAT_NAME,
    OPTIONAL_VECTORS,
    REPAIR_ADVICE,
    CorruptRowError,
    DatasetChangedError,
    FormatError,
    dataset_shape,
    first_line,
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
    "read_shard_attrs",
    "shard_layout_problems",
    "COLUMN_READERS",
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


def read_shard_attrs(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Attributes of a shard, with ``tokenizer`` decoded; a FormatError if unreadable."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except (OSError, RuntimeError, KeyError, ValueError, UnicodeDecodeError) as exc:
        # h5py reports corrupt metadata as OSError, RuntimeError or KeyError (checksums).
        raise FormatError(
            f"{path}: not a readable HDF5 shard ({first_line(exc)}); the file is truncated or corrupt: "
            "run `python -m convert verify` on the dataset and re-convert with --resume"
        ) from None
    if attrs.get("format") != FORMAT_NAME:
        raise FormatError(f"{path}: not a readshard shard (format attribute {attrs.get('format')!r})")
    try:
        attrs["tokenizer"] = json.loads(attrs["tokenizer"])
        for key in ("format_version", "max_length", "num_rows", "num_classes", "shard_index"):
            attrs[key] = int(attrs[key])
    except (KeyError, ValueError, TypeError) as exc:
        raise FormatError(
            f"{path}: corrupt shard attributes ({exc.__class__.__name__}: {first_line(exc)}); "
            "re-convert it: `python -m convert INPUT --out DIR --resume`"
        ) from None
    return attrs


def shard_layout_problems(
    path: str | os.PathLike[str], entry: Mapping[str, Any], manifest: Mapping[str, Any], index: int
) -> list[str]:
    """Compare a shard's manifest entry with the HDF5 file itself (what readers map blindly).

    For every dataset: present, dtype, shape, file offset, and storage (contiguous and
    unfiltered, or for compressed ``input_ids`` chunked by ``CHUNK_ROWS`` rows with the
    manifest's codec); attributes ``layout`` and ``shard_index``. Reads HDF5 metadata only
    (no rows), so it takes the same time whatever the manifest claims. The manifest must have
    passed :func:`validate_manifest`.

    Returns:
        One message per problem (empty if the entry describes the file).
    """
    import h5py

    n, L, C = int(entry["num_rows"]), int(manifest["max_length"]), int(manifest["num_classes"])
    layout = manifest["layout"]
    out: list[str] = []
    try:
        with h5py.File(path, "r") as f:
            for name, dtype in DATASET_DTYPES.items():
                want_off = entry["offsets"].get(name)
                if name not in f:
                    if (name != "dataset_id" and name not in OPTIONAL_VECTORS) or name in entry["offsets"]:
                        out.append(f"{path}: dataset {name} is missing from the file")
                    continue
                d = f[name]
                shape = dataset_shape(name, n, L, C)
                if d.dtype != dtype or d.shape != shape:
                    out.append(f"{path}: dataset {name} is {d.dtype} {d.shape} in the file, the manifest implies {dtype} {shape}")
                off = d.id.get_offset()
                if off != want_off:
                    out.append(f"{path}: dataset {name} starts at byte {off} in the file, the manifest says {want_off}")
                chunked = layout == "compressed" and name == "input_ids" and n > 0
                if chunked:
                    if d.chunks != (min(CHUNK_ROWS, n), L) or d.compression != manifest.get("compression"):
                        out.append(
                            f"{path}: input_ids is stored with chunks {d.chunks} and {d.compression}, the "
                            f"manifest's compressed layout needs chunks ({min(CHUNK_ROWS, n)}, {L}) and {manifest.get('compression')}"
                        )
                elif d.chunks is not None or d.compression is not None:
                    out.append(f"{path}: dataset {name} is chunked/filtered in the file; the {layout} layout needs it contiguous")
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as exc:
        return [f"{path}: unreadable HDF5 metadata ({first_line(exc)}); the shard is corrupt: {REPAIR_ADVICE}"]
    if attrs.get("layout") != layout:
        out.append(f"{path}: layout attribute {attrs.get('layout')!r}, the manifest says {layout!r}")
    got = attrs.get("shard_index")
    got = int(got) if isinstance(got, (int, np.integer)) else got
    if got != index:
        out.append(f"{path}: shard_index attribute {got!r}, but it is shard {index} in the manifest")
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
        """Check every shard (:func:`check_shard`: a regular file of the recorded size, and its
        sha256 when ``verify``); return their (S, 4) identities."""
        identity = np.zeros((len(entries), 4), dtype=np.int64)
        for s, (entry, file) in enumerate(zip(entries, self.files)):
            state = check_shard(file, entry, hash=verify)
            if state.problem in ("symlink", "special"):
                file_identity(file)  # raises its FormatError naming the kind of file
            if state.problem == "missing":
                raise FormatError(
                    f"{file}: shard listed in the manifest is missing; restore it or re-convert "
                    "(`python -m convert INPUT --out DIR --resume`)"
                ) from None
            size, want = int(state.size or 0), int(entry["bytes"])
            if state.problem == "size" and size < want:
                raise FormatError(
                    f"{file}: truncated shard ({size} bytes, the manifest needs {want}); re-convert it: "
                    "`python -m convert INPUT --out DIR --resume`"
                )
            if state.problem == "size":
                raise FormatError(
                    f"{file}: {size} bytes but the manifest says {want}; the shard was "
                    "modified or replaced: re-convert it (`python -m convert INPUT --out DIR --resume`)"
                )
            if state.problem == "sha256":
                raise FormatError(
                    f"{file}: sha256 differs from the manifest (corrupt or modified shard); "
                    "re-convert it: `python -m convert INPUT --out DIR --resume`"
                )
            identity[s] = state.identity
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

    def open_hdf5(self, s: int) -> Any:
        """Shard ``s`` opened read-only with h5py (imported here: only HDF5 reads need it).

        The path is checked first (a regular file, still the one recorded at open), so
        HDF5 is never led through a link. The caller closes the file.
        """
        file = self.files[s]
        ident = self._identity(s)
        have = file_identity(file) if os.path.lexists(file) else None
        if have is None or (ident is not None and tuple(have) != tuple(int(x) for x in ident)):
            raise DatasetChangedError(f"{file}: {_REOPEN}")
        import h5py

        return h5py.File(file, "r")

    def columns(self, s: int, names: Sequence[str]) -> tuple[dict[str, Any], Callable[[], None]]:
        """Shard ``s``'s datasets ``names`` as sliceable arrays, by the manifest's layout, and their closer.

        ``mmap``: numpy views into one mapping; ``compressed``: h5py datasets (HDF5 decodes
        the chunks of what is sliced). Datasets the shard does not hold are left out.
        """
        return COLUMN_READERS[self.manifest["layout"]](self, s, names)

    def read_columns(self, s: int, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Shard ``s``'s whole datasets ``names`` as numpy arrays (mapped views, or decoded)."""
        if self.manifest["layout"] == "mmap":
            return self.map(s, names)[1]
        cols, close = self.columns(s, names)
        try:
            return {k: v[:] for k, v in cols.items()}
        finally:
            close()

    def iter_blocks(self, s: int, name: str, step: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, rows)`` blocks of ``step`` rows of dataset ``name`` of shard ``s``."""
        n = int(self.counts[s])
        if n == 0:
            return
        cols, close = self.columns(s, (name,))
        try:
            data = cols[name]
            for a in range(0, n, step):
                yield a, np.asarray(data[a : a + step])
        finally:
            close()


def _mapped_columns(reader: ShardReader, s: int, names: Sequence[str]) -> tuple[dict[str, Any], Callable[[], None]]:
    """The ``mmap`` layout: views into one read-only mapping of the shard."""
    mm, views = reader.map(s, names)

    def close() -> None:
        views.clear()
        try:
            mm.close()
        except BufferError:  # a caller still holds a view: the GC unmaps it later
            pass

    return views, close


def _hdf5_columns(reader: ShardReader, s: int, names: Sequence[str]) -> tuple[dict[str, Any], Callable[[], None]]:
    """The ``compressed`` layout: h5py datasets (chunked ``input_ids`` is decoded by HDF5)."""
    f = reader.open_hdf5(s)
    try:
        return {k: f[k] for k in names if k in f}, f.close
    except BaseException:
        f.close()
        raise


# One column reader per layout, keyed by the manifest's ``layout`` (validated to be one of
# ``shards.spec.LAYOUTS``); a new layout adds its reader here.
COLUMN_READERS: dict[str, Callable[[ShardReader, int, Sequence[str]], tuple[dict[str, Any], Callable[[], None]]]] = {
    "mmap": _mapped_columns,
    "compressed": _hdf5_columns,
}
