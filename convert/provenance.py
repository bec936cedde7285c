"""Per-row provenance: which input record a row came from, and which fragment (mate pair).

Every shard stores two columns beside the labels (format version 2):

* ``record_numbers`` (int64): the record's 0-based position **in its input file**, counting
  every record (written or skipped), the same number as the ``record`` column of
  ``quarantine.tsv``. The manifest entry of a shard names its input (``"input"``: index
  into ``source.inputs``) and ``source.records_per_input`` lists the record count of every
  input, so the *global* record number (position in all inputs concatenated, in order) is
  ``record_numbers + sum(records_per_input[:input])``; ``ShardDataset.record_numbers``
  returns that global number.
* ``fragment_hashes`` (uint64): **FNV-1a 64** of the fragment name's bytes. The fragment
  name is the header regex's ``name`` group when the regex has one and it matched
  non-empty (the default ``lbl|...|name/mate`` format: mates differ in ``readlen``, so the
  whole id would differ), otherwise the record id (header text before the first
  whitespace) without a trailing ``/1`` or ``/2``. Both mates of a pair hash the same.

FNV-1a 64: ``h = 0xcbf29ce484222325``; for each byte ``b``: ``h = (h XOR b) * 0x100000001b3
mod 2**64``. Chosen because it is byte-serial with no tables, so it vectorizes in numpy
(one step per byte column over all names, :func:`fnv1a64`) and compiles to a tight numba
loop; ``fnv1a64_one`` is the plain scalar reference.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from shards import records_before  # a manifest function; re-exported for the converter

__all__ = [
    "FNV_OFFSET",
    "FNV_PRIME",
    "fnv1a64",
    "fnv1a64_ranges",
    "fnv1a64_one",
    "fragment_name",
    "hash_names",
    "records_before",
    "SPLIT_SIDES",
    "assign_split",
]

FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
_MASK = (1 << 64) - 1


def fnv1a64_one(data: bytes) -> int:
    """FNV-1a 64 of one byte string (reference implementation)."""
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & _MASK
    return h


def fnv1a64_ranges(buf: bytes | np.ndarray, starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """FNV-1a 64 of every ``buf[starts[i]:starts[i]+lens[i]]`` (ranges may be anywhere in ``buf``)."""
    data = np.frombuffer(buf, dtype=np.uint8) if isinstance(buf, (bytes, bytearray, memoryview)) else buf
    starts = np.asarray(starts, dtype=np.int64)
    lens = np.asarray(lens, dtype=np.int64)
    h = np.full(starts.size, FNV_OFFSET, dtype=np.uint64)
    prime = np.uint64(FNV_PRIME)
    width = int(lens.max()) if lens.size else 0
    with np.errstate(over="ignore"):
        for j in range(width):
            live = lens > j
            col = data[np.where(live, starts + j, 0)].astype(np.uint64)
            h = np.where(live, (h ^ col) * prime, h)
    return h


def fnv1a64(buf: bytes | np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """FNV-1a 64 of every string ``buf[offsets[i]:offsets[i+1]]``, vectorized.

    Args:
        buf: the strings concatenated.
        offsets: (n+1,) int64 boundaries.

    Returns:
        (n,) uint64 hashes. Work is one numpy step per byte column (the longest name), not
        per string.
    """
    offsets = np.asarray(offsets, dtype=np.int64)
    return fnv1a64_ranges(buf, offsets[:-1], np.diff(offsets))


def fragment_name(read_id: bytes, name_group: bytes | None = None) -> bytes:
    """The fragment name of a record: ``name_group`` if non-empty, else ``read_id`` minus ``/1``/``/2``."""
    if name_group:
        return name_group
    if read_id.endswith((b"/1", b"/2")):
        return read_id[:-2]
    return read_id


SPLIT_SIDES = ("train", "val", "test")


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer: spreads every input bit over the output (uint64, wrapping)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * np.uint64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> np.uint64(27))
        x = x * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def assign_split(fragment_hashes: np.ndarray, fractions: Mapping[str, float], seed: int) -> np.ndarray:
    """Side of every row (index into :data:`SPLIT_SIDES`) from its fragment hash and ``seed``.

    ``u = mix64(hash XOR mix64(seed)) / 2**64``; ``val`` when ``u < F_val``, ``test`` when
    ``F_val <= u < F_val + F_test``, else ``train``. A function of the fragment alone, so both
    mates land on the same side, and the split is the same for any ``--jobs`` or unit size.
    """
    h = np.asarray(fragment_hashes, dtype=np.uint64)
    key = _mix64(np.array([int(seed) & _MASK], dtype=np.uint64))[0]
    u = (_mix64(h ^ key) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    fv, ft = float(fractions.get("val", 0.0)), float(fractions.get("test", 0.0))
    side = np.zeros(h.size, dtype=np.int8)
    side[u < fv] = 1
    side[(u >= fv) & (u < fv + ft)] = 2
    return side


def hash_names(names: Sequence[bytes]) -> np.ndarray:
    """(n,) uint64 FNV-1a 64 of a list of names (joins them, then :func:`fnv1a64`)."""
    lens = np.fromiter((len(x) for x in names), dtype=np.int64, count=len(names))
    offsets = np.zeros(len(names) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    return fnv1a64(b"".join(names), offsets)
