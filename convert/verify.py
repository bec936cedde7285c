"""Checking a dataset: ``python -m convert verify DIR [--source INPUT...]`` and ``stats``.

``verify`` checks, without trusting the converter:

* the manifest (format version) and every shard: present, size and sha256 as recorded,
  attributes consistent with the manifest;
* per read: token ids in the vocabulary, stored length within L, padding only after the
  stored length, labels in range and consistent with class ids, the CSR class index;
* row counts: the manifest's against each shard's attributes and HDF5 shapes;
* ``report.json`` is present (every converted dataset has one) and reconciles: records in =
  written + skipped (+ other split sides), with the manifest's source counts and shard count,
  and its per-class counts with the shards' labels;
* ``quarantine.tsv`` lists the skipped count, one well-formed row each, and ``quarantine.fa``
  holds exactly the bytes the report says it kept (an emptied or truncated file fails).

With ``--source``, the original inputs are re-read with **pyfastx** (a parser independent of
the converter's; FASTQ by a plain four-line reader, as pyfastx stops at a malformed record): the record count must equal the report's, every quarantined record must
sit at its recorded position, and for a sample of reads (default 1%) the stored tokens
must decode to the source read (upper-cased, IUPAC codes as N; a prefix when truncated),
the labels must match the header, and the row's record number, fragment hash and strand
hash (where stored) must be the record's.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

import shards as fmt
from .fastparse import strand_hash_one
from .labels import display_names
from .provenance import fnv1a64_one, fragment_name
from shards.reader import ShardReader
from .staging import rebuild_command

__all__ = ["verify_dataset", "dataset_stats"]

# The converter's view of a sequence: IUPAC codes as N, and no CR/tab/space (pyfastx keeps
# e.g. the CR of a blank CRLF line inside the sequence; the converter drops it).
_IUPAC_TO_N = str.maketrans({**{c: "N" for c in "RYSWKMBDHVU"}, "\r": None, "\t": None, " ": None})


def _check_shard(
    reader: ShardReader, entry: dict[str, Any], problems: list[str], index: int, damaged: list[int] | None = None,
) -> np.ndarray | None:
    """Append to ``problems`` whatever is wrong with one shard (file, layout, attributes, every read).

    ``damaged`` gets ``index`` when the file itself is missing or not as recorded (size,
    sha256): what ``--resume`` re-converts. Returns the shard's reads per label when its rows
    could be read (None otherwise).
    """
    directory, manifest = reader.directory, reader.manifest
    path = directory / entry["file"]
    state = fmt.check_shard(path, entry, hash=True)
    if not state.intact:
        damaged is not None and damaged.append(index)
    if state.problem in ("missing", "symlink", "special"):
        what = "missing shard" if state.problem == "missing" else f"a {state.problem} file, not a regular shard file"
        problems.append(f"{path}: {what}")
        return
    if state.problem == "size":
        problems.append(f"{path}: {state.size} bytes, manifest says {entry['bytes']} (truncated or replaced)")
        return
    if state.problem == "sha256":
        digest = str(state.digest)
        problems.append(f"{path}: sha256 {digest[:16]}... differs from the manifest's {entry['sha256'][:16]}... (corrupt)")
    try:
        attrs = fmt.read_shard_attrs(path)
    except fmt.FormatError as exc:
        problems.append(str(exc))
        return
    layout = fmt.shard_layout_problems(path, entry, manifest, index)
    problems.extend(layout)
    L = int(manifest["max_length"])
    C = int(manifest["num_classes"])
    if attrs["format_version"] != fmt.FORMAT_VERSION:
        problems.append(
            f"{path}: shard written in format version {attrs['format_version']}, this readshard reads "
            f"version {fmt.FORMAT_VERSION}; re-convert the source (`python -m convert INPUT --out NEW_DIR`)"
        )
    for key, want in (("max_length", L), ("num_rows", entry["num_rows"]), ("num_classes", C)):
        if attrs[key] != want:
            problems.append(f"{path}: attribute {key}={attrs[key]}, expected {want}")
    if attrs["tokenizer"] != manifest["tokenizer"]:
        problems.append(f"{path}: tokenizer attribute differs from the manifest's")
    foreign = manifest.get("dataset_id") is not None and attrs.get("dataset_id") != manifest["dataset_id"]
    if foreign:
        problems.append(
            f"{path}: dataset_id {attrs.get('dataset_id')!r} is not the manifest's {manifest['dataset_id']!r}: "
            "this shard belongs to another conversion; re-convert (`python -m convert INPUT --out DIR --overwrite`)"
        )
    n = int(entry["num_rows"])
    if n == 0:
        return np.zeros(C, dtype=np.int64)
    if layout or foreign:  # rows are read by the manifest's description (and identity): only when it is right
        return None
    try:
        return _check_rows(reader, index, problems)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, fmt.FormatError) as exc:
        # Corrupt HDF5 metadata (bad checksum, wrong shape) surfaces in many types.
        problems.append(
            f"{path}: unreadable shard content ({exc.__class__.__name__}: {fmt.first_line(exc)}); "
            "re-convert it: `python -m convert INPUT --out DIR --resume`"
        )
        return


def _check_rows(reader: ShardReader, s: int, problems: list[str]) -> np.ndarray | None:
    """Check every read of shard ``s``; return its reads per label (None when labels are out of range)."""
    manifest, path, n = reader.manifest, Path(reader.files[s]), int(reader.counts[s])
    L = int(manifest["max_length"])
    C = int(manifest["num_classes"])
    cols = reader.read_columns(s, ("lengths", "labels", "class_ids", "class_offsets", "class_rows"))
    lengths = cols["lengths"].astype(np.int64)
    labels, class_ids, offsets, rows = (np.asarray(cols[k]) for k in ("labels", "class_ids", "class_offsets", "class_rows"))
    vocab = int(manifest["tokenizer"]["vocab_size"])
    pad = int(manifest["tokenizer"]["pad_id"])
    bad_ids = bad_pad = 0
    col = np.arange(L)[None, :]
    for a, block in reader.iter_blocks(s, "input_ids", 1 << 16):
        bad_ids += int(((block < 0) | (block >= vocab)).sum())
        bad_pad += int(((col >= lengths[a : a + len(block), None]) & (block != pad)).sum())
    if bad_ids:
        problems.append(f"{path}: {bad_ids} token ids outside the vocabulary 0..{vocab - 1}")
    if bad_pad:
        problems.append(f"{path}: {bad_pad} non-pad tokens after the stored length")
    if ((lengths < 0) | (lengths > L)).any():
        problems.append(f"{path}: stored lengths outside 0..{L}")
    if ((labels < 0) | (labels >= C)).any():
        problems.append(f"{path}: labels outside 0..{C - 1}")
        return None
    want_cid = np.asarray(manifest["label_class_ids"], dtype=np.int64)[labels]
    if (want_cid != class_ids).any():
        problems.append(f"{path}: {(want_cid != class_ids).sum()} class ids disagree with their labels")
    per_label = np.bincount(labels, minlength=C)
    if not np.array_equal(np.diff(offsets), per_label) or not np.array_equal(
        np.sort(rows), np.arange(n)
    ) or (np.diff(labels[rows]) < 0).any():
        problems.append(f"{path}: per-class row index (class_offsets/class_rows) is inconsistent")
    return per_label


def verify_dataset(
    directory: str | os.PathLike[str], sources: Sequence[str] | None = None, sample: float = 0.01, progress: bool = False
) -> dict[str, Any]:
    """Verify a dataset; see the module docstring. Returns ``{"ok", "summary", "messages", ...}``.

    ``progress`` shows a bar (stderr) over the shards' bytes, then over the source records.
    """
    directory = Path(directory)
    problems: list[str] = []
    messages: list[str] = []
    try:
        manifest = fmt.read_manifest(directory)
    except fmt.FormatError as exc:
        return {"ok": False, "summary": str(exc), "messages": [], "problems": [str(exc)]}
    total = 0
    per_label: np.ndarray | None = np.zeros(int(manifest["num_classes"]), dtype=np.int64)
    damaged: list[int] = []
    reader = ShardReader(directory, manifest, check_files=False)  # _check_shard checks each file
    with _bar(progress, sum(int(e.get("bytes", 0)) for e in manifest["shards"]), "verify shards", "B") as bar:
        for index, entry in enumerate(manifest["shards"]):
            counts = _check_shard(reader, entry, problems, index, damaged)
            per_label = None if counts is None or per_label is None else per_label + counts
            total += int(entry["num_rows"])
            bar.update(int(entry.get("bytes", 0)))
    if problems and damaged:
        problems.append(
            f"to re-convert the damaged shards from the inputs: `python -m convert INPUT --out {directory} --resume`"
        )
    elif problems:  # every shard as recorded: the manifest was changed, which --resume cannot rebuild
        problems.append(f"the shards are intact but the manifest disagrees with them: convert anew with "
                        f"{rebuild_command(manifest, directory)}")
    if total != manifest["totals"]["num_rows"]:
        problems.append(f"manifest totals say {manifest['totals']['num_rows']} rows, shards hold {total}")
    messages.append(f"checked {len(manifest['shards'])} shards, {total:,} reads")
    side: list[str] = []  # report and quarantine problems: the inputs rebuild them, not --resume
    # The converter records source.records_in and always writes the report and quarantine files;
    # a dataset written by the shards writer alone (tests, other tools) has none to check.
    by_converter = "records_in" in manifest.get("source", {}) or (directory / fmt.REPORT_NAME).exists()
    report = _read_report(directory, side) if by_converter else None
    quarantined = _read_quarantine_tsv(directory, side) if by_converter else []
    if not by_converter:
        messages.append(f"no {fmt.REPORT_NAME} and no source.records_in in the manifest (not written by the "
                        "converter): report and quarantine not checked")
    if report is not None:
        try:
            _check_report(directory, manifest, report, total, per_label, quarantined, side)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            side.append(f"{directory / fmt.REPORT_NAME}: malformed ({exc.__class__.__name__}: {fmt.first_line(exc)})")
            report = None
    if side:
        problems.extend(side)
        problems.append(
            f"{fmt.REPORT_NAME}, quarantine.fa and quarantine.tsv are written from a whole pass over the inputs: "
            f"to rebuild them re-convert (`python -m convert INPUT --mapping TSV --out {directory} --overwrite`, with "
            "the original options)"
        )
    if sources:
        try:
            with _bar(progress, report["records_in"] if report else None, "verify sources", " reads") as bar:
                _check_sources(directory, manifest, report, quarantined, list(sources), sample, problems, messages,
                               bar)
        except (fmt.FormatError, OSError, RuntimeError, KeyError, ValueError) as exc:
            # A shard already reported above as corrupt or truncated; or an unreadable source.
            problems.append(f"source check stopped: {fmt.first_line(exc)}")
    ok = not problems
    summary = f"{directory}: {total:,} reads in {len(manifest['shards'])} shards" + ("" if ok else f"; {len(problems)} problem(s)")
    return {"ok": ok, "summary": summary, "messages": messages + problems, "problems": problems}


def _read_report(directory: Path, problems: list[str]) -> dict[str, Any] | None:
    """``report.json`` as a dict; None (and a problem) when it is missing or unreadable."""
    path = directory / fmt.REPORT_NAME
    if not path.is_file():
        problems.append(f"{path} is missing: every dataset the converter publishes has one (counts of reads in, "
                        "written and skipped); it was deleted or the dataset was copied incompletely")
        return None
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        problems.append(f"{path}: unreadable ({fmt.first_line(exc)})")
        return None
    if not isinstance(report, dict):
        problems.append(f"{path}: not a JSON object")
        return None
    return report


def _read_quarantine_tsv(directory: Path, problems: list[str]) -> list[tuple[str, int, int, str]]:
    """The rows of ``quarantine.tsv`` (file, line, record, reason); a malformed row is a problem."""
    path = directory / "quarantine.tsv"
    if not path.is_file():
        problems.append(f"{path} is missing: the converter always writes it (a header line, then one line per "
                        "skipped record)")
        return []
    out: list[tuple[str, int, int, str]] = []
    lines = path.read_text(errors="replace").splitlines()
    if not lines or lines[0] != "file\tline\trecord\treason":
        problems.append(f"{path}, line 1: not the header file<TAB>line<TAB>record<TAB>reason")
    for lineno, line in enumerate(lines[1:], start=2):
        parts = line.split("\t")
        try:
            file, at, record, reason = parts
            out.append((file, int(at), int(record), reason))
        except ValueError:
            problems.append(f"{path}, line {lineno}: malformed row {line[:80]!r}")
    return out


def _check_report(
    directory: Path, manifest: dict[str, Any], report: dict[str, Any], total: int, per_label: np.ndarray | None,
    quarantined: list[tuple[str, int, int, str]], problems: list[str],
) -> None:
    """Does the report reconcile with itself, the manifest, the shards and the quarantine files?"""
    path = directory / fmt.REPORT_NAME
    other = int(report.get("other_split", 0))
    if report["records_in"] != report["written"] + report["skipped"] + other:
        problems.append(
            f"report does not reconcile: {report['records_in']} in != {report['written']} written + "
            f"{report['skipped']} skipped + {other} on other split sides"
        )
    if report["written"] != total:
        problems.append(f"report says {report['written']} written, shards hold {total}")
    source = manifest.get("source", {})
    for key in ("records_in", "skipped", "other_split"):
        if key in source and key in report and int(report[key]) != int(source[key]):
            problems.append(f"{path}: {key} is {report[key]}, the manifest's source says {source[key]}")
    if "shards" in report and int(report["shards"]) != len(manifest["shards"]):
        problems.append(f"{path}: {report['shards']} shards, the manifest lists {len(manifest['shards'])}")
    if len(quarantined) != report["skipped"]:
        problems.append(f"quarantine.tsv lists {len(quarantined)} records, report says {report['skipped']} skipped")
    per_class = report.get("per_class")
    if isinstance(per_class, dict):
        names = display_names(manifest["label_names"], manifest["label_class_ids"])
        if sum(int(v) for v in per_class.values()) != report["written"]:
            problems.append(f"{path}: per_class counts sum to {sum(int(v) for v in per_class.values())}, "
                            f"{report['written']} reads were written")
        elif per_label is not None and per_class != dict(zip(names, per_label.tolist())):
            wrong = [n for n, c in zip(names, per_label.tolist()) if per_class.get(n) != c]
            problems.append(f"{path}: per_class disagrees with the shards' labels for {len(wrong)} class(es) "
                            f"(e.g. {wrong[0]!r}: report {per_class.get(wrong[0])}, shards "
                            f"{int(per_label[names.index(wrong[0])])})" if wrong else
                            f"{path}: per_class names other classes than the manifest's label_names")
    _check_quarantine_fa(directory, report, problems)


def _check_quarantine_fa(directory: Path, report: dict[str, Any], problems: list[str]) -> None:
    """``quarantine.fa`` holds the bytes and records the report says were kept."""
    path = directory / fmt.QUARANTINE_NAME
    q = report.get("quarantine")
    if not path.is_file():
        problems.append(f"{path} is missing: the converter always writes it (the skipped records, verbatim)")
        return
    size = path.stat().st_size
    if not isinstance(q, dict):  # a report from before the quarantine cap: every skipped record is kept
        if report["skipped"] and not size:
            problems.append(f"{path} is empty, but {report['skipped']} records were skipped")
        return
    if size != int(q["bytes"]):
        problems.append(f"{path}: {size:,} bytes, the report says {int(q['bytes']):,} were kept "
                        f"({q['records_kept']} records): emptied, truncated or replaced")
    if int(q["records_kept"]) + int(q["records_not_kept"]) != report["skipped"]:
        problems.append(f"{fmt.REPORT_NAME}: quarantine keeps {q['records_kept']} + {q['records_not_kept']} not kept "
                        f"records, but {report['skipped']} were skipped")
    if int(q["records_kept"]) and not size:
        problems.append(f"{path} is empty, but the report says it keeps {q['records_kept']} records")


def _check_sources(
    directory: Path,
    manifest: dict[str, Any],
    report: dict[str, Any] | None,
    quarantined: list[tuple[str, int, int, str]],
    sources: list[str],
    sample: float,
    problems: list[str],
    messages: list[str],
    bar: Any = None,
) -> None:
    import pyfastx

    from .tokenizers import load_tokenizer

    try:
        tok = load_tokenizer(manifest["tokenizer"]["name"])
        if tok.info["sha256"] != manifest["tokenizer"]["sha256"]:
            raise ValueError("tokenizer file differs")
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        problems.append(f"cannot load the dataset's tokenizer to decode reads ({exc})")
        return
    rx = re.compile(manifest["source"]["header_regex"])
    bad = {(os.path.basename(f), r): reason for f, _, r, reason in quarantined}
    known = set(int(c) for c in manifest["label_class_ids"])
    counts = np.cumsum([0] + [e["num_rows"] for e in manifest["shards"]])
    maps: dict[int, dict[str, np.ndarray]] = {}
    reader = ShardReader(directory, manifest, check_files=False)  # problems with files are reported above
    L = int(manifest["max_length"])
    rng = np.random.default_rng(0)
    row = 0
    n_records = n_checked = n_quarantine_seen = n_unseen = 0
    nul: dict[str, bool] = {}
    for path in sources:
        base = os.path.basename(path)
        split = manifest["source"].get("split")
        for record_index, rec, on_side in _with_split_side(_source_records(path, pyfastx), split, rx):
            n_records += 1
            if bar is not None and not n_records % 8192:
                bar.update(8192)
            reason = bad.get((base, record_index))
            if reason is not None:
                if _has_problem(rec[0], rec[1], reason, rx, known):
                    n_quarantine_seen += 1
                elif reason in ("non_nucleotide", "header_mismatch") and nul.setdefault(path, _has_nul(path)):
                    # pyfastx reads C strings: a record's NUL byte (its reason) is invisible to it.
                    n_quarantine_seen += 1
                    n_unseen += 1
                else:
                    problems.append(
                        f"{path}, record {record_index}: quarantined as {reason}, but the source record "
                        f"there is usable ({rec[0][:60]!r}): the source changed since the conversion"
                    )
                continue
            if not on_side:
                continue  # a good record of another --split side
            if row >= counts[-1]:
                problems.append(f"{path}: more good records than the dataset holds")
                return
            if rng.random() < sample:
                shard = int(np.searchsorted(counts, row, side="right") - 1)
                if shard not in maps:
                    maps[shard] = _shard_columns(reader, directory, manifest, shard)
                _check_row(maps[shard], row - int(counts[shard]), rec, f"{path}, record {record_index}", record_index,
                           tok, rx, L, problems)
                n_checked += 1
            row += 1
    if report is not None and n_records != report["records_in"]:
        problems.append(f"pyfastx reads {n_records} records in the sources, the report says {report['records_in']} came in")
    if n_quarantine_seen != len(quarantined):
        problems.append(f"{len(quarantined) - n_quarantine_seen} quarantined records were not found at their recorded positions")
    if row != counts[-1]:
        problems.append(f"the sources hold {row} good records, the dataset {counts[-1]}")
    messages.append(_sources_message(n_records, n_checked, n_quarantine_seen, n_unseen))


def _shard_columns(reader: ShardReader, directory: Path, manifest: dict[str, Any], shard: int) -> dict[str, np.ndarray]:
    """The columns :func:`_check_row` compares, of one shard (mapped, or decompressed whole)."""
    if manifest["layout"] == "mmap":
        return reader.map(shard)[1]
    return reader.read_columns(shard, ("input_ids", "lengths", "labels", "class_ids", "mates",
                                       "record_numbers", "fragment_hashes", "strand_hashes"))


def _sources_message(n_records: int, n_checked: int, n_quarantine_seen: int, n_unseen: int) -> str:
    """What ``verify --source`` checked, in one line."""
    return (
        f"sources: {n_records:,} records re-read with pyfastx (FASTQ line by line); {n_checked:,} sampled reads decoded and matched; "
        f"{n_quarantine_seen:,} quarantined records found at their positions"
        + (f" ({n_unseen:,} of them not checked: the source holds NUL bytes, which pyfastx cannot read)" if n_unseen else "")
    )


def _has_nul(path: str) -> bool:
    """Does the (plain or gzip) file hold a NUL byte? One streaming pass, only when asked."""
    with open(path, "rb") as f:
        opener = gzip.open if f.read(2) == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        while block := f.read(1 << 24):
            if b"\0" in block:
                return True
    return False


def _check_row(
    m: dict[str, np.ndarray], r: int, rec: tuple[str, str], where: str, record_index: int, tok: Any,
    rx: re.Pattern[str], L: int, problems: list[str],
) -> None:
    """Compare stored row ``r`` of a shard's columns ``m`` with its source record ``rec`` (id, sequence)."""
    want = rec[1].translate(_IUPAC_TO_N)
    got = tok.decode(m["input_ids"][r][: int(m["lengths"][r])])
    if not (got == want or (int(m["lengths"][r]) == L and want.startswith(got[: max(len(got) - 8, 0)]))):
        problems.append(f"{where}: stored tokens decode to {got[:30]}..., source read is {want[:30]}...")
    match = rx.match(rec[0])
    if match is None or int(match.group("class_id")) != int(m["class_ids"][r]):
        problems.append(f"{where}: class id does not match the header {rec[0]!r}")
    elif match.groupdict().get("mate") and int(match.group("mate")) != int(m["mates"][r]):
        problems.append(f"{where}: mate does not match the header {rec[0]!r}")
    if int(m["record_numbers"][r]) != record_index:
        problems.append(f"{where}: stored record number is {int(m['record_numbers'][r])}")
    rid = rec[0].split(None, 1)[0] if rec[0].strip() else ""
    group = match.groupdict().get("name") if match is not None else None
    frag = fragment_name(rid.encode(errors="surrogateescape"), group.encode(errors="surrogateescape") if group else None)
    if int(m["fragment_hashes"][r]) != fnv1a64_one(frag):
        problems.append(f"{where}: stored fragment hash does not match {frag!r}")
    if "strand_hashes" in m and int(m["strand_hashes"][r]) != strand_hash_one(want.encode()):
        problems.append(f"{where}: stored strand hash is not the read's")


def _bar(enabled: bool, total: int | None, desc: str, unit: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, disable=not enabled, file=sys.stderr)


def _with_split_side(
    records: Iterator[tuple[str, str]], split: dict[str, Any] | None, rx: re.Pattern[str], chunk: int = 65536
) -> Iterator[tuple[int, tuple[str, str], bool]]:
    """``(record_index, record, on_this_side)``; without a split every record is on the side.

    Fragment hashes are computed a chunk at a time (vectorized FNV-1a), as the converter does.
    """
    from itertools import islice

    from .provenance import SPLIT_SIDES, assign_split, hash_names

    index = 0
    it = iter(records)
    while batch := list(islice(it, chunk)):
        if split is None:
            sides = [True] * len(batch)
        else:
            names = []
            for name, _ in batch:
                rid = name.split(None, 1)[0] if name.strip() else ""
                m = rx.match(rid)
                group = m.groupdict().get("name") if m is not None else None
                names.append(fragment_name(rid.encode(errors="surrogateescape"),
                                           group.encode(errors="surrogateescape") if group else None))
            want = SPLIT_SIDES.index(split["side"])
            sides = (assign_split(hash_names(names), split["fractions"], split["seed"]) == want).tolist()
        for rec, side in zip(batch, sides):
            yield index, rec, side
            index += 1


def _source_records(path: str, pyfastx: Any) -> Iterator[tuple[str, str]]:
    """``(id, sequence)`` of every record: pyfastx for FASTA, a line reader for FASTQ.

    pyfastx stops silently at the first malformed FASTQ record (e.g. a quality line of the
    wrong length), which the converter quarantines and counts; this reader applies the
    documented FASTQ rule instead (blank lines between records skipped, then four lines per
    record) and yields a malformed record with an empty sequence, so the count goes on.
    """
    from .fastx import InputError, sniff

    try:
        kind = sniff(path)
    except InputError as exc:  # missing, empty, binary or corrupt gzip: a problem, not a crash
        raise ValueError(str(exc)) from None
    if kind == "fasta":
        for rec in pyfastx.Fastx(path, uppercase=True):
            yield rec[0], rec[1]
        return
    with open(path, "rb") as f:
        opener = gzip.open if f.read(2) == b"\x1f\x8b" else open
    with opener(path, "rb") as f:
        lines = (line.rstrip(b"\n").rstrip(b"\r") for line in f)
        for head in lines:
            if not head:
                continue  # blank line between records
            rest = [next(lines, None) for _ in range(3)]
            rid = head[1:].split(None, 1)[0].decode(errors="surrogateescape") if head[1:].strip() else ""
            seq, plus, qual = rest
            ok = head.startswith(b"@") and plus is not None and plus.startswith(b"+") and len(qual or b"") == len(seq or b"")
            yield rid, (seq.decode(errors="surrogateescape").upper() if ok else "")


_NUCLEOTIDE = set("ACGTNRYSWKMBDHVU")


def _has_problem(name: str, seq: str, reason: str, rx: re.Pattern[str], known: set[int]) -> bool:
    """Does the source record (as pyfastx reads it) have the problem it was quarantined for?"""
    if reason == "empty_header":
        return not name.strip()
    bases = seq.upper().translate(_IUPAC_TO_N)  # drops CR/tab/space too
    if reason == "empty_sequence":
        return not bases
    if reason == "non_nucleotide":
        return not set(bases) <= _NUCLEOTIDE
    m = rx.match(name.split(None, 1)[0] if name.strip() else "")
    if reason == "header_mismatch":
        return m is None or _header_fields(m) is None
    if reason == "unknown_class":
        return m is not None and int(m.group("class_id")) not in known
    return True  # malformed_fastq: pyfastx reads such records its own way; position checked only


def _header_fields(m: re.Match[str]) -> tuple[int, int, int, int] | None:
    # The converter's rule for usable header fields (convert.unit.header_fields), on str.
    from .unit import header_fields as on_bytes

    return on_bytes(re.compile(m.re.pattern.encode()).match(m.string.encode(errors="surrogateescape")))


def dataset_stats(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Counts, lengths and per-class totals of a dataset (reads only small vectors)."""
    directory = Path(directory)
    manifest = fmt.read_manifest(directory)
    L = int(manifest["max_length"])
    C = int(manifest["num_classes"])
    per_class = np.zeros(C, dtype=np.int64)
    length_hist = np.zeros(L + 1, dtype=np.int64)
    reader = ShardReader(directory, manifest)
    for s in range(reader.num_shards):
        per_class += np.bincount(reader.read_vector(s, "labels"), minlength=C)
        length_hist += np.bincount(reader.read_vector(s, "lengths").astype(np.int64), minlength=L + 1)
    n = int(per_class.sum())
    mean_len = float((length_hist * np.arange(L + 1)).sum() / max(n, 1))
    report_path = directory / fmt.REPORT_NAME
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    return {
        "dataset": str(directory),
        "format_version": manifest["format_version"],
        "tokenizer": f"{manifest['tokenizer']['name']} (vocab {manifest['tokenizer']['vocab_size']}, sha256 {manifest['tokenizer']['sha256'][:12]})",
        "layout": manifest["layout"],
        "max_length": L,
        "reads": n,
        "shards": len(manifest["shards"]),
        "classes": C,
        "mean_tokens_per_read": round(mean_len, 2),
        "reads_at_max_length": int(length_hist[L]),
        "bytes_on_disk": sum(e["bytes"] for e in manifest["shards"]),
        "records_in": report.get("records_in"),
        "skipped": report.get("skipped"),
        "per_class": dict(zip(display_names(manifest["label_names"], manifest["label_class_ids"]), per_class.tolist())),
    }
