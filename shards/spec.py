"""The readshard on-disk format: names, dtypes, the dataset table, limits and the FormatError family.

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

import hashlib
import json
import re
import secrets
from typing import Any

import numpy as np

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
    "MAX_LENGTH_LIMIT",
    "REPAIR_ADVICE",
    "FormatError",
    "DatasetChangedError",
    "CorruptRowError",
    "shard_name",
    "shard_index_from_name",
    "check_shard_file",
    "dataset_shape",
    "new_dataset_id",
    "build_class_index",
    "first_line",
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
# The one ceiling on L: token lengths are stored as int16, so 32,767 is the largest that fits.
MAX_LENGTH_LIMIT = int(np.iinfo(np.int16).max)
_SHARD_NAME = re.compile(r"shard-([0-9]{5,})\.h5")
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,254}")
REPAIR_ADVICE = "re-run the conversion (`python -m convert INPUT --out DIR --overwrite`)"


class FormatError(Exception):
    """A dataset or shard that this version cannot use; the message says what to do."""


class DatasetChangedError(FormatError):
    """A shard file is not the one the reader opened: the dataset was replaced or rebuilt."""


class CorruptRowError(FormatError):
    """A stored label or length outside its range (a damaged shard); never served."""


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
            f"(no '/', '..', absolute or hidden names); the manifest is corrupt or crafted: {REPAIR_ADVICE}"
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


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name when empty), for one-paragraph errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__

