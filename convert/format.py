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
``compression``, ``max_length``, ``num_rows``, ``num_classes``, ``shard_index`` and
``tokenizer`` (JSON: name, sha256 of its files, vocab_size, pad_id, special ids).

``manifest.json`` (no timestamps, so a resumed run writes the same bytes)::

    {"format": "readshard", "format_version": 1,
     "tokenizer": {"name", "kind", "sha256", "vocab_size", "pad_id",
                   "special_ids": {"pad", "unk", "bos", "eos", "cls", "sep", "mask"}},
     "max_length": L, "layout": "mmap"|"compressed", "compression": "none"|"gzip"|"lzf",
     "num_classes": C,
     "label_names": [C str], "label_class_ids": [C int], "label_tax_ids": [C int, -1 unknown],
     "shards": [{"file": "shard-00000.h5", "num_rows", "sha256", "bytes",
                 "offsets": {dataset: file offset or null}}, ...],
     "totals": {"num_rows", "num_shards", "num_tokens"},
     "source": {"inputs": [...], "header_regex", "mapping_sha256", "reads_per_shard"}} Readers call
:func:`read_manifest` and :func:`check_compatible`; they fail with a
:class:`FormatError` that says what to do.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LAYOUTS",
    "COMPRESSIONS",
    "CHUNK_ROWS",
    "ROW_VECTORS",
    "MANIFEST_NAME",
    "REPORT_NAME",
    "QUARANTINE_NAME",
    "FormatError",
    "shard_name",
    "build_class_index",
    "write_shard",
    "read_shard_attrs",
    "map_shard",
    "file_sha256",
    "write_json_atomic",
    "write_manifest",
    "read_manifest",
    "check_compatible",
]

FORMAT_NAME = "readshard"
FORMAT_VERSION = 1
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
    "class_rows": np.dtype(np.int32),
}


class FormatError(Exception):
    """A dataset or shard that this version cannot use; the message says what to do."""


def shard_name(index: int) -> str:
    """File name of shard ``index`` (``shard-00042.h5``)."""
    return f"shard-{index:05d}.h5"


def build_class_index(labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR per-class row index of one shard.

    Args:
        labels: (n,) int labels in 0..num_classes-1.
        num_classes: C.

    Returns:
        ``(class_offsets (C+1,) int64, class_rows (n,) int32)``.
    """
    labels = np.asarray(labels, dtype=np.int64)
    rows = np.argsort(labels, kind="stable").astype(np.int32)
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
) -> dict[str, Any]:
    """Write one shard to ``path`` (the caller renames it into place) and fsync it.

    Args:
        path: destination file (a temporary name; see the converter).
        input_ids: (n, L) int16 token matrix.
        vectors: every name in :data:`ROW_VECTORS` except ``class_rows``, each (n,).
        num_classes: C, for the CSR index.
        tokenizer: tokenizer identity (JSON-serialisable).
        shard_index: position of the shard in the dataset.
        layout: ``"mmap"`` or ``"compressed"``.
        compression: ``"gzip"`` or ``"lzf"`` for the compressed layout.
        extra_attrs: more JSON-serialisable attributes (e.g. the source range).

    Returns:
        The manifest entry: ``num_rows``, ``offsets`` (dataset -> file offset or None),
        ``bytes`` and ``sha256``.
    """
    if layout not in LAYOUTS:
        raise FormatError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    n, max_length = input_ids.shape
    if input_ids.dtype != np.int16:
        raise FormatError(f"input_ids must be int16, got {input_ids.dtype}")
    offsets_csr, rows = build_class_index(np.asarray(vectors["labels"]), num_classes)
    # HDF5 builds the file in memory (core driver, no backing store) and Python writes the
    # bytes: a full disk or an I/O error then surfaces as a plain OSError with its errno,
    # instead of HDF5 failing inside close() with a RuntimeError and a half-flushed file
    # (which can crash the interpreter at exit).
    with h5py.File(path, "w", libver="v110", track_order=False, driver="core", backing_store=False) as f:
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
        attrs = {
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
        for key, value in (extra_attrs or {}).items():
            attrs[key] = json.dumps(value, sort_keys=True)
        for key, value in attrs.items():
            f.attrs[key] = value
        offsets = {}
        for name in ("input_ids", "class_offsets", *ROW_VECTORS):
            off = f[name].id.get_offset()
            offsets[name] = None if off is None else int(off)
        f.flush()
        image = f.id.get_file_image()
    _write_file(path, image)
    return {
        "num_rows": int(n),
        "offsets": offsets,
        "bytes": len(image),
        "sha256": hashlib.sha256(image).hexdigest(),
    }


def read_shard_attrs(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Attributes of a shard, with ``tokenizer`` decoded; a FormatError if unreadable."""
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    except (OSError, RuntimeError, KeyError, ValueError, UnicodeDecodeError) as exc:
        # h5py reports corrupt metadata as OSError, RuntimeError or KeyError (checksums).
        raise FormatError(
            f"{path}: not a readable HDF5 shard ({_first_line(exc)}); the file is truncated or corrupt: "
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
            f"{path}: corrupt shard attributes ({exc.__class__.__name__}: {_first_line(exc)}); "
            "re-convert it: `python -m convert INPUT --out DIR --resume`"
        ) from None
    return attrs


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__


def map_shard(
    path: str | os.PathLike[str],
    entry: Mapping[str, Any],
    max_length: int,
    num_classes: int,
    names: tuple[str, ...] | None = None,
) -> dict[str, np.ndarray]:
    """Memory-map a shard's contiguous datasets using the offsets in its manifest entry.

    Args:
        path: the shard file.
        entry: its manifest entry (``num_rows``, ``offsets``).
        max_length: L.
        num_classes: C (``class_offsets`` has C+1 entries).
        names: datasets to map (default: all contiguous ones).

    Returns:
        name -> read-only ``np.memmap`` (an empty array where the shard has no rows).
        Compressed ``input_ids`` is not mapped (offset None); read it by chunks.

    Raises:
        FormatError: the file is shorter than the manifest says (truncated shard).
    """
    n = int(entry["num_rows"])
    size = os.path.getsize(path)
    out: dict[str, np.ndarray] = {}
    wanted = names or ("input_ids", "class_offsets", *ROW_VECTORS)
    for name in wanted:
        if name == "input_ids":
            dtype, shape = np.dtype(np.int16), (n, max_length)
        elif name == "class_offsets":
            dtype, shape = np.dtype(np.int64), (num_classes + 1,)
        else:
            dtype, shape = ROW_VECTORS[name], (n,)
        off = entry["offsets"].get(name)
        if off is None:
            if name == "input_ids" and n > 0:
                continue  # compressed layout
            out[name] = np.zeros(shape, dtype=dtype)
            continue
        nbytes = int(np.prod(shape)) * dtype.itemsize
        if off + nbytes > size:
            raise FormatError(
                f"{path}: truncated shard ({size} bytes, dataset {name} needs {off + nbytes}); "
                "re-convert it: `python -m convert INPUT --out DIR --resume`"
            )
        out[name] = np.memmap(path, dtype=dtype, mode="r", offset=off, shape=shape)
    return out


def _write_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` and fsync; an OSError (disk full, ...) names ``path``."""
    try:
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        # write()/close() errors carry no file name; the converter's message needs it.
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON to ``path`` via a temporary file, fsync and rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    _write_file(tmp, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())
    os.replace(tmp, path)


def write_manifest(directory: str | os.PathLike[str], manifest: Mapping[str, Any]) -> None:
    """Write ``manifest.json`` (call last: its presence marks the dataset complete)."""
    body = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, **manifest}
    write_json_atomic(Path(directory) / MANIFEST_NAME, body)


def read_manifest(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a dataset's manifest.

    Raises:
        FormatError: no manifest (incomplete or not a dataset), or another format version.
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
    except (ValueError, OSError) as exc:
        raise FormatError(f"{path}: unreadable manifest ({exc}); re-run the conversion") from None
    if manifest.get("format") != FORMAT_NAME:
        raise FormatError(f"{path}: not a readshard manifest")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise FormatError(
            f"{directory}: dataset format version {version!r}, this readshard reads version "
            f"{FORMAT_VERSION}. Re-convert the source with this version "
            "(`python -m convert INPUT --out NEW_DIR`) or install the readshard release that wrote it."
        )
    return manifest


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
        tokenizer: expected identity; ``name`` and ``sha256`` are compared when given.
        max_length: expected L, if any.
        where: how to name the dataset in the message.

    Raises:
        FormatError: with what differs and what to do.
    """
    have = manifest["tokenizer"]
    if tokenizer is not None:
        for key in ("name", "sha256"):
            if key in tokenizer and tokenizer[key] != have.get(key):
                raise FormatError(
                    f"{where}: tokenized with {have.get('name')!r} (sha256 {str(have.get('sha256'))[:12]}), "
                    f"but {tokenizer.get('name')!r} (sha256 {str(tokenizer.get('sha256'))[:12]}) is expected. "
                    "Re-convert with the expected tokenizer (`python -m convert INPUT --tokenizer SPEC`) "
                    "or change the config's tokenizer to match the data."
                )
    if max_length is not None and int(manifest["max_length"]) != int(max_length):
        raise FormatError(
            f"{where}: max_length {manifest['max_length']}, expected {max_length}; "
            "re-convert with --max-length or change the config"
        )
