"""FASTA/FASTQ input: sniffing, cutting a stream into record-aligned units, parsing units.

The converter's parallel unit of work is a *unit*: up to ``records_per_unit`` consecutive
records of one input file, cut at record boundaries by a single sequential pass over the
(plain or gzip) stream. Units depend only on the input and ``records_per_unit``, never on
the number of workers, which is what makes the output identical for any ``--jobs``.

For plain FASTA and FASTQ the pass is compiled and runs outside the GIL
(:mod:`convert.boundaries`); gzip and a unit holding a record over ``max_record_bytes``
take the streaming numpy scan here, which cuts the same units.

A unit of a plain file is a byte range (``offset``, ``length``) and carries no bytes: the
worker reads its range itself (:func:`unit_bytes`), so the parent's scan is the only
sequential pass and no input data crosses a pipe. gzip has no random access (an index of
the deflate stream would need its 32 KiB window per access point), so for gzip input the
parent decompresses while it scans and the unit carries its decompressed bytes, as before.

Record rules (what every parser here agrees on):

* FASTA: a record starts at ``>`` at the beginning of a line; its sequence is every
  following line up to the next record, joined. FASTQ: four lines per record
  (``@id``, sequence, ``+``, quality of the same length); multi-line FASTQ is not supported.
* CR before LF is dropped (CRLF files), blank lines are ignored, the last record may lack
  a trailing newline. Sequences are upper-cased; IUPAC ambiguity codes (R Y S W K M B D H V,
  and U) become N and are counted; any other character makes the record non-nucleotide.
* A NUL byte (e.g. a zeroed disk block) is one bad record wherever it is: in a sequence it is
  non-nucleotide, in a header the header does not match (the converter's record check), and
  the sniff refuses a file as binary only when control bytes are over 1% of its head.
"""

from __future__ import annotations

import codecs
import gzip
import os
import re
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Generator, Iterator

import numpy as np

__all__ = [
    "InputError",
    "Unit",
    "check_regular",
    "sniff",
    "iter_units",
    "parse_unit",
    "unit_bytes",
    "ParsedRecord",
    "IUPAC",
]

BLOCK = 1 << 24
IUPAC = b"RYSWKMBDHVU"
_VALID = b"ACGTN"


class InputError(Exception):
    """An input that cannot be converted at all (not FASTA/FASTQ, empty, binary, bad gzip)."""

    def __init__(self, path: str | os.PathLike[str], message: str, *, line: int | None = None, offset: int | None = None):
        where = str(path)
        if line is not None:
            where += f", line {line}"
        if offset is not None:
            where += f", byte offset {offset}"
        super().__init__(f"{where}: {message}")
        self.path = str(path)
        self.line = line
        self.offset = offset


@dataclass(frozen=True)
class Unit:
    """A run of whole records from one input file.

    ``data`` holds the records (gzip input, tests); when it is None the records are the
    ``length`` bytes at ``offset`` of the plain file ``file``, read by :func:`unit_bytes`.
    """

    file: str
    file_index: int
    index_in_file: int
    first_line: int
    first_record: int
    data: bytes | None
    fmt: str
    offset: int = 0
    length: int = -1
    lead: bytes = b""  # the byte the scan saw at ``offset``: a malformed record may not start with > or @
    records: int = -1  # record starts the scan found (a capacity hint for parsers; -1 unknown)

    @property
    def nbytes(self) -> int:
        """Size of the unit's records in bytes."""
        return len(self.data) if self.data is not None else self.length


def unit_bytes(unit: Unit) -> bytes:
    """The unit's records: its ``data``, or its byte range read from the input file.

    Raises:
        InputError: the file is gone, or no longer holds a record start at the unit's
            offset or enough bytes (it changed since the scan).
    """
    if unit.data is not None:
        return unit.data
    try:
        with open(unit.file, "rb") as f:
            f.seek(unit.offset)
            data = f.read(unit.length)
    except OSError as exc:
        raise InputError(unit.file, f"cannot read the input ({exc.strerror or exc})", offset=unit.offset) from None
    if len(data) != unit.length or data[:1] != (unit.lead or (b">" if unit.fmt == "fasta" else b"@")):
        raise InputError(
            unit.file,
            "the input changed while it was being converted (no record at this offset any more); "
            "rerun the conversion with --overwrite on the final file",
            offset=unit.offset,
        )
    return data


def _translation_tables() -> tuple[bytes, bytes]:
    # seq table: valid bases -> upper case, IUPAC -> '?', everything else -> '!'.
    table = bytearray(b"!" * 256)
    for c in _VALID:
        table[c] = c
        table[c + 32] = c
    for c in IUPAC:
        table[c] = ord("?")
        table[c + 32] = ord("?")
    return bytes(table), b"\r\n\t "


_SEQ_TABLE, _SEQ_DELETE = _translation_tables()


def _open_raw(path: Path) -> tuple[BinaryIO, BinaryIO, bool]:
    raw = open(path, "rb")
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw, True
    return raw, raw, False


def check_regular(path: str | os.PathLike[str]) -> None:
    """Refuse an input that is not a regular file, saying what it is and what to do.

    Only ``stat`` (following links): a FIFO is never opened, so nothing blocks on it.

    Raises:
        InputError: missing, a directory, a pipe (FIFO, ``/dev/stdin`` fed by a pipe,
            ``<(...)``) or another special file.
    """
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise InputError(path, "no such file") from None
    except OSError as exc:
        raise InputError(path, f"cannot read the input ({exc.strerror or exc})") from None
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise InputError(path, "this is a directory, not a FASTA/FASTQ file; give the files in it as the inputs "
                               f"(e.g. `python -m convert {os.path.join(path, '*.fa.gz')} --out DIR ...`)")
    if stat.S_ISFIFO(mode):
        raise InputError(path, "this is a pipe (a FIFO, /dev/stdin fed by a pipe, or <(...)), not a file: the converter "
                               "reads each input more than once (to plan its units, in parallel, and again on --resume), "
                               "which a pipe cannot do. Write the stream to a file first (e.g. `zcat reads.fa.gz > "
                               "reads.fa`), or pass the gzip file itself (gzip input is read directly)")
    what = "a character device (a terminal?)" if stat.S_ISCHR(mode) else "a special file (socket or device)"
    raise InputError(path, f"this is {what}, not a FASTA/FASTQ file; give the path of a regular (plain or gzip) file")


def sniff(path: str | os.PathLike[str]) -> str:
    """Return ``"fasta"`` or ``"fastq"`` from the first bytes, or raise :class:`InputError`."""
    path = Path(path)
    check_regular(path)
    stream, raw, gz = _open_raw(path)
    try:
        head = stream.read(1 << 16)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(path, f"unreadable gzip stream ({exc})", offset=raw.tell()) from None
    finally:
        stream.close()
        raw.close()
    return _sniff_bytes(path, head)


_SNIFF_BYTES = 4096
# Bytes no text file holds: C0 controls other than tab, LF, VT, FF, CR; and DEL.
_CONTROL = np.zeros(256, dtype=bool)
_CONTROL[[*range(9), *range(14, 32), 127]] = True
_BINARY_MIN = 8  # a few stray bytes (one NUL) are one bad record, quarantined where it is
_ESCAPED = re.compile("[\udc80-\udcff]")


def _looks_binary(sample: bytes) -> bool:
    """True if ``sample`` is not text: more than 1% (and more than ``_BINARY_MIN``) of its bytes
    are control bytes, or more than 10% are not part of valid UTF-8.

    Bytes above 126 that decode as UTF-8 (``φ``, ``–``, ``é`` in headers) are text, and so is
    the odd Latin-1 header byte; compressed data has ~10% control bytes and is mostly invalid
    UTF-8.
    """
    if not sample:
        return False
    control = int(_CONTROL[np.frombuffer(sample, dtype=np.uint8)].sum())
    # surrogateescape turns each byte outside valid UTF-8 into one lone surrogate; final=False
    # keeps a character cut at the end of the sample out of the count.
    text = codecs.getincrementaldecoder("utf-8")("surrogateescape").decode(sample, final=False)
    invalid = len(_ESCAPED.findall(text))
    return control > max(_BINARY_MIN, 0.01 * len(sample)) or invalid > max(_BINARY_MIN, 0.1 * len(sample))


def _sniff_bytes(path: Path, head: bytes) -> str:
    stripped = head.lstrip(b"\r\n\t ")
    if not stripped:
        raise InputError(path, "the input is empty: no FASTA or FASTQ records")
    if _looks_binary(head[:_SNIFF_BYTES]):
        raise InputError(path, "binary data, not FASTA/FASTQ text (a compressed format other than gzip?)", offset=0)
    first = stripped[:1]
    if first == b">":
        return "fasta"
    if first == b"@":
        return "fastq"
    line = head[: head.find(b"\n")] if b"\n" in head else head[:60]
    raise InputError(
        path,
        f"not FASTA or FASTQ: the first record should start with '>' or '@', found {line[:60]!r}",
        line=head[: len(head) - len(stripped)].count(b"\n") + 1,
    )


def iter_units(
    path: str | os.PathLike[str], file_index: int, records_per_unit: int, progress=None,
    max_record_bytes: int | None = None,
) -> Iterator[Unit]:
    """Cut one input file into units of ``records_per_unit`` records, in order.

    Args:
        path: plain or gzip FASTA/FASTQ.
        file_index: position of the file among the inputs.
        records_per_unit: records per unit (the last unit of a file may have fewer).
        progress: optional callable ``(compressed_bytes_read) -> None``.
        max_record_bytes: a record longer than this is cut, while it streams in, to its first
            ``max_record_bytes + 1`` bytes plus one LF per line end it had (so line numbers
            and FASTQ line structure stay right); the worker sees a record longer than the
            limit and quarantines it as ``too_long``. Memory stays bounded by bytes, never
            by the length of one record (a gzip bomb, a 10 MB header). A unit holding such
            a record carries its (cut) bytes even for a plain file.

    Raises:
        InputError: unreadable input (truncated or corrupt gzip, binary, not FASTA/FASTQ).
    """
    path = Path(path)
    fmt = sniff(path)
    start = (0, 1, 0)
    if not _is_gzip(path):
        from . import boundaries

        if boundaries.AVAILABLE:
            start = yield from _plain_units(path, fmt, file_index, records_per_unit, progress, max_record_bytes)
            if start is None:
                return
    yield from _stream_units(path, fmt, file_index, records_per_unit, progress, max_record_bytes, *start)


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _plain_units(
    path: Path, fmt: str, file_index: int, per_unit: int, progress, max_record_bytes: int | None,
) -> Generator[Unit, None, tuple[int, int, int] | None]:
    """The units of a plain FASTA or FASTQ file, from the compiled scan (:mod:`convert.boundaries`).

    Returns (as the generator's value) None when the file is done, or ``(offset, line, unit)``
    of the first unit the streaming scan must produce instead (it holds a record over
    ``max_record_bytes``, which the streaming scan cuts; or the file has no record start),
    and then the streaming scan goes on from there to the end of the file.
    """
    from . import boundaries

    scan = boundaries.fasta_units if fmt == "fasta" else boundaries.fastq_units
    st = boundaries.new_state()
    out = np.empty((256, len(boundaries.UNIT_FIELDS)), dtype=np.int64)
    buf = np.empty(BLOCK, dtype=np.uint8)
    too_long = float("inf") if max_record_bytes is None else max_record_bytes + 1  # as _cut_long_records
    unit_no = 0
    base = 0
    with open(path, "rb") as f:
        while True:
            try:
                n = f.readinto(memoryview(buf))
            except OSError as exc:
                raise InputError(path, f"cannot read the input ({exc.strerror or exc})", offset=base) from None
            if progress is not None:
                progress(n)
            if not n:
                break
            p = 0
            while p < n:
                p, k = scan(buf, p, n, base, per_unit, st, out)
                for first, cut, records, lfs, longest, lead in out[:k].tolist():
                    if longest > too_long:
                        return first, lfs + 1, unit_no
                    yield Unit(str(path), file_index, unit_no, lfs + 1, unit_no * per_unit, None, fmt, first,
                               cut - first, bytes((lead,)), records)
                    unit_no += 1
            base += n
    last = boundaries.last_unit(st, base)
    if last is None:  # no record start at all: the streaming scan says what is wrong
        return 0, 1, 0
    first, cut, records, lfs, longest, lead = last
    if longest > too_long:
        return first, lfs + 1, unit_no
    yield Unit(str(path), file_index, unit_no, lfs + 1, unit_no * per_unit, None, fmt, first, cut - first,
               bytes((lead,)), records)
    return None


def _stream_units(
    path: Path, fmt: str, file_index: int, records_per_unit: int, progress, max_record_bytes: int | None,
    offset: int = 0, line_no: int = 1, unit_no: int = 0,
) -> Iterator[Unit]:
    """:func:`iter_units` by reading the (plain or gzip) stream, from ``offset`` of a plain file
    (a record start on line ``line_no``, the start of unit ``unit_no``)."""
    stream, raw, gz = _open_raw(path)
    if offset:
        raw.seek(offset)
    pending = bytearray()
    scanned = 0  # bytes of `pending` already scanned for record starts
    # Record starts in `pending` found so far (bounded by one unit plus one block): an int64
    # array, so the scan does no per-record Python (its thread shares the GIL with the workers).
    starts = np.empty(0, dtype=np.int64)
    base = offset  # offset in the (decompressed) stream of pending[0]
    last_pos = offset
    at_line_start = True  # is pending[scanned] at the start of a line?
    fq_k = 0  # FASTQ: line-in-record index (0..3) of the next line to start in the unscanned region
    cuts: list[list[int]] = []  # [position in pending, bytes removed there] of records cut to the limit
    try:
        while True:
            try:
                block = stream.read(BLOCK)
            except (OSError, EOFError, zlib.error) as exc:
                raise InputError(path, f"corrupt or truncated gzip stream ({exc})", offset=raw.tell()) from None
            if progress is not None:
                pos = raw.tell()
                progress(pos - last_pos)
                last_pos = pos
            if block:
                pending += block
            # Find record starts in the newly appended region.
            arr = np.frombuffer(memoryview(pending)[scanned:], dtype=np.uint8)
            new_starts, fq_k = _region_record_starts(arr, fmt, at_line_start, fq_k)
            if new_starts is not None:
                starts = np.concatenate((starts, new_starts + scanned))
            if arr.size:
                at_line_start = bool(arr[-1] == 0x0A)
            del arr  # release the buffer export so `pending` can be resized
            if max_record_bytes is not None:
                starts = _cut_long_records(pending, starts, max_record_bytes, cuts)
            scanned = len(pending)
            # Emit every complete unit (records_per_unit + 1 starts means the first unit is closed).
            while starts.size > records_per_unit:
                cut = int(starts[records_per_unit])
                first = int(starts[0])
                line_no += pending.count(b"\n", 0, first)
                before, inside = _removed(cuts, 0, first), _removed(cuts, first, cut)
                yield _unit(path, file_index, unit_no, line_no, records_per_unit, fmt, gz or inside > 0, pending, first,
                            cut, base + before, inside, records_per_unit)
                unit_no += 1
                line_no += pending.count(b"\n", first, cut)
                del pending[:cut]
                base += cut + before + inside
                cuts = [[p - cut, n] for p, n in cuts if p >= cut]
                scanned -= cut
                starts = starts[records_per_unit:] - cut
            if not block:
                break
        if starts.size:
            first = int(starts[0])
            line_no += pending.count(b"\n", 0, first)
            before, inside = _removed(cuts, 0, first), _removed(cuts, first, len(pending))
            yield _unit(path, file_index, unit_no, line_no, records_per_unit, fmt, gz or inside > 0, pending, first,
                        len(pending), base + before, inside, int(starts.size))
        elif pending.strip():
            raise InputError(path, "no record header found in the remaining data", line=line_no)
    finally:
        stream.close()
        raw.close()


def _region_record_starts(
    arr: np.ndarray, fmt: str, at_line_start: bool, fq_k: int
) -> tuple[np.ndarray | None, int]:
    """Record starts in a newly read region ``arr`` (None: none there) and the FASTQ line index after it.

    ``at_line_start``: whether ``arr[0]`` begins a line; ``fq_k``: the FASTQ line-in-record
    index (0..3) of the next line to start.
    """
    if fmt == "fasta":
        hits = np.flatnonzero(arr == 0x3E)  # '>'
        if not hits.size:
            return None, fq_k
        prev = np.empty(hits.size, dtype=bool)
        nz = hits > 0
        prev[nz] = arr[hits[nz] - 1] == 0x0A
        prev[~nz] = at_line_start
        return hits[prev], fq_k
    # Line starts in the new region whose first byte is known (a line beginning at
    # the very end of `pending` waits for the next block).
    line_starts = np.flatnonzero(arr == 0x0A) + 1
    if at_line_start:
        line_starts = np.concatenate(([0], line_starts))
    line_starts = line_starts[line_starts < arr.size]
    new_starts, fq_k = _fastq_record_starts(arr, line_starts, fq_k)
    return new_starts.astype(np.int64), fq_k


def _unit(
    path: Path, file_index: int, unit_no: int, line_no: int, per_unit: int, fmt: str, gz: bool,
    pending: bytearray, first: int, cut: int, base: int, removed: int = 0, records: int = -1,
) -> Unit:
    """The unit ``pending[first:cut]``: its bytes for gzip (or a cut record), its byte range for a plain file."""
    common = (str(path), file_index, unit_no, line_no, unit_no * per_unit)
    if gz:
        return Unit(*common, bytes(pending[first:cut]), fmt, base + first, cut - first + removed, records=records)
    return Unit(*common, None, fmt, base + first, cut - first, bytes(pending[first : first + 1]), records)


def _removed(cuts: list[list[int]], lo: int, hi: int) -> int:
    """Bytes cut out of records at positions ``lo <= p < hi`` of ``pending``."""
    return sum(n for p, n in cuts if lo <= p < hi)


def _cut_long_records(pending: bytearray, starts: np.ndarray, limit: int, cuts: list[list[int]]) -> np.ndarray:
    """Cut every record of ``pending`` longer than ``limit + 1`` bytes down to its first ``limit + 1``
    bytes plus one LF per line end it had; return the shifted record starts (``cuts`` updated).

    A record is cut from ``a = start + limit + 1`` to just after its last LF (so a partial last
    line is kept and the scan continues it), or, if that stretch has no LF, to the end of
    ``pending`` (a single huge line; then ``a`` never follows an LF, so no record start can
    appear at the seam). Line counts are unchanged, so line numbers and FASTQ structure hold.
    """
    # Runs on every block: find the long records with numpy, loop in Python only over them.
    bounds = np.append(starts, len(pending)).astype(np.int64)
    long = np.flatnonzero(np.diff(bounds) > limit + 1)
    if long.size:
        starts = starts.copy()  # shifted in place below
    for i in long[::-1].tolist():  # last first: earlier positions stay valid
        s, e = int(bounds[i]), int(bounds[i + 1])
        a = s + limit + 1
        last_lf = pending.rfind(b"\n", a, e)
        if last_lf >= 0:
            b = last_lf + 1
        else:
            if pending[a - 1] == 0x0A:
                a += 1
            b = e
        lfs = pending.count(b"\n", a, b)
        removed = (b - a) - lfs
        if removed <= 0:
            continue  # already cut: only LFs are left there
        pending[a:b] = b"\n" * lfs
        for c in cuts:
            if c[0] >= b:
                c[0] -= removed
            elif c[0] >= a:
                c[0] = a  # an earlier cut of this same record
        cuts.append([a, removed])
        starts[i + 1 :] -= removed
    return starts


def _fastq_record_starts(arr: np.ndarray, line_starts: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Record starts among ``line_starts`` (offsets into ``arr``), FASTQ rules of :func:`parse_unit`.

    ``k`` is the line-in-record index (0..3) of the first line. Between records (k == 0) a
    line whose first byte is LF or CR is blank and skipped; inside a record every line
    counts. Returns the starts and the ``k`` of the next line.
    """
    if line_starts.size == 0:
        return line_starts, k
    first = arr[line_starts]
    if not ((first == 0x0A) | (first == 0x0D)).any():
        # No blank line: plain arithmetic (the common case, vectorized).
        idx = (k + np.arange(line_starts.size)) % 4
        return line_starts[idx == 0], int((k + line_starts.size) % 4)
    out = []
    for pos, c in zip(line_starts.tolist(), first.tolist()):
        if k == 0:
            if c in (0x0A, 0x0D):
                continue
            out.append(pos)
        k = (k + 1) % 4
    return np.asarray(out, dtype=np.int64), k


@dataclass
class ParsedRecord:
    """One record of a unit (transient; the converter keeps none of these)."""

    line: int
    header: bytes  # without the leading '>'/'@' and trailing CR
    seq: bytes  # upper-cased, IUPAC -> N; empty if the record is malformed
    raw: bytes  # the record verbatim
    iupac: int
    problem: str | None


def parse_unit(unit: Unit, data: bytes | None = None) -> Iterator[ParsedRecord]:
    """Yield the records of a unit in order, each with its line number and any problem.

    ``data`` is the unit's bytes if the caller has read them already (:func:`unit_bytes`).
    Problems (the record is skipped by the converter): ``empty_header``, ``empty_sequence``,
    ``non_nucleotide``, ``malformed_fastq``.
    """
    if data is None:
        data = unit_bytes(unit)
    if unit.fmt == "fastq":
        yield from _parse_fastq(unit, data)
        return
    n = len(data)
    pos = 0
    line = unit.first_line
    while pos < n:
        nxt = data.find(b"\n>", pos)
        end = n if nxt < 0 else nxt + 1
        raw = data[pos:end]
        nl = raw.find(b"\n")
        header = raw[1:] if nl < 0 else raw[1:nl]
        if header.endswith(b"\r"):
            header = header[:-1]
        body = b"" if nl < 0 else raw[nl + 1 :]
        yield _make(line, header, body, raw)
        line += raw.count(b"\n")
        pos = end


def _make(line: int, header: bytes, body: bytes, raw: bytes) -> ParsedRecord:
    seq = body.translate(_SEQ_TABLE, _SEQ_DELETE)
    if not header.strip():
        return ParsedRecord(line, header, b"", raw, 0, "empty_header")
    if not seq:
        return ParsedRecord(line, header, b"", raw, 0, "empty_sequence")
    if b"!" in seq:
        return ParsedRecord(line, header, b"", raw, 0, "non_nucleotide")
    iupac = seq.count(b"?")
    if iupac:
        seq = seq.replace(b"?", b"N")
    return ParsedRecord(line, header, seq, raw, iupac, None)


def _parse_fastq(unit: Unit, data: bytes) -> Iterator[ParsedRecord]:
    n = len(data)
    pos = 0
    line = unit.first_line
    while pos < n:
        # Skip blank lines between records.
        if data[pos : pos + 1] in (b"\n", b"\r"):
            nl = data.find(b"\n", pos)
            pos = n if nl < 0 else nl + 1
            line += 1
            continue
        ends = []
        p = pos
        for _ in range(4):
            nl = data.find(b"\n", p)
            p = n if nl < 0 else nl + 1
            ends.append(p)
        raw = data[pos : ends[-1]]
        lines = raw.split(b"\n")
        lines = [x[:-1] if x.endswith(b"\r") else x for x in lines]
        if len(lines) < 4 or not lines[0].startswith(b"@") or not lines[2].startswith(b"+"):
            yield ParsedRecord(line, lines[0][1:] if lines else b"", b"", raw, 0, "malformed_fastq")
        elif len(lines[3]) != len(lines[1]):
            yield ParsedRecord(line, lines[0][1:], b"", raw, 0, "malformed_fastq")
        else:
            yield _make(line, lines[0][1:], lines[1], raw)
        line += raw.count(b"\n")
        pos = ends[-1]
