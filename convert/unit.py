"""One unit of work: a run of records in, one shard plus its quarantine part and unit record out.

The worker side of :mod:`convert.pipeline` (run on a thread, a worker process or a dask
worker; see :mod:`convert.executors` and :mod:`convert.cluster`): read the unit's bytes, parse
and label its records (numba for the default header format, a regex per record otherwise),
tokenize, write the shard and its unit record. :func:`convert_unit` is a pure function of the
unit and the :class:`Settings`, so the output is the same wherever it runs.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import re
import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import shards as fmt
from .fastparse import AVAILABLE as FASTPARSE_AVAILABLE
from .fastparse import PROBLEMS, ParsedUnit, parse_default, strand_hashes
from .fastx import ParsedRecord, Unit, parse_unit, unit_bytes
from .labels import DEFAULT_HEADER_REGEX, LabelMap, compile_header_regex
from .paths import open_lock
from .provenance import SPLIT_SIDES, assign_split, fragment_name, hash_names
from .tokenizers import load_tokenizer

__all__ = [
    "ConvertError",
    "BadRecordError",
    "Settings",
    "SKIP_REASONS",
    "MAX_RECORD_BYTES",
    "QUARANTINE_MAX_BYTES",
    "convert_unit",
    "peak_rss_mb",
    "Rows",
    "rows_default",
    "classify",
    "header_fields",
    "remember_tokenizer",
]

SKIP_REASONS = (
    "header_mismatch",
    "unknown_class",
    "empty_header",
    "empty_sequence",
    "non_nucleotide",
    "malformed_fastq",
    "too_long",
)
# Records longer than this (header + sequence bytes) are quarantined as too_long: tokenizing a
# 16 MB read with METAGENE-1 takes ~1.6 GB; 4 MiB keeps a worker well under 1.5 GB.
MAX_RECORD_BYTES = 4 << 20
QUARANTINE_MAX_BYTES = 1 << 30  # quarantine.fa keeps at most this much; the rest is only counted

class ConvertError(Exception):
    """The conversion cannot start or finish (output exists, locked, disk full, ...)."""


class BadRecordError(Exception):
    """A bad record under ``--on-bad-record error``; names the file and line."""


@dataclass
class Settings:
    """What a worker needs (small and picklable)."""

    tokenizer: str
    max_length: int
    header_regex: str
    label_map: LabelMap
    layout: str
    compression: str
    on_bad_record: str
    staging: str
    tokenizer_info: dict[str, Any] = field(default_factory=dict)
    parent_pid: int = 0
    dataset_id: str | None = None
    max_record_bytes: int = MAX_RECORD_BYTES
    quarantine_max_bytes: int = QUARANTINE_MAX_BYTES
    split: dict[str, Any] | None = None
    parallel: str = "serial"  # the executor that ran the units (for the report)
    # False: the unit writes without fsync and its converter fsyncs each finished shard
    # (convert.pipeline), so no worker waits on the disk. A unit record is only trusted after
    # its shard's size and sha256 are checked, so an unsynced one lost to a crash is redone.
    sync: bool = True
    # Write the strand_hashes column; False re-makes a shard of a dataset converted before it
    # existed (convert.repair), byte for byte.
    strand_hashes: bool = True




_CACHE: dict[str, Any] = {}


def remember_tokenizer(spec: str, tok: Any) -> None:
    """Serve ``tok`` (already loaded by the converter) to this process's units of ``spec``."""
    _CACHE[f"tok:{spec}"] = tok


def _worker_tokenizer(spec: str, sha256: str | None = None):
    """The tokenizer ``spec`` as loaded in this process, reloaded when its file changed.

    Keyed by ``spec`` (a name or path) but checked against the identity the run planned with:
    a file replaced at the same path between two conversions in one process (or in a reused
    pool worker) is reloaded, never served stale under the new file's hash.

    Raises:
        ConvertError: the file changed since this conversion started.
    """
    key = f"tok:{spec}"
    tok = _CACHE.get(key)
    if tok is None or (sha256 is not None and tok.info.get("sha256") != sha256):
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        tok = _CACHE[key] = load_tokenizer(spec)
    if sha256 is not None and tok.info.get("sha256") != sha256:
        raise ConvertError(
            f"tokenizer {spec} changed while converting (sha256 {tok.info.get('sha256')}, the run started with "
            f"{sha256}); nothing was published: rerun the command with --overwrite once the file is final"
        )
    return tok


# Header fields -> (default when absent or empty, largest value the shard column holds).
_FIELD_LIMITS = {"tax_id": (-1, 2**31 - 1), "mate": (0, 127), "readlen": (-1, 2**62)}
_INT32_MAX = 2**31 - 1


def header_fields(m: re.Match[bytes]) -> tuple[int, int, int, int] | None:
    """``(class_id, tax_id, mate, readlen)`` from a header match; None if a field is unusable.

    A custom ``--header-regex`` may capture non-digits, and digits may not fit the int32/int8
    shard columns (a tax id of 99999999999, a mate of 300): such a header does not match the
    expected format and the record is skipped as ``header_mismatch``, never a crash.
    """
    gd = m.groupdict()
    try:
        cid = int(gd["class_id"] or b"")
        out = [cid]
        for name, (default, top) in _FIELD_LIMITS.items():
            raw = gd.get(name)
            value = int(raw) if raw else default
            if not default <= value <= top:
                return None
            out.append(value)
    except ValueError:
        return None
    if not 0 <= cid <= _INT32_MAX:
        return None
    return out[0], out[1], out[2], out[3]


def classify(rec: ParsedRecord, rx: re.Pattern[bytes], label_of: dict[int, int]) -> str | None:
    """The skip reason of a record as the worker decides it (None: written)."""
    if rec.problem is not None:
        return rec.problem
    rid = rec.header.split(None, 1)[0] if rec.header.strip() else b""
    m = None if b"\0" in rec.header else rx.match(rid)  # NUL: as convert.fastparse
    fields = None if m is None else header_fields(m)
    if fields is None:
        return "header_mismatch"
    return None if fields[0] in label_of else "unknown_class"


def _pair_keys(class_ids: np.ndarray, tax_ids: np.ndarray) -> np.ndarray:
    # One int64 key per (class, tax) pair: 0 <= class < 2**31, -1 <= tax < 2**31.
    return (np.asarray(class_ids, dtype=np.int64) << 32) | (np.asarray(tax_ids, dtype=np.int64) + 1)


def _taxa(labels: np.ndarray, tax_ids: np.ndarray, lm: LabelMap) -> dict[str, list[int]]:
    """class id -> sorted tax ids seen with it.

    Rows whose tax id is their label's mapped one (nearly all) are counted per label, so only
    the few others are sorted: no sort of the whole unit.
    """
    class_ids = np.asarray(lm.class_ids, dtype=np.int64)
    mapped = np.asarray(lm.tax_ids, dtype=np.int64)
    own = np.asarray(tax_ids, dtype=np.int64) == mapped[labels]
    present = np.flatnonzero(np.bincount(labels[own], minlength=lm.num_classes))
    keys = np.concatenate((_pair_keys(class_ids[present], mapped[present]),
                           _pair_keys(class_ids[labels[~own]], tax_ids[~own])))
    out: dict[str, list[int]] = {}
    for key in np.unique(keys).tolist():
        out.setdefault(str(key >> 32), []).append((key & 0xFFFFFFFF) - 1)
    return out


def _tax_conflicts(labels: np.ndarray, tax_ids: np.ndarray, lm: LabelMap) -> list[int]:
    """Per label: rows whose header tax id differs from the mapping's (where the mapping has one)."""
    mapped = np.asarray(lm.tax_ids, dtype=np.int64)[labels] if labels.size else np.zeros(0, np.int64)
    bad = (mapped >= 0) & (tax_ids != mapped)
    return np.bincount(labels[bad], minlength=lm.num_classes).tolist()


def convert_unit(unit: Unit, shard_index: int, s: Settings) -> dict[str, Any]:
    """Convert one unit into ``shard-<shard_index>.h5`` plus its quarantine part and unit record.

    The worker holds a shared lock on ``.units/.workers.lock`` while it writes, and first
    checks that the converter that started it is still its parent: a pool worker orphaned
    by a killed converter (pool workers outlive their parent and may hold queued units)
    must never write into staging beside the workers of a ``--resume`` run.

    Returns:
        The unit record (also written to ``.units/u-NNNNN.json``).

    Raises:
        ConvertError: this worker's converter is gone.
    """
    fd = open_lock(Path(s.staging) / ".units" / ".workers.lock")
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)
        # After taking the lock: a new converter that got its exclusive lock first has
        # already outlived our parent, so this check cannot pass for an orphan.
        if s.parent_pid and os.getpid() != s.parent_pid and os.getppid() != s.parent_pid:
            raise ConvertError(f"converter pid {s.parent_pid} is gone; this orphaned worker stops")
        return _convert_unit(unit, shard_index, s)
    finally:
        os.close(fd)


@dataclass
class Rows:
    """A unit's records after parsing and labeling: the written rows' columns and bases,
    the skipped records, and the unit's record count."""

    labels: np.ndarray
    class_ids: np.ndarray
    tax_ids: np.ndarray
    mates: np.ndarray
    read_lengths: np.ndarray
    record_index: np.ndarray  # (n,) int64 position of each written row's record in the unit
    fragment_hashes: np.ndarray  # (n,) uint64, see convert.provenance
    iupac: np.ndarray  # (n,) int64 IUPAC codes replaced by N, per row
    readlen_bad: np.ndarray  # (n,) bool: the header's readlen differs from the sequence length
    seqs: bytes | np.ndarray  # bases, bytes-like (the numba parse hands over its uint8 array, no copy)
    offsets: np.ndarray
    records_in: int
    # skipped records in order: (index in unit, line, problem, verbatim bytes, header)
    bad: list[tuple[int, int, str, bytes, bytes]]

    def select(self, rows: np.ndarray) -> "Rows":
        """Only ``rows`` (sorted indices) of the written rows; ``bad`` and counts unchanged."""
        lens = np.diff(self.offsets)
        keep = np.zeros(lens.size, dtype=bool)
        keep[rows] = True
        offsets = np.zeros(rows.size + 1, dtype=np.int64)
        np.cumsum(lens[rows], out=offsets[1:])
        seqs = np.frombuffer(self.seqs, dtype=np.uint8)[np.repeat(keep, lens)].tobytes()
        cols = {k: getattr(self, k)[rows] for k in ("labels", "class_ids", "tax_ids", "mates", "read_lengths",
                                                      "record_index", "fragment_hashes", "iupac", "readlen_bad")}
        return Rows(**cols, seqs=seqs, offsets=offsets, records_in=self.records_in, bad=self.bad)


_PROBLEM_NAMES = (*PROBLEMS, "too_long")
_TOO_LONG = len(PROBLEMS)


def _too_long_default(p: ParsedUnit, limit: int) -> ParsedUnit:
    """Mark records longer than ``limit`` bytes (cut by fastx.iter_units) ``too_long``; drop their bases."""
    long = (p.raw[:, 1] - p.raw[:, 0]) > limit
    if not long.any():
        return p
    written = np.flatnonzero(p.problem == 0)
    keep = ~long[written]
    lens = np.diff(p.offsets)
    seqs = np.frombuffer(p.seqs, dtype=np.uint8)[np.repeat(keep, lens)].tobytes()
    offsets = np.concatenate(([0], np.cumsum(lens[keep]))).astype(np.int64)
    problem = p.problem.copy()
    problem[long] = _TOO_LONG
    return dataclasses.replace(p, problem=problem, seqs=seqs, offsets=offsets)


def rows_default(unit: Unit, data: bytes, s: Settings) -> Rows:
    """The default header format, parsed and labeled by numba (no Python per record)."""
    lm = s.label_map
    known = np.sort(np.asarray(lm.class_ids, dtype=np.int64))
    p = _too_long_default(parse_default(unit, data, known), s.max_record_bytes)
    ok = p.problem == 0
    every = bool(ok.all())
    rows = slice(None) if every else ok  # the usual unit skips nothing: views, not gathers
    cids = p.class_id[rows]
    labels = lm.labels_of(cids)  # every written row's class id is known (the parse checked)
    tax = p.tax_id[rows]
    tax = np.where(tax < 0, np.asarray(lm.tax_ids, dtype=np.int64)[labels], tax) if labels.size else tax
    read_lengths = np.diff(p.offsets).astype(np.int32)
    readlen = p.readlen[rows]
    bad = []
    for i in np.flatnonzero(~ok).tolist():  # skipped records only: rare, not the hot path
        r0, r1 = p.raw[i]
        h0, h1 = p.header[i]
        bad.append((i, int(p.line[i]), _PROBLEM_NAMES[p.problem[i]], data[r0:r1], data[h0:h1]))
    return Rows(
        labels=labels,
        class_ids=cids.astype(np.int32),
        tax_ids=tax.astype(np.int32),
        mates=p.mate[rows].astype(np.int8),
        read_lengths=read_lengths,
        record_index=np.arange(ok.size, dtype=np.int64) if every else np.flatnonzero(ok).astype(np.int64),
        fragment_hashes=p.name_hash[rows],  # FNV-1a of the name group, hashed during the parse
        iupac=p.iupac[rows].astype(np.int64),
        readlen_bad=(readlen >= 0) & (readlen != read_lengths),
        seqs=p.seqs,
        offsets=p.offsets,
        records_in=int(p.problem.size),
        bad=bad,
    )


def _rows_regex(unit: Unit, data: bytes, s: Settings) -> Rows:
    """A custom ``--header-regex``: records parsed and matched one by one."""
    rx = compile_header_regex(s.header_regex)
    label_of = s.label_map.label_of
    has_name = "name" in rx.groupindex
    cap = data.count(b">" if unit.fmt == "fasta" else b"\n") + 1
    labels = np.empty(cap, dtype=np.int32)
    class_ids = np.empty(cap, dtype=np.int32)
    tax_ids = np.empty(cap, dtype=np.int32)
    mates = np.empty(cap, dtype=np.int8)
    read_lengths = np.empty(cap, dtype=np.int32)
    record_index = np.empty(cap, dtype=np.int64)
    iupac = np.empty(cap, dtype=np.int64)
    readlen_bad = np.empty(cap, dtype=bool)
    fragments: list[bytes] = []
    offsets = np.zeros(cap + 1, dtype=np.int64)
    seqs = bytearray()
    bad: list[tuple[int, int, str, bytes, bytes]] = []
    records_in = 0
    n = 0
    for rec in parse_unit(unit, data):
        records_in += 1
        problem = rec.problem
        if len(rec.raw) > s.max_record_bytes:  # cut while it streamed in (fastx.iter_units)
            problem = "too_long"
        if problem is None:
            rid = rec.header.split(None, 1)[0] if rec.header.strip() else b""
            m = None if b"\0" in rec.header else rx.match(rid)  # NUL: as convert.fastparse
            fields = None if m is None else header_fields(m)
            if fields is None:
                problem = "header_mismatch"
            else:
                cid, tax, mate, header_readlen = fields
                if cid not in label_of:
                    problem = "unknown_class"
        if problem is not None:
            bad.append((records_in - 1, rec.line, problem, rec.raw, rec.header))
            if s.on_bad_record == "error":
                break
            continue
        seq = rec.seq
        labels[n] = label_of[cid]
        class_ids[n] = cid
        if tax < 0:
            tax = s.label_map.tax_ids[labels[n]]
        tax_ids[n] = tax
        mates[n] = mate
        read_lengths[n] = len(seq)
        record_index[n] = records_in - 1
        readlen_bad[n] = header_readlen >= 0 and header_readlen != len(seq)
        iupac[n] = rec.iupac
        fragments.append(fragment_name(rid, m.group("name") if has_name else None))
        seqs += seq
        n += 1
        offsets[n] = len(seqs)
    return Rows(labels[:n], class_ids[:n], tax_ids[:n], mates[:n], read_lengths[:n], record_index[:n],
                 hash_names(fragments), iupac[:n], readlen_bad[:n], bytes(seqs), offsets[: n + 1], records_in, bad)


def _convert_unit(unit: Unit, shard_index: int, s: Settings) -> dict[str, Any]:
    tok = _worker_tokenizer(s.tokenizer, s.tokenizer_info.get("sha256"))
    data = unit_bytes(unit)  # a plain file's range is read here, in the worker
    rows, other_split = _parsed_rows(unit, data, s)
    staging = Path(s.staging)
    q_fa = fmt.create_file(staging / ".units" / f"q-{shard_index:05d}.fa.tmp", "wb")
    q_tsv = fmt.create_file(staging / ".units" / f"q-{shard_index:05d}.tsv.tmp", "w")
    n = int(rows.labels.size)
    labels = rows.labels
    try:
        skipped, q_ends = _quarantine(unit, rows, s, q_fa, q_tsv)
        ids, full = tok.encode(rows.seqs, rows.offsets, s.max_length)
        lengths = np.minimum(full, s.max_length).astype(np.int16)
        entry = _write_unit_shard(unit, shard_index, s, rows, ids, lengths)
    finally:
        q_fa.close()
        q_tsv.close()
    with fmt.create_file(staging / ".units" / f"q-{shard_index:05d}.ends.tmp") as f:
        f.write(np.asarray(q_ends, dtype=np.int64).tobytes())
    for ext in ("fa", "tsv", "ends"):
        os.replace(staging / ".units" / f"q-{shard_index:05d}.{ext}.tmp", staging / ".units" / f"q-{shard_index:05d}.{ext}")
    record = {
        "shard": {"file": fmt.shard_name(shard_index), "input": unit.file_index, **entry},
        "source": {"file": unit.file, "first_line": unit.first_line, "unit": unit.index_in_file},
        "records_in": rows.records_in,
        "written": n,
        "other_split": other_split,
        "skipped": skipped,
        "truncated": int((full > s.max_length).sum()),
        "iupac_reads": int((rows.iupac > 0).sum()),
        "iupac_bases": int(rows.iupac.sum()),
        "readlen_mismatch": int(rows.readlen_bad.sum()),
        "tax_conflicts": _tax_conflicts(labels, rows.tax_ids, s.label_map),
        "tokens": int(lengths.sum(dtype=np.int64)),
        "class_counts": np.bincount(labels, minlength=s.label_map.num_classes).tolist(),
        "taxa": _taxa(labels, rows.tax_ids, s.label_map),
        "bytes_in": len(data),
        "worker_peak_rss_mb": peak_rss_mb(),
    }
    fmt.write_json_atomic(staging / ".units" / f"u-{shard_index:05d}.json", record, sync=s.sync)
    return record


def _parsed_rows(unit: Unit, data: bytes, s: Settings) -> tuple[Rows, int]:
    """The unit's rows (numba for the default header format), this --split side only; and how many went to the other."""
    if s.header_regex == DEFAULT_HEADER_REGEX and FASTPARSE_AVAILABLE:
        rows = rows_default(unit, data, s)
    else:
        rows = _rows_regex(unit, data, s)
    if rows.bad and s.on_bad_record == "error":
        _, line, problem, _, header = rows.bad[0]
        raise BadRecordError(
            f"{unit.file}, line {line}: bad record ({problem.replace('_', ' ')}): "
            f"{header[:80].decode('ascii', 'replace')!r}. "
            "Fix the input, or use --on-bad-record skip to quarantine such records."
        )
    other_split = 0
    if s.split is not None:  # --split: keep this side's rows only (before tokenizing them)
        side = assign_split(rows.fragment_hashes, s.split["fractions"], s.split["seed"])
        mine = np.flatnonzero(side == SPLIT_SIDES.index(s.split["side"]))
        other_split = int(rows.labels.size - mine.size)
        rows = rows.select(mine)
    return rows, other_split


def _quarantine(unit: Unit, rows: Rows, s: Settings, q_fa: Any, q_tsv: Any) -> tuple[dict[str, int], list[int]]:
    """Write the skipped records to the unit's quarantine parts; return skips by reason and the FASTA part's record ends."""
    skipped = dict.fromkeys(SKIP_REASONS, 0)
    q_bytes = 0
    q_ends: list[int] = []
    for index, line, problem, raw, _ in rows.bad:  # skipped records only: few
        skipped[problem] += 1
        if problem == "too_long":
            raw = _first_line(raw)
        if q_bytes < s.quarantine_max_bytes:  # the merged file is capped; a part need not hold more
            q_bytes += q_fa.write(raw if raw.endswith(b"\n") else raw + b"\n")
            q_ends.append(q_bytes)
        q_tsv.write(f"{unit.file}\t{line}\t{unit.first_record + index}\t{problem}\n")
    return skipped, q_ends


def _write_unit_shard(unit: Unit, shard_index: int, s: Settings, rows: Rows, ids: np.ndarray,
                      lengths: np.ndarray) -> dict[str, Any]:
    """Write the unit's shard under a temporary name and rename it into place; return its manifest entry."""
    staging = Path(s.staging)
    labels = rows.labels
    optional = {"strand_hashes": strand_hashes(rows.seqs, rows.offsets)} if s.strand_hashes else {}
    tmp = staging / f".{fmt.shard_name(shard_index)}.tmp"
    entry = fmt.write_shard(
        tmp,
        input_ids=ids,
        vectors={
            "lengths": lengths,
            "read_lengths": rows.read_lengths,
            "labels": labels,
            "class_ids": rows.class_ids,
            "tax_ids": rows.tax_ids,
            "mates": rows.mates,
            "record_numbers": rows.record_index + unit.first_record,
            "fragment_hashes": rows.fragment_hashes,
            **optional,
        },
        num_classes=s.label_map.num_classes,
        tokenizer=s.tokenizer_info,
        shard_index=shard_index,
        layout=s.layout,
        compression=s.compression,
        extra_attrs={"source": {"file": unit.file, "first_line": unit.first_line, "unit": unit.index_in_file}},
        dataset_id=s.dataset_id,
        sync=s.sync,
    )
    os.replace(tmp, staging / fmt.shard_name(shard_index))
    return entry


def _first_line(raw: bytes, cap: int = 1 << 16) -> bytes:
    """A too_long record's header line (at most ``cap`` bytes): all quarantine.fa keeps of it."""
    nl = raw.find(b"\n", 0, cap)
    return raw[: nl + 1] if nl >= 0 else raw[:cap]


def peak_rss_mb() -> float:
    """This process's own RSS high-water mark (VmHWM; ru_maxrss is inherited across fork+exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


