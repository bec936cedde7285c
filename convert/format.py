"""The readshard on-disk format: one module, a symmetric writer and reader.

A dataset is a directory::

    DIR/
      manifest.json      written last; its presence means the dataset is complete
      report.json        what the converter read, wrote and skipped (by reason)
      quarantine.fa      every skipped record, verbatim
      shard-00000.h5     one HDF5 file per unit of input, in input order
      shard-00001.h5
      ...

Each shard ``shard-NNNNN.h5`` holds ``n`` reads:

=================  ===========  ======================================================
dataset            shape/dtype  meaning
=================  ===========  ======================================================
``input_ids``      (n, L) int16 token ids, right-padded with ``pad_id``
``lengths``        (n,) int16   tokens stored (<= L): the attention mask comes from this
``read_lengths``   (n,) int32   true read length in bases (the sequence wins over the header)
``labels``         (n,) int32   contiguous label 0..C-1 (from the mapping TSV)
``class_ids``      (n,) int32   class_id as written in the header
``tax_ids``        (n,) int32   NCBI tax id, -1 where unknown
``mates``          (n,) int8    1 or 2 for paired mates, 0 where the header has none
``record_numbers`` (n,) int64   the record's position in its input file (0-based, every
                                record counted, as ``quarantine.tsv``'s ``record``)
``fragment_hashes`` (n,) uint64 FNV-1a 64 of the fragment name (mates share it); see
                                :mod:`convert.provenance`
``strand_hashes`` (n,) uint64  strand-independent sequence hash: the smaller of the FNV-1a 64
                                of the read's bases (after normalisation: upper case, IUPAC
                                as N) and of its reverse complement's (optional: absent in
                                datasets converted before it existed; see :mod:`convert.leakage`)
``class_offsets``  (C+1,) int64 CSR index: rows of label c are
                                ``class_rows[class_offsets[c]:class_offsets[c+1]]``
``class_rows``     (n,) int32   shard-local row ids sorted by label (stable)
=================  ===========  ======================================================

Layouts:

* ``mmap`` (default): every dataset is contiguous and uncompressed, so a reader maps it
  with ``numpy.memmap`` at the HDF5 dataset's file offset (stored in the manifest too,
  so opening a dataset needs no HDF5 call at all).
* ``compressed``: ``input_ids`` is chunked (``CHUNK_ROWS`` rows per chunk) with the
  shuffle filter and gzip or lzf, filters every h5py build has. The small vectors stay
  contiguous. Random single rows inside compressed chunks are ~1000x slower, so readers
  serve this layout by whole chunks.

Shard attributes: ``format`` (``"readshard"``), ``format_version``, ``layout``,
``compression``, ``max_length``, ``num_rows``, ``num_classes``, ``shard_index``,
``dataset_id`` and ``tokenizer`` (JSON: name, sha256 of its files, vocab_size, pad_id,
special ids). The dataset identity is also stored as a 16-byte dataset ``dataset_id`` (its
offset in the manifest), so a reader checks it from the mapping without an HDF5 call.

``manifest.json`` (no timestamps, so a resumed run writes the same bytes)::

    {"format": "readshard", "format_version": 2,
     "tokenizer": {"name", "kind", "sha256", "vocab_size", "pad_id",
                   "special_ids": {"pad", "unk", "bos", "eos", "cls", "sep", "mask"}},
     "max_length": L, "layout": "mmap"|"compressed", "compression": "none"|"gzip"|"lzf",
     "num_classes": C, "dataset_id": 32 hex digits (the same in every shard),
     "label_names": [C str], "label_class_ids": [C int], "label_tax_ids": [C int, -1 unknown],
     "shards": [{"file": "shard-00000.h5", "input": index into source.inputs, "num_rows", "sha256", "bytes",
                 "offsets": {dataset: file offset or null}}, ...],
     "totals": {"num_rows", "num_shards", "num_tokens"},
     "source": {"inputs": [...], "header_regex", "mapping_sha256", "reads_per_shard",
                "records_in", "records_per_input": [records of each input], "skipped"}}

:func:`build_manifest` is the one function that assembles a manifest. Readers call
:func:`read_manifest` (which runs :func:`validate_manifest`: shard names confined to the
dataset directory, integers in range, offsets aligned, non-overlapping and inside the
shard's recorded size) and :func:`check_compatible`; they fail with a :class:`FormatError`
that names the problem and says what to do. The shard index is the entry's position in
``shards`` (:func:`shard_index_from_name` parses a name the converter wrote, any width).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
from pathlib import Path
from typing import IO, Any, Mapping

import numpy as np

# h5py is imported by the functions that open HDF5 files, not here: the converter then
# starts its first units without waiting for it (a worker imports it while the other
# encodes), and ``import loaders`` does not pay for it.

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LAYOUTS",
    "COMPRESSIONS",
    "CHUNK_ROWS",
    "ROW_VECTORS",
    "OPTIONAL_VECTORS",
    "MANIFEST_NAME",
    "REPORT_NAME",
    "QUARANTINE_NAME",
    "DATASET_DTYPES",
    "DATASET_ID_BYTES",
    "FormatError",
    "DatasetChangedError",
    "shard_name",
    "shard_index_from_name",
    "check_shard_file",
    "dataset_shape",
    "new_dataset_id",
    "build_manifest",
    "validate_manifest",
    "shard_layout_problems",
    "build_class_index",
    "write_shard",
    "read_shard_attrs",
    "file_sha256",
    "write_json_atomic",
    "fsync_file",
    "create_file",
    "first_line",
    "write_manifest",
    "read_manifest",
    "check_compatible",
    "describe_tokenizer",
]

FORMAT_NAME = "readshard"
# 2: per-row provenance (record_numbers, fragment_hashes), shard entries name their input.
FORMAT_VERSION = 2
LAYOUTS = ("mmap", "compressed")
COMPRESSIONS = ("gzip", "lzf")
CHUNK_ROWS = 4096
MANIFEST_NAME = "manifest.json"
REPORT_NAME = "report.json"
QUARANTINE_NAME = "quarantine.fa"

# Per-read vectors: name -> dtype. input_ids is (n, L) int16 and handled apart.
ROW_VECTORS: dict[str, np.dtype] = {
    "lengths": np.dtype(np.int16),
    "read_lengths": np.dtype(np.int32),
    "labels": np.dtype(np.int32),
    "class_ids": np.dtype(np.int32),
    "tax_ids": np.dtype(np.int32),
    "mates": np.dtype(np.int8),
    "record_numbers": np.dtype(np.int64),
    "fragment_hashes": np.dtype(np.uint64),
    "class_rows": np.dtype(np.int32),
}
# Per-read vectors a shard may lack (written by later converters, after every other dataset so
# the older datasets keep their offsets): readers check the manifest entry's offsets for them.
OPTIONAL_VECTORS: dict[str, np.dtype] = {
    "strand_hashes": np.dtype(np.uint64),
}


# Every contiguous dataset of a shard and its dtype: the one table of item sizes.
DATASET_DTYPES: dict[str, np.dtype] = {
    "input_ids": np.dtype(np.int16),
    "class_offsets": np.dtype(np.int64),
    **ROW_VECTORS,
    "dataset_id": np.dtype(np.uint8),
    **OPTIONAL_VECTORS,
}
DATASET_ID_BYTES = 16
_ITEMSIZE = {name: dtype.itemsize for name, dtype in DATASET_DTYPES.items()}
# The one ceiling on L: token lengths are stored as int16, so 32,767 is the largest that fits.
MAX_LENGTH_LIMIT = int(np.iinfo(np.int16).max)
_MAX_COUNT = 1 << 48  # no count or byte size in a manifest is larger (a 256 TB shard)
_SHARD_NAME = re.compile(r"shard-([0-9]{5,})\.h5")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,254}")
_REPAIR = "re-run the conversion (`python -m convert INPUT --out DIR --overwrite`)"


class FormatError(Exception):
    """A dataset or shard that this version cannot use; the message says what to do."""


class DatasetChangedError(FormatError):
    """A shard file is not the one the reader opened: the dataset was replaced or rebuilt."""


def shard_name(index: int) -> str:
    """File name of shard ``index`` (``shard-00042.h5``; more digits past 99,999)."""
    return f"shard-{index:05d}.h5"


def shard_index_from_name(name: str) -> int:
    """The index in a converter-written shard name (inverse of :func:`shard_name`, any width).

    Raises:
        FormatError: ``name`` is not of the form ``shard-NNNNN.h5``.
    """
    m = _SHARD_NAME.fullmatch(name)
    if m is None:
        raise FormatError(f"{name!r} is not a shard file name (shard-NNNNN.h5)")
    return int(m.group(1))


def check_shard_file(name: Any, where: str = "manifest") -> str:
    """``name`` if it is a plain file name inside the dataset directory, else a FormatError.

    Refused: anything that is not a string, path separators, ``..``, absolute paths, hidden
    or empty names, control characters: a manifest must never make a reader open a file
    outside its dataset directory.
    """
    if not isinstance(name, str) or not _PLAIN_NAME.fullmatch(name) or name in (".", ".."):
        raise FormatError(
            f"{where}: shard file {name!r} is not a plain file name inside the dataset directory "
            f"(no '/', '..', absolute or hidden names); the manifest is corrupt or crafted: {_REPAIR}"
        )
    return name


def dataset_shape(name: str, num_rows: int, max_length: int, num_classes: int) -> tuple[int, ...]:
    """Shape of dataset ``name`` in a shard of ``num_rows`` rows (dtype: :data:`DATASET_DTYPES`)."""
    if name == "input_ids":
        return (num_rows, max_length)
    if name == "class_offsets":
        return (num_classes + 1,)
    if name == "dataset_id":
        return (DATASET_ID_BYTES,)
    return (num_rows,)


def new_dataset_id(seed: Any = None) -> str:
    """A dataset identity: 32 hex digits, random, or derived from ``seed`` (JSON) if given.

    The converter derives it from its plan (inputs with sizes and mtimes, tokenizer,
    settings), so a resumed or re-run conversion of unchanged inputs writes the same bytes,
    while a rebuild from changed inputs or settings gets a new identity.
    """
    if seed is None:
        return secrets.token_hex(DATASET_ID_BYTES)
    blob = json.dumps(seed, sort_keys=True, default=str).encode()
    return hashlib.sha256(b"readshard-dataset-id\0" + blob).hexdigest()[: 2 * DATASET_ID_BYTES]


def build_class_index(labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR per-class row index of one shard.

    Args:
        labels: (n,) int labels in 0..num_classes-1.
        num_classes: C.

    Returns:
        ``(class_offsets (C+1,) int64, class_rows (n,) int32)``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    # A stable sort is one answer whatever the algorithm; on 16-bit keys numpy's is a radix
    # sort (linear), on int64 a merge sort.
    small = labels.size > 0 and labels.min() >= 0 and labels.max() < 1 << 16
    keys = labels.astype(np.uint16) if small else labels
    rows = np.argsort(keys, kind="stable").astype(np.int32)
    counts = np.bincount(labels, minlength=num_classes)
    offsets = np.zeros(num_classes + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    return offsets, rows


def file_sha256(path: str | os.PathLike[str], bufsize: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        buf = bytearray(bufsize)
        view = memoryview(buf)
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def write_shard(
    path: str | os.PathLike[str],
    *,
    input_ids: np.ndarray,
    vectors: Mapping[str, np.ndarray],
    num_classes: int,
    tokenizer: Mapping[str, Any],
    shard_index: int,
    layout: str = "mmap",
    compression: str | None = None,
    extra_attrs: Mapping[str, Any] | None = None,
    dataset_id: str | None = None,
    sync: bool = True,
) -> dict[str, Any]:
    """Write one shard to ``path`` (the caller renames it into place) and fsync it (see ``sync``).

    Args:
        path: destination file (a temporary name; see the converter).
        input_ids: (n, L) int16 token matrix.
        vectors: every name in :data:`ROW_VECTORS` except ``class_rows``, each (n,); and any
            of :data:`OPTIONAL_VECTORS` (the converter writes them all).
        num_classes: C, for the CSR index.
        tokenizer: tokenizer identity (JSON-serialisable).
        shard_index: position of the shard in the dataset.
        layout: ``"mmap"`` or ``"compressed"``.
        compression: ``"gzip"`` or ``"lzf"`` for the compressed layout.
        extra_attrs: more JSON-serialisable attributes (e.g. the source range).
        dataset_id: the dataset identity (:func:`new_dataset_id`), stored as an attribute
            and as the 16-byte dataset ``dataset_id``; None writes neither.
        sync: fsync before returning; False leaves that to the caller (:func:`fsync_file`).

    Returns:
        The manifest entry: ``num_rows``, ``offsets`` (dataset -> file offset or None),
        ``bytes`` and ``sha256``.
    """
    if layout not in LAYOUTS:
        raise FormatError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    n, max_length = input_ids.shape
    if input_ids.dtype != np.int16:
        raise FormatError(f"input_ids must be int16, got {input_ids.dtype}")
    import h5py

    offsets_csr, rows = build_class_index(np.asarray(vectors["labels"]), num_classes)
    # HDF5 builds the file in memory (core driver, no backing store) and Python writes the
    # bytes: a full disk or an I/O error then surfaces as a plain OSError with its errno,
    # instead of HDF5 failing inside close() with a RuntimeError and a half-flushed file
    # (which can crash the interpreter at exit).
    # Every dataset starts at a multiple of 8 bytes, so readers can require offsets aligned
    # to their item size (datasets written before dataset_id existed are not aligned).
    with h5py.File(
        path, "w", libver="v110", track_order=False, driver="core", backing_store=False,
        alignment_threshold=1, alignment_interval=8,
    ) as f:
        _write_columns(f, input_ids, vectors, rows, offsets_csr, layout, compression, dataset_id)
        attrs = _shard_attrs(
            layout, compression, max_length, n, num_classes, shard_index, tokenizer, dataset_id, extra_attrs
        )
        for key, value in attrs.items():
            f.attrs[key] = value
        offsets = _dataset_offsets(f)
        f.flush()
        image = f.id.get_file_image()
    _write_file(path, image, sync=sync)
    return {
        "num_rows": int(n),
        "offsets": offsets,
        "bytes": len(image),
        "sha256": hashlib.sha256(image).hexdigest(),
    }


def _write_columns(
    f: Any, input_ids: np.ndarray, vectors: Mapping[str, np.ndarray], rows: np.ndarray, offsets_csr: np.ndarray,
    layout: str, compression: str | None, dataset_id: str | None,
) -> None:
    """Create the shard's datasets in :func:`write_shard`'s order (the order fixes the bytes)."""
    n, max_length = input_ids.shape
    if layout == "compressed" and n > 0:
        comp = compression or "gzip"
        if comp not in COMPRESSIONS:
            raise FormatError(f"unknown compression {comp!r}; choose {', '.join(COMPRESSIONS)}")
        f.create_dataset(
            "input_ids",
            data=input_ids,
            chunks=(min(CHUNK_ROWS, n), max_length),
            shuffle=True,
            compression=comp,
            compression_opts=4 if comp == "gzip" else None,
            track_times=False,
        )
    else:
        f.create_dataset("input_ids", data=input_ids, track_times=False)
    for name, dtype in ROW_VECTORS.items():
        data = rows if name == "class_rows" else np.asarray(vectors[name], dtype=dtype)
        if data.shape != (n,):
            raise FormatError(f"vector {name} has shape {data.shape}, expected ({n},)")
        f.create_dataset(name, data=data, track_times=False)
    f.create_dataset("class_offsets", data=offsets_csr, track_times=False)
    if dataset_id is not None:
        f.create_dataset("dataset_id", data=_id_bytes(dataset_id), track_times=False)
    for name, dtype in OPTIONAL_VECTORS.items():
        if name in vectors:
            data = np.asarray(vectors[name], dtype=dtype)
            if data.shape != (n,):
                raise FormatError(f"vector {name} has shape {data.shape}, expected ({n},)")
            f.create_dataset(name, data=data, track_times=False)


def _shard_attrs(
    layout: str, compression: str | None, max_length: int, n: int, num_classes: int, shard_index: int,
    tokenizer: Mapping[str, Any], dataset_id: str | None, extra_attrs: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The shard's HDF5 attributes, in the order they are written."""
    attrs: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "layout": layout,
        "compression": compression if layout == "compressed" else "none",
        "max_length": int(max_length),
        "num_rows": int(n),
        "num_classes": int(num_classes),
        "shard_index": int(shard_index),
        "tokenizer": json.dumps(dict(tokenizer), sort_keys=True),
    }
    if dataset_id is not None:
        attrs["dataset_id"] = dataset_id
    for key, value in (extra_attrs or {}).items():
        attrs[key] = json.dumps(value, sort_keys=True)
    return attrs


def _dataset_offsets(f: Any) -> dict[str, int | None]:
    """File offset of each contiguous dataset (None when chunked): the manifest's ``offsets``."""
    offsets = {}
    for name in DATASET_DTYPES:
        if name not in f:
            continue
        off = f[name].id.get_offset()
        offsets[name] = None if off is None else int(off)
    return offsets


def _id_bytes(dataset_id: str) -> np.ndarray:
    try:
        raw = bytes.fromhex(dataset_id)
    except (TypeError, ValueError):
        raw = b""
    if len(raw) != DATASET_ID_BYTES:
        raise FormatError(f"dataset_id must be {2 * DATASET_ID_BYTES} hex digits, got {dataset_id!r}")
    return np.frombuffer(raw, dtype=np.uint8)


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
        return [f"{path}: unreadable HDF5 metadata ({first_line(exc)}); the shard is corrupt: {_REPAIR}"]
    if attrs.get("layout") != layout:
        out.append(f"{path}: layout attribute {attrs.get('layout')!r}, the manifest says {layout!r}")
    got = attrs.get("shard_index")
    got = int(got) if isinstance(got, (int, np.integer)) else got
    if got != index:
        out.append(f"{path}: shard_index attribute {got!r}, but it is shard {index} in the manifest")
    return out


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name when empty), for one-paragraph errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def create_file(path: str | os.PathLike[str], mode: str = "wb") -> IO[Any]:
    """Create or truncate ``path`` for writing without following a symbolic link there.

    Raises:
        OSError: ``path`` is a symbolic link (ELOOP, with a message saying so), or the usual.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "it is a symbolic link; readshard never writes through links "
                          "(remove it and rerun)", str(path)) from None
        raise
    return os.fdopen(fd, mode)


def _write_file(path: str | os.PathLike[str], data: bytes, *, sync: bool = True) -> None:
    """Write ``data`` and fsync (never through a link); an OSError (disk full, ...) names ``path``."""
    try:
        with create_file(path) as f:
            f.write(data)
            f.flush()
            if sync:
                os.fsync(f.fileno())
    except OSError as exc:
        # write()/close() errors carry no file name; the converter's message needs it.
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def fsync_file(path: str | os.PathLike[str], *, drop_cache: bool = False) -> None:
    """fsync the file at ``path`` (written by this or another process; never through a link).

    ``drop_cache``: then drop its pages from the page cache (``POSIX_FADV_DONTNEED``; they
    are clean once synced). A converter writes each shard once and reads it no more, and
    the pages it frees are the next shards' to reuse: on a VM whose guest memory is only
    backed by the host when first touched, writing into fresh pages costs ~5x more (8.8 MB:
    ~24 ms against ~4 ms here, with the fsync).

    Raises:
        OSError: naming ``path`` (a write-back error of an earlier unsynced write shows here).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fsync(fd)
            if drop_cache and hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def write_json_atomic(path: str | os.PathLike[str], obj: Any, *, sync: bool = True) -> None:
    """Write JSON to ``path`` via a temporary file, fsync (unless ``sync`` is False) and rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    _write_file(tmp, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode(), sync=sync)
    os.replace(tmp, path)


def build_manifest(
    *,
    tokenizer: Mapping[str, Any],
    max_length: int,
    layout: str,
    compression: str | None,
    num_classes: int,
    label_names: list[str],
    label_class_ids: list[int],
    label_tax_ids: list[int],
    shards: list[Mapping[str, Any]],
    source: Mapping[str, Any],
    dataset_id: str | None,
    num_tokens: int,
) -> dict[str, Any]:
    """The manifest body (the one place that assembles it; :func:`write_manifest` writes it).

    ``shards`` are ``{"file", **write_shard(...)}`` entries in shard order; totals are
    computed from them.
    """
    body: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "tokenizer": dict(tokenizer),
        "max_length": int(max_length),
        "layout": layout,
        "compression": (compression or "gzip") if layout == "compressed" else "none",
        "num_classes": int(num_classes),
    }
    if dataset_id is not None:
        body["dataset_id"] = dataset_id
    body.update({
        "label_names": list(label_names),
        "label_class_ids": [int(c) for c in label_class_ids],
        "label_tax_ids": [int(t) for t in label_tax_ids],
        "shards": [dict(e) for e in shards],
        "totals": {
            "num_rows": int(sum(int(e["num_rows"]) for e in shards)),
            "num_shards": len(shards),
            "num_tokens": int(num_tokens),
        },
        "source": dict(source),
    })
    return body


def write_manifest(directory: str | os.PathLike[str], manifest: Mapping[str, Any]) -> None:
    """Write ``manifest.json`` (call last: its presence marks the dataset complete)."""
    body = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **manifest}
    write_json_atomic(Path(directory) / MANIFEST_NAME, body)


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a dataset's manifest (see :func:`validate_manifest`).

    Raises:
        FormatError: no manifest (incomplete or not a dataset), another format version, or
            a malformed manifest (the message names the field).
    """
    path = Path(directory) / MANIFEST_NAME
    if not path.is_file():
        raise FormatError(
            f"{directory}: no {MANIFEST_NAME}; this is not a complete readshard dataset. "
            "Convert it with `python -m convert INPUT --out DIR` (or finish an interrupted "
            "conversion with `--resume`)."
        )
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, OSError, RecursionError) as exc:
        raise FormatError(f"{path}: unreadable manifest ({first_line(exc)}); {_REPAIR}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise FormatError(f"{path}: not a readshard manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise FormatError(
            f"{directory}: dataset format version {version!r}, this readshard reads version "
            f"{FORMAT_VERSION}. Re-convert the source with this version "
            "(`python -m convert INPUT --out NEW_DIR`) or install the readshard release that wrote it."
        )
    validate_manifest(manifest, where=str(path))
    return manifest


def _bad(where: str, what: str) -> FormatError:
    return FormatError(f"{where}: {what}; the manifest is corrupt or was edited: {_REPAIR}")


def _int(value: Any, what: str, lo: int, hi: int, where: str) -> int:
    # bool is an int subclass; JSON floats such as 1e30 are refused too.
    if type(value) is not int or not lo <= value <= hi:
        raise _bad(where, f"{what} is {value!r}, expected an integer in {lo}..{hi}")
    return value


def validate_manifest(manifest: Mapping[str, Any], where: str = "manifest") -> None:
    """Cheap structural checks of a manifest; no file is opened.

    Types and ranges of every field a reader uses; shard names confined to the dataset
    directory and unique; per shard, every offset inside the recorded size, the datasets
    non-overlapping and (for datasets that carry a ``dataset_id``) aligned to their item
    size; totals consistent. Linear in the shard count, independent of the read count.

    Raises:
        FormatError: naming the field (and shard) that is wrong.
    """
    L = _int(manifest.get("max_length"), "max_length", 1, MAX_LENGTH_LIMIT, where)
    C = _int(manifest.get("num_classes"), "num_classes", 0, (1 << 31) - 1, where)
    layout = manifest.get("layout")
    if layout not in LAYOUTS:
        raise _bad(where, f"unknown layout {layout!r} (expected {' or '.join(LAYOUTS)})")
    tok = manifest.get("tokenizer")
    if not isinstance(tok, dict):
        raise _bad(where, "tokenizer is not an object")
    vocab = _int(tok.get("vocab_size"), "tokenizer.vocab_size", 1, 1 << 15, where)
    _int(tok.get("pad_id"), "tokenizer.pad_id", 0, vocab - 1, where)
    for key in ("label_names", "label_class_ids", "label_tax_ids"):
        value = manifest.get(key)
        if not isinstance(value, list) or len(value) != C:
            raise _bad(where, f"{key} must be a list of num_classes={C} entries")
    if not all(isinstance(x, str) for x in manifest["label_names"]):
        raise _bad(where, "label_names must be strings")
    ident = manifest.get("dataset_id")
    if ident is not None and not (isinstance(ident, str) and re.fullmatch(r"[0-9a-f]{32}", ident)):
        raise _bad(where, f"dataset_id {ident!r} is not 32 hex digits")
    shards = manifest.get("shards")
    if not isinstance(shards, list):
        raise _bad(where, "shards is not a list")
    seen: set[str] = set()
    total = 0
    for k, entry in enumerate(shards):
        here = f"{where}: shards[{k}]"
        if not isinstance(entry, dict):
            raise _bad(here, "entry is not an object")
        name = check_shard_file(entry.get("file"), here)
        if name in seen:
            raise _bad(here, f"shard file {name!r} listed twice")
        seen.add(name)
        total += _check_entry(entry, here, L, C, layout, aligned=ident is not None)
    totals = manifest.get("totals")
    if not isinstance(totals, dict):
        raise _bad(where, "totals is not an object")
    if _int(totals.get("num_rows"), "totals.num_rows", 0, _MAX_COUNT, where) != total:
        raise _bad(where, f"totals say {totals['num_rows']} reads but its shards hold {total}: inconsistent")


_HEX64 = re.compile(r"[0-9a-f]{64}")
_MISSING = object()


def _check_entry(entry: Mapping[str, Any], where: str, L: int, C: int, layout: str, *, aligned: bool) -> int:
    """Check one shard entry; return its row count. Runs per shard at open: kept lean."""
    n = entry.get("num_rows")
    if type(n) is not int or not 0 <= n <= _MAX_COUNT:
        _int(n, "num_rows", 0, _MAX_COUNT, where)
    size = entry.get("bytes")
    if type(size) is not int or not 0 <= size <= _MAX_COUNT:
        _int(size, "bytes", 0, _MAX_COUNT, where)
    sha = entry.get("sha256")
    if sha is not None and not (type(sha) is str and _HEX64.fullmatch(sha)):
        raise _bad(where, f"sha256 {sha!r} is not 64 hex digits")
    offsets = entry.get("offsets")
    if type(offsets) is not dict:
        raise _bad(where, "offsets is not an object")
    if not offsets.keys() <= DATASET_DTYPES.keys():
        unknown = sorted(map(str, set(offsets) - set(DATASET_DTYPES)))
        raise _bad(where, f"unknown datasets in offsets: {', '.join(unknown)}")
    counts = {"input_ids": n * L, "class_offsets": C + 1, "dataset_id": DATASET_ID_BYTES}
    spans = []
    for name, item in _ITEMSIZE.items():
        off = offsets.get(name, _MISSING)
        nbytes = item * counts.get(name, n)
        if off is None:
            if nbytes and not (name == "input_ids" and layout == "compressed"):
                raise _bad(where, f"dataset {name} has no offset but holds {nbytes} bytes")
            continue
        if off is _MISSING:
            if (name == "dataset_id" and not aligned) or name in OPTIONAL_VECTORS:
                continue
            raise _bad(where, f"offsets has no entry for {name}")
        if type(off) is not int or not 0 <= off <= size:
            _int(off, f"offset of {name}", 0, size, where)
        if aligned and off % item:
            raise _bad(where, f"offset {off} of {name} is not aligned to its {item}-byte items")
        if off + nbytes > size:
            raise _bad(where, f"dataset {name} ({off}+{nbytes} bytes) runs past the shard's {size} bytes")
        if nbytes:
            spans.append((off, off + nbytes, name))
    if layout == "compressed" and n and offsets.get("input_ids") is not None:
        raise _bad(where, "input_ids has an offset in a compressed-layout dataset")
    spans.sort()
    for k in range(1, len(spans)):
        if spans[k][0] < spans[k - 1][1]:
            (a0, a1, an), (b0, _, bn) = spans[k - 1], spans[k]
            raise _bad(where, f"datasets {an} ({a0}..{a1}) and {bn} (from {b0}) overlap")
    return n


def describe_tokenizer(info: Mapping[str, Any]) -> str:
    """``'metagene-1' (sha256 d57ebd866290)``; parts that are missing are left out, never ``None``."""
    name = info.get("name")
    sha = info.get("sha256")
    text = repr(str(name)) if name else "a tokenizer"
    return f"{text} (sha256 {str(sha)[:12]})" if sha else text


def check_compatible(
    manifest: Mapping[str, Any],
    *,
    tokenizer: Mapping[str, Any] | None = None,
    max_length: int | None = None,
    where: str = "dataset",
) -> None:
    """Refuse a dataset whose tokenizer or max length differ from what the caller expects.

    Args:
        manifest: from :func:`read_manifest`.
        tokenizer: expected identity: its ``sha256`` is compared when given, else its ``name``.
        max_length: expected L, if any.
        where: how to name the dataset in the message.

    Raises:
        FormatError: with what differs and what to do.
    """
    have = manifest["tokenizer"]
    if tokenizer is not None:
        # Identity is the content (sha256); the name only where no sha256 is given.
        key = "sha256" if tokenizer.get("sha256") else "name"
        if key in tokenizer and tokenizer[key] != have.get(key):
            raise FormatError(
                f"{where}: tokenized with {describe_tokenizer(have)}, but {describe_tokenizer(tokenizer)} "
                "is expected. Re-convert with the expected tokenizer (`python -m convert INPUT --tokenizer SPEC`) "
                "or change the config's tokenizer to match the data."
            )
    if max_length is not None and int(manifest["max_length"]) != int(max_length):
        raise FormatError(
            f"{where}: max_length {manifest['max_length']}, expected {max_length}; "
            "re-convert with --max-length or change the config"
        )
