"""``python -m convert leakage A B``: fragments and identical sequences present in both datasets.

Three keys per row, all 64-bit:

* the **fragment hash** stored in every shard (:mod:`convert.provenance`): the same pair of
  mates, whatever their sequences;
* the **strand hash** stored in every shard a converter with it wrote (``strand_hashes``:
  the smaller of the FNV-1a 64 of the read's bases and of its reverse complement's,
  :func:`convert.fastparse.strand_hashes`): the same DNA read off either strand, whatever the
  tokenizer or max length. A dataset converted before the column existed is compared by
  the other keys, and the report says reverse complements were not checked;
* a **sequence hash**: FNV-1a 64 over the row's stored token ids (int16, padding included, so
  the length counts), computed only when both datasets share the tokenizer (sha256) and max
  length: then identical stored reads have identical rows.

Streaming, bounded memory: the keys of a dataset are read shard by shard (one shard's
vector at a time). With ``P`` passes (chosen so one pass's share of A's keys fits in
``--memory-mb``), pass ``p`` keeps A's distinct keys with ``key % P == p`` in a sorted array,
then streams B's shards and looks each of B's keys of that bucket up with a binary search.
Sequence hashes are computed once per shard and spilled to a temporary directory
(8 bytes per row) so later passes do not re-read the tokens.

Exit status: 0 when nothing is shared, 1 when anything is (the report names a few examples
with their rows and input record numbers), 2 on bad input.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

import shards as fmt
from .provenance import FNV_OFFSET, FNV_PRIME, records_before
from shards.reader import ShardReader

__all__ = ["LeakageError", "find_leakage", "format_leakage"]

_ROW_BLOCK = 1 << 16


class LeakageError(Exception):
    """The two datasets cannot be compared (missing, unreadable, the same directory)."""


class _Dataset:
    """One side of the comparison, read through :class:`shards.ShardReader` (checked)."""

    def __init__(self, reader: ShardReader) -> None:
        self.reader = reader
        self.path = reader.directory
        self.manifest = reader.manifest
        self.starts = reader.starts
        self.base = records_before(self.manifest)

    @property
    def rows(self) -> int:
        return int(self.starts[-1])

    def vector(self, s: int, name: str) -> np.ndarray:
        """Shard ``s``'s per-read vector ``name`` (one pread; identity checked)."""
        return self.reader.read_vector(s, name)


def _open(path: str | os.PathLike[str]) -> _Dataset:
    try:
        return _Dataset(ShardReader(Path(path)))
    except fmt.FormatError as exc:
        raise LeakageError(str(exc)) from None


def row_hashes(ids: np.ndarray) -> np.ndarray:
    """(n,) uint64 FNV-1a 64 over each row's int16 token ids (one numpy step per column)."""
    h = np.full(ids.shape[0], FNV_OFFSET, dtype=np.uint64)
    prime = np.uint64(FNV_PRIME)
    cols = ids.astype(np.uint16).astype(np.uint64)
    with np.errstate(over="ignore"):
        for j in range(ids.shape[1]):
            h = (h ^ cols[:, j]) * prime
    return h


def _sequence_hashes(ds: _Dataset, s: int) -> np.ndarray:
    reader = ds.reader
    n = int(reader.counts[s])
    out = np.empty(n, dtype=np.uint64)
    if n == 0:
        return out
    if reader.offsets[s].get("input_ids") is not None:  # mapped layout: sequential preads
        for a in range(0, n, _ROW_BLOCK):
            out[a : a + _ROW_BLOCK] = row_hashes(reader.read_rows(s, a, min(_ROW_BLOCK, n - a))["input_ids"])
        return out
    for a, block in reader.iter_blocks(s, "input_ids", _ROW_BLOCK):  # compressed: HDF5 decodes the chunks
        out[a : a + len(block)] = row_hashes(block)
    return out


@dataclass
class _Shared:
    """What one key kind found."""

    distinct: int = 0
    rows_b: int = 0
    examples: list[tuple[int, int]] = field(default_factory=list)  # (key, global row of B)


def _bucket(keys: np.ndarray, passes: int, p: int) -> np.ndarray:
    return keys if passes == 1 else keys[(keys % np.uint64(passes)) == np.uint64(p)]


def _compare(
    a: _Dataset, b: _Dataset, keys: Callable[[_Dataset, int], np.ndarray], passes: int, examples: int,
    tick: Callable[[], None],
) -> _Shared:
    found = _Shared()
    for p in range(passes):
        parts = [np.unique(_bucket(keys(a, s), passes, p)) for s in range(len(a.manifest["shards"]))]
        have = np.unique(np.concatenate(parts)) if parts else np.empty(0, dtype=np.uint64)
        del parts
        seen: list[np.ndarray] = []
        for s in range(len(b.manifest["shards"])):
            kb = keys(b, s)
            sel = np.flatnonzero((kb % np.uint64(passes)) == np.uint64(p)) if passes > 1 else np.arange(kb.size)
            if have.size and sel.size:
                pos = np.searchsorted(have, kb[sel])
                hit = sel[(pos < have.size) & (have[np.minimum(pos, have.size - 1)] == kb[sel])]
                if hit.size:
                    found.rows_b += int(hit.size)
                    seen.append(np.unique(kb[hit]))
                    for r in hit[: max(0, examples - len(found.examples))].tolist():
                        found.examples.append((int(kb[r]), int(b.starts[s]) + r))
            tick()
        if seen:
            found.distinct += int(np.unique(np.concatenate(seen)).size)
    return found


def _locate(ds: _Dataset, keys: Callable[[_Dataset, int], np.ndarray], wanted: set[int]) -> dict[int, int]:
    """First global row of ``ds`` holding each wanted key (one more pass over the key vectors)."""
    out: dict[int, int] = {}
    want = np.array(sorted(wanted), dtype=np.uint64)
    for s in range(len(ds.manifest["shards"])):
        if len(out) == len(wanted):
            break
        k = keys(ds, s)
        for r in np.flatnonzero(np.isin(k, want)).tolist():
            out.setdefault(int(k[r]), int(ds.starts[s]) + r)
    return out


def _record(ds: _Dataset, row: int) -> int:
    s = int(np.searchsorted(ds.starts, row, side="right") - 1)
    return int(ds.vector(s, "record_numbers")[row - ds.starts[s]]) + int(ds.base[s])


def find_leakage(
    a_path: str | os.PathLike[str], b_path: str | os.PathLike[str], *, memory_mb: int = 512, examples: int = 5,
    progress: bool = False, passes: int | None = None, sequences: bool = True,
) -> dict[str, Any]:
    """Compare datasets A and B; see the module docstring (``passes`` overrides the count from ``memory_mb``).

    Returns:
        ``{"a", "b", "rows_a", "rows_b", "passes", "fragments": {...}, "strands": {...} or None,
        "strands_skipped": reason or None, "sequences": {...} or None, "sequences_skipped": reason
        or None, "leak": bool}``; each kind has ``distinct`` keys in
        both, ``rows_b`` (rows of B whose key is in A) and ``examples`` (key, row and input record
        in A and in B).

    Raises:
        LeakageError: a dataset cannot be read, or A and B are the same directory.
    """
    a, b = _open(a_path), _open(b_path)
    if a.path.resolve() == b.path.resolve():
        raise LeakageError(f"{a.path} and {b.path} are the same dataset; give two different datasets")
    for ds in (a, b):
        if not ds.manifest["shards"] or "fragment_hashes" not in ds.manifest["shards"][0]["offsets"]:
            if ds.rows:
                raise LeakageError(f"{ds.path}: no fragment hashes stored; re-convert it with this readshard version")
    passes = passes or max(1, math.ceil(a.rows * 8 * 3 / (max(1, memory_mb) << 20)))
    same_tokens = (a.manifest["tokenizer"].get("sha256") == b.manifest["tokenizer"].get("sha256")
                   and a.manifest["max_length"] == b.manifest["max_length"])
    check_sequences = sequences and same_tokens
    lacking = [str(ds.path) for ds in (a, b) if not _has_strand_hashes(ds)]
    check_strands = sequences and not lacking
    from tqdm import tqdm

    kinds = 1 + check_sequences + check_strands
    bar = tqdm(total=kinds * passes * len(b.manifest["shards"]), desc="leakage", unit="shard", disable=not progress)
    result: dict[str, Any] = {
        "a": str(a.path), "b": str(b.path), "rows_a": a.rows, "rows_b": b.rows, "passes": passes,
        "sequences": None, "sequences_skipped": None, "strands": None, "strands_skipped": None,
    }

    def frag(ds: _Dataset, s: int) -> np.ndarray:
        return ds.vector(s, "fragment_hashes").astype(np.uint64, copy=False)

    try:
        result["fragments"] = _describe(a, b, frag, _compare(a, b, frag, passes, examples, bar.update))
        if check_strands:
            result["strands"] = _describe(a, b, _strands, _compare(a, b, _strands, passes, examples, bar.update))
        elif not sequences:
            result["strands_skipped"] = "--fragments-only"
        else:
            result["strands_skipped"] = (
                f"{' and '.join(lacking)} {'has' if len(lacking) == 1 else 'have'} no strand hashes (converted before "
                "they were stored); re-convert to check reverse complements"
            )
        if check_sequences:
            with tempfile.TemporaryDirectory(prefix="readshard-leakage-") as tmp:
                seq = _spilled(_sequence_hashes, Path(tmp))
                result["sequences"] = _describe(a, b, seq, _compare(a, b, seq, passes, examples, bar.update))
        elif not sequences:
            result["sequences_skipped"] = "--fragments-only"
        else:
            result["sequences_skipped"] = (
                "the datasets differ in tokenizer or max length, so identical reads do not give identical rows"
            )
    except (OSError, fmt.FormatError) as exc:
        raise LeakageError(f"cannot read a shard: {exc}") from None
    finally:
        bar.close()
    result["leak"] = bool(result["fragments"]["distinct"] or (result["sequences"] or {}).get("distinct")
                          or (result["strands"] or {}).get("distinct"))
    return result


def _has_strand_hashes(ds: _Dataset) -> bool:
    """Every shard of ``ds`` stores ``strand_hashes`` (the manifest lists its offset)."""
    return all("strand_hashes" in e["offsets"] for e in ds.manifest["shards"])


def _strands(ds: _Dataset, s: int) -> np.ndarray:
    return ds.vector(s, "strand_hashes").astype(np.uint64, copy=False)


def _spilled(fn: Callable[[_Dataset, int], np.ndarray], tmp: Path) -> Callable[[_Dataset, int], np.ndarray]:
    """``fn`` computed once per (dataset, shard), kept on disk, re-read with a memory map."""
    names: dict[tuple[str, int], Path] = {}

    def get(ds: _Dataset, s: int) -> np.ndarray:
        key = (str(ds.path), s)
        if key not in names:
            path = tmp / f"{len(names)}.npy"
            np.save(path, fn(ds, s))
            names[key] = path
        return np.load(names[key], mmap_mode="r")

    return get


def _describe(a: _Dataset, b: _Dataset, keys: Callable[[_Dataset, int], np.ndarray], found: _Shared) -> dict[str, Any]:
    rows_a = _locate(a, keys, {k for k, _ in found.examples}) if found.examples else {}
    return {
        "distinct": found.distinct,
        "rows_b": found.rows_b,
        "examples": [
            {"key": f"{k:016x}", "row_a": rows_a.get(k), "record_a": _record(a, rows_a[k]) if k in rows_a else None,
             "row_b": rb, "record_b": _record(b, rb)}
            for k, rb in found.examples
        ],
    }


def format_leakage(result: dict[str, Any]) -> Iterator[str]:
    """Human-readable lines for :func:`find_leakage`'s result."""
    yield (f"leakage: {result['a']} ({result['rows_a']:,} reads) vs {result['b']} ({result['rows_b']:,} reads), "
           f"{result['passes']} pass(es)")
    kinds = [("fragments", "fragments (mate pairs)")]
    if result.get("strands") is not None:
        kinds.append(("strands", "reads on either strand (a read or its reverse complement)"))
    if result["sequences"] is not None:
        kinds.append(("sequences", "identical sequences"))
    for key, label in kinds:
        r = result[key]
        yield f"{label} in both: {r['distinct']:,} ({r['rows_b']:,} rows of B)"
        for ex in r["examples"]:
            yield (f"  {key[:-1]} {ex['key']}: A row {ex['row_a']} (input record {ex['record_a']}), "
                   f"B row {ex['row_b']} (input record {ex['record_b']})")
    unchecked = []
    if result.get("strands_skipped"):
        yield f"reverse complements: not checked ({result['strands_skipped']})"
        unchecked.append("reverse complements")
    if result["sequences_skipped"]:
        yield f"identical sequences: not checked ({result['sequences_skipped']})"
        unchecked.append("identical stored sequences")
    if result["leak"]:
        yield "FOUND: the datasets share fragments or sequences"
    else:
        checked = ["fragment"] + [label for key, label in (("strands", "read on either strand"),
                                                           ("sequences", "identical sequence")) if result.get(key) is not None]
        listed = checked[0] if len(checked) == 1 else f"{', '.join(checked[:-1])} or {checked[-1]}"
        yield f"OK: no {listed} is in both" + (f" ({' and '.join(unchecked)} not checked)" if unchecked else "")
