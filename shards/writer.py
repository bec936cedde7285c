"""The writer: shard files and the manifest, atomic, never through a link, manifest last.

Used by the converter, repair and the benchmarks; nothing else creates shard files.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from pathlib import Path
from typing import IO, Any, Mapping

import numpy as np

from .spec import (
    CHUNK_ROWS,
    COMPRESSIONS,
    DATASET_DTYPES,
    DATASET_ID_BYTES,
    FORMAT_NAME,
    FORMAT_VERSION,
    LAYOUTS,
    MANIFEST_NAME,
    OPTIONAL_VECTORS,
    ROW_VECTORS,
    FormatError,
    build_class_index,
)

# h5py is imported by the functions that open HDF5 files, not here: the converter then
# starts its first units without waiting for it (a worker imports it while the other
# encodes), and ``import loaders`` does not pay for it.

__all__ = ["write_shard", "write_manifest", "write_json_atomic", "fsync_file", "create_file"]


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



def write_manifest(directory: str | os.PathLike[str], manifest: Mapping[str, Any]) -> None:
    """Write ``manifest.json`` (call last: its presence marks the dataset complete)."""
    body = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **manifest}
    write_json_atomic(Path(directory) / MANIFEST_NAME, body)

