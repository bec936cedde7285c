"""A unit's records split, checked and labeled in one numba pass (the default header format).

The converter's hot path: no Python object per record. :func:`parse_default` applies
exactly the rules of :func:`convert.fastx.parse_unit` (record boundaries, line numbers,
``empty_header``, ``empty_sequence``, ``non_nucleotide``, ``malformed_fastq``, upper-casing
and IUPAC -> N) and of the default ``--header-regex``
(:data:`convert.labels.DEFAULT_HEADER_REGEX`, ``lbl|<class_id>|<tax_id>|<readlen>|<name>[/<mate>]``
with the same range limits as ``convert.unit.header_fields``) to the record id (the header up
to its first whitespace), and looks the class id up among the mapping's. A custom
``--header-regex`` keeps the per-record regex path in the pipeline.
``tests/test_fastparse.py`` checks it against that path on fuzzed input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fastx import IUPAC, Unit
from .labels import DENSE_CLASS_IDS

__all__ = ["PROBLEMS", "ParsedUnit", "parse_default", "AVAILABLE", "strand_hashes", "strand_hash_one",
           "ANY_SKIP_REASONS", "parse_any"]

try:
    import numba

    AVAILABLE = True
except Exception:  # the pipeline then keeps the regex path
    numba = None
    AVAILABLE = False

# Problem codes of ParsedUnit.problem (0 = written).
PROBLEMS = (None, "header_mismatch", "unknown_class", "empty_header", "empty_sequence", "non_nucleotide", "malformed_fastq")
_INT32_MAX = 2**31 - 1


@dataclass
class ParsedUnit:
    """Per-record arrays of one unit (all records, in order) plus the written reads' bases."""

    line: np.ndarray  # int64 line number of each record
    raw: np.ndarray  # (n, 2) int64 byte range of each record verbatim
    header: np.ndarray  # (n, 2) int64 byte range of the header (no '>'/'@', no trailing CR)
    problem: np.ndarray  # int8 index into PROBLEMS
    class_id: np.ndarray  # int64 (valid where problem is 0)
    tax_id: np.ndarray  # int64, -1 when absent
    mate: np.ndarray  # int64, 0 when absent
    readlen: np.ndarray  # int64 from the header, -1 when absent
    name: np.ndarray  # (n, 2) int64 byte range of the name group
    name_hash: np.ndarray  # uint64 FNV-1a 64 of the name group (the fragment hash; 0 where not written)
    iupac: np.ndarray  # int64 IUPAC bases replaced by N
    seqs: np.ndarray  # uint8: the written reads' bases, concatenated (a view, not a copy)
    offsets: np.ndarray  # (written + 1,) int64 into seqs


def _seq_code() -> np.ndarray:
    # 0 drop (CR LF TAB space), 1..5 ACGTN, 6 IUPAC -> N, 7 anything else (non-nucleotide)
    code = np.full(256, 7, dtype=np.uint8)
    for c in b"\r\n\t ":
        code[c] = 0
    for i, c in enumerate(b"ACGTN"):
        code[c] = code[c + 32] = i + 1
    for c in IUPAC:
        code[c] = code[c + 32] = 6
    return code


_SEQ_CODE = _seq_code()
_SPACE = np.zeros(256, dtype=np.bool_)
for _c in b" \t\n\r\x0b\x0c":  # bytes.split()/strip() whitespace, the regex's \s
    _SPACE[_c] = True


def parse_default(unit: Unit, data: bytes, known_class_ids: np.ndarray) -> ParsedUnit:
    """Parse a unit's bytes with the default header format.

    Args:
        unit: the unit (its format and first line).
        data: its bytes (:func:`convert.fastx.unit_bytes`).
        known_class_ids: the mapping's class ids, sorted (int64); others are ``unknown_class``.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    if unit.records >= 0:  # the scan's count: no pass over the bytes (checked by _parse)
        parsed = _parse_with_cap(unit, buf, known_class_ids, unit.records + 1)
        if parsed is not None:
            return parsed
    # Unknown, or the bytes hold more records than the scan saw: an upper bound from the bytes.
    cap = (data.count(b">") if unit.fmt == "fasta" else data.count(b"\n")) + 1
    parsed = _parse_with_cap(unit, buf, known_class_ids, cap)
    assert parsed is not None  # every record starts with '>' (FASTA) or at a line (FASTQ)
    return parsed


def _parse_with_cap(unit: Unit, buf: np.ndarray, known_class_ids: np.ndarray, cap: int) -> ParsedUnit | None:
    """:func:`parse_default` with room for ``cap`` records; None if the unit holds more."""
    ints = np.empty((cap, 7), dtype=np.int64)  # line, raw0, raw1, hdr0, hdr1, name0, name1
    fields = np.empty((cap, 5), dtype=np.int64)  # class, tax, mate, readlen, iupac
    problem = np.zeros(cap, dtype=np.int8)
    seq = np.empty(buf.size, dtype=np.uint8)
    offsets = np.zeros(cap + 1, dtype=np.int64)
    known = np.ascontiguousarray(known_class_ids, dtype=np.int64)
    name_hash = np.zeros(cap, dtype=np.uint64)
    n, written = _parse(buf, unit.fmt == "fastq", unit.first_line, _SEQ_CODE, _SPACE, known, _dense(known),
                        ints, fields, problem, name_hash, seq, offsets)
    if n < 0:
        return None
    return ParsedUnit(
        line=ints[:n, 0], raw=ints[:n, 1:3], header=ints[:n, 3:5], problem=problem[:n],
        class_id=fields[:n, 0], tax_id=fields[:n, 1], mate=fields[:n, 2], readlen=fields[:n, 3],
        name=ints[:n, 5:7], name_hash=name_hash[:n], iupac=fields[:n, 4],
        seqs=seq[: offsets[written]], offsets=offsets[: written + 1],
    )


def _dense(known: np.ndarray) -> np.ndarray:
    """``table[cid]`` is True for the known class ids below :data:`convert.labels.DENSE_CLASS_IDS` (the usual
    case: ids 0..C); larger ids are binary-searched."""
    small = known[(known >= 0) & (known < DENSE_CLASS_IDS)]
    table = np.zeros(int(small.max()) + 1 if small.size else 0, dtype=np.bool_)
    table[small] = True
    return table


def _jit(fn):
    return numba.njit(cache=True, nogil=True)(fn) if numba is not None else fn


def _jit_inline(fn):
    return numba.njit(cache=True, nogil=True, inline="always")(fn) if numba is not None else fn


@_jit_inline
def _find_nl(buf, p, n):
    while p < n and buf[p] != 10:
        p += 1
    return p  # n if none


@_jit_inline
def _digits(buf, a, b, top):
    """Value of the ASCII digits buf[a:b] (caller checked they are digits), -2 if > top."""
    v = 0
    lim = top // 10  # a constant once inlined: no division per digit
    for i in range(a, b):
        if v > lim:  # v * 10 > top already (and v * 10 + 9 cannot overflow int64: top <= 2**62)
            return -2
        v = v * 10 + (buf[i] - 48)
        if v > top:
            return -2
    return v


@_jit_inline
def _header_fields(buf, a, b, space, out):
    """Default-regex fields of the record id in buf[a:b] into out; False if it does not match.

    out: class, tax, mate, readlen, name0, name1, then six scratch slots (the digit runs).
    The record id ends at the first whitespace; every rule below stops there by itself (a
    whitespace byte is no digit, no ``|`` and ends the name), so no pass looks for its end.
    """
    while a < b and space[buf[a]]:  # leading whitespace
        a += 1
    if b - a < 4 or buf[a] != 108 or buf[a + 1] != 98 or buf[a + 2] != 108 or buf[a + 3] != 124:  # "lbl|"
        return False
    p = a + 4  # out[6:12]: class, tax, readlen digit runs
    for k in range(3):
        s = p
        while p < b and 48 <= buf[p] <= 57:
            p += 1
        if p >= b or buf[p] != 124 or (k == 0 and p == s):  # '|' after each; class_id non-empty
            return False
        out[6 + 2 * k] = s
        out[7 + 2 * k] = p
        p += 1
    # name: [^/\s]+ then optional /digits+ to the end of the id
    s = p
    while p < b and buf[p] != 47 and not space[buf[p]]:
        p += 1
    if p == s:
        return False
    name_end = p
    mate = 0
    if p < b and buf[p] == 47:  # '/'
        p += 1
        q = p
        while q < b and 48 <= buf[q] <= 57:
            q += 1
        if q == p or (q < b and not space[buf[q]]):
            return False
        mate = _digits(buf, p, q, 127)
        if mate < 0:
            return False
    cls = _digits(buf, out[6], out[7], 2147483647)
    if cls < 0:
        return False
    tax = -1
    if out[9] > out[8]:
        tax = _digits(buf, out[8], out[9], 2147483647)
        if tax < 0:
            return False
    readlen = -1
    if out[11] > out[10]:
        readlen = _digits(buf, out[10], out[11], 1 << 62)
        if readlen < 0:
            return False
    out[0] = cls
    out[1] = tax
    out[2] = mate
    out[3] = readlen
    out[4] = s
    out[5] = name_end
    return True


@_jit
def _copy_bases(buf, a, b, code, seq, k):
    """Bases of buf[a:b] into seq[k:] (upper case, IUPAC -> N, line ends dropped).

    Returns (k after the last base, IUPAC bases replaced, whether a non-nucleotide byte was seen).
    """
    iupac = 0
    bad = False
    for p in range(a, b):
        c = code[buf[p]]
        if c == 0:
            continue
        if c == 7:
            bad = True  # counted as a base: such a record is non_nucleotide, not empty_sequence
        elif c == 6:
            iupac += 1
            seq[k] = 78
        else:
            seq[k] = buf[p] & 0xDF  # upper case
        k += 1
    return k, iupac, bad


_RUN = 32  # bases checked and copied per vector step


@_jit_inline
def _fasta_body(buf, p, n, code, seq, k):
    """One pass over a FASTA record from its header's LF at ``p`` (or ``n``) to the next "\\n>".

    Copies the bases like :func:`_copy_bases` while finding the record's end and counting its
    line ends (the sequence is read once, not three times). Returns (end, k, iupac, bad, LFs).

    Runs of ``_RUN`` plain bases (ACGTN, either case) go through a branch-free loop that LLVM
    vectorizes; a run holding anything else (the line end, IUPAC, CR, ...) is redone byte by
    byte up to the end of its line. ``seq`` has room for the speculative copy: ``k <= p``
    (every base written consumed a byte, and the header at least one more).
    """
    iupac = 0
    bad = False
    lfs = 0
    while p < n:
        if p + _RUN <= n:
            src = buf[p : p + _RUN]  # indexed by range(): no negative-index fix-up, so it vectorizes
            dst = seq[k : k + _RUN]
            other = 0
            for i in range(_RUN):
                u = src[i] & 0xDF  # upper case
                dst[i] = u
                other |= (u != 65) & (u != 67) & (u != 71) & (u != 84) & (u != 78)
            if other == 0:
                p += _RUN
                k += _RUN
                continue
        while p < n:  # byte by byte to the end of this line
            b = buf[p]
            c = code[b]
            p += 1
            if c == 0:
                if b == 10:
                    lfs += 1
                    if p < n and buf[p] == 62:  # '>' at a line start: the next record
                        return p, k, iupac, bad, lfs
                    break
            elif c <= 5:
                seq[k] = b & 0xDF  # upper case
                k += 1
            elif c == 6:
                iupac += 1
                seq[k] = 78
                k += 1
            else:
                bad = True  # counted as a base: such a record is non_nucleotide, not empty_sequence
                k += 1
    return n, k, iupac, bad, lfs


@_jit_inline
def _fnv1a64(buf, a, b):
    """FNV-1a 64 of buf[a:b] (as :func:`convert.provenance.fnv1a64_ranges`)."""
    h = np.uint64(0xCBF29CE484222325)
    for p in range(a, b):
        h = (h ^ np.uint64(buf[p])) * np.uint64(0x100000001B3)
    return h


@_jit_inline
def _lower_bound(a, v):
    """First index of the sorted ``a`` whose value is >= ``v`` (``np.searchsorted``, left side)."""
    lo = 0
    hi = a.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < v:
            lo = mid + 1
        else:
            hi = mid
    return lo


@_jit_inline
def _is_known(known, dense, cid):
    """Whether ``cid`` is one of the sorted ``known`` ids (``dense[cid]`` when it is in range:
    a binary search per record mispredicts its branches)."""
    if cid < dense.shape[0]:
        return dense[cid]
    j = _lower_bound(known, cid)
    return j < known.shape[0] and known[j] == cid


@_jit_inline
def _record(buf, i, h0, h1, start, k, iupac, bad, space, known, dense, ints, fields, problem, name_hash, offsets,
            written, f):
    """Check one record whose bases are seq[start:k]; returns written (+1 if it is written).

    The checks run in the order of the record path: empty header, empty sequence,
    non-nucleotide, header format (a NUL byte anywhere in the header fails it), class id.
    """
    ints[i, 3] = h0
    ints[i, 4] = h1
    blank = True
    nul = False  # a NUL byte (a zeroed disk block) makes the header unusable wherever it is
    for p in range(h0, h1):
        if buf[p] == 0:
            nul = True
        elif not space[buf[p]]:
            blank = False
    if blank:
        problem[i] = 3
        return written
    if k == start:
        problem[i] = 4
        return written
    if bad:
        problem[i] = 5
        return written
    if nul or not _header_fields(buf, h0, h1, space, f):
        problem[i] = 1
        return written
    if not _is_known(known, dense, f[0]):
        problem[i] = 2
        return written
    fields[i, 0] = f[0]
    fields[i, 1] = f[1]
    fields[i, 2] = f[2]
    fields[i, 3] = f[3]
    fields[i, 4] = iupac
    ints[i, 5] = f[4]
    ints[i, 6] = f[5]
    name_hash[i] = _fnv1a64(buf, f[4], f[5])
    offsets[written + 1] = k
    return written + 1


@_jit
def _count_nl(buf, a, b):
    c = 0
    for p in range(a, b):
        if buf[p] == 10:
            c += 1
    return c


@_jit_inline
def _fastq_record(buf, pos, n, e):
    """Bounds of the 4-line FASTQ record at ``pos``: (end, h0, h1, s0, s1, ok); ``e`` is scratch.

    ``ok`` is False for a malformed record (fewer than 4 lines, no ``@``/``+``, or quality and
    sequence of different lengths); s0, s1 are then 0. Shared by the converter's parse and
    the any-header parse so both split records alike.
    """
    p = pos
    for k in range(4):
        p = min(_find_nl(buf, p, n) + 1, n)
        e[k] = p
    end = e[3]
    # lines of raw = buf[pos:end] split at LF (a final LF gives an empty last line)
    nlines = _count_nl(buf, pos, end) + 1
    l0 = _find_nl(buf, pos, end)
    h1 = l0 - 1 if l0 > pos and buf[l0 - 1] == 13 else l0
    h0 = min(pos + 1, h1) if h1 > pos else h1
    s0 = 0
    s1 = 0
    ok = nlines >= 4 and buf[pos] == 64 and e[1] < end and buf[e[1]] == 43
    if ok:
        s0 = e[0]
        s1 = e[1] - 1  # the LF
        if s1 > s0 and buf[s1 - 1] == 13:
            s1 -= 1
        q0 = e[2]
        q1 = _find_nl(buf, q0, end)
        if q1 > q0 and buf[q1 - 1] == 13:
            q1 -= 1
        if q1 - q0 != s1 - s0:
            ok = False
            s0 = 0
            s1 = 0
    return end, h0, h1, s0, s1, ok


@_jit
def _parse(buf, fastq, first_line, code, space, known, dense, ints, fields, problem, name_hash, seq, offsets):
    n = buf.shape[0]
    pos = 0
    line = first_line
    i = 0
    written = 0
    e = np.empty(4, dtype=np.int64)
    f = np.empty(12, dtype=np.int64)  # scratch of _record
    cap = problem.shape[0]
    while pos < n:
        if fastq and (buf[pos] == 10 or buf[pos] == 13):  # blank line between records
            pos = _find_nl(buf, pos, n) + 1
            line += 1
            continue
        if i >= cap:  # more records than the caller's capacity: it retries with a bound from the bytes
            return -1, 0
        problem[i] = 0
        if not fastq:
            nl = _find_nl(buf, pos, n)
            h1 = nl
            if h1 > pos + 1 and buf[h1 - 1] == 13:
                h1 -= 1
            start = offsets[written]
            end, k, iupac, bad, lfs = _fasta_body(buf, nl, n, code, seq, start)
            written = _record(buf, i, pos + 1, max(h1, pos + 1), start, k, iupac, bad, space, known, dense, ints, fields,
                              problem, name_hash, offsets, written, f)
        else:
            end, h0, h1, s0, s1, ok = _fastq_record(buf, pos, n, e)
            if not ok:
                ints[i, 3] = h0
                ints[i, 4] = h1
                problem[i] = 6
            else:
                start = offsets[written]
                k, iupac, bad = _copy_bases(buf, s0, s1, code, seq, start)
                written = _record(buf, i, h0, h1, start, k, iupac, bad, space, known, dense, ints, fields, problem,
                                  name_hash, offsets, written, f)
            lfs = _count_nl(buf, pos, end)
        ints[i, 0] = line
        ints[i, 1] = pos
        ints[i, 2] = end
        line += lfs
        pos = end
        i += 1
    return i, written


# ------------------------------------------------------------------ strand-independent read hashes

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3


def _complement() -> np.ndarray:
    table = np.arange(256, dtype=np.uint8)
    for a, b in (b"AT", b"CG"):
        table[a], table[b] = b, a
    return table


_COMPLEMENT = _complement()


def strand_hashes(seqs: bytes | np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(n,) uint64: per read ``seqs[offsets[i]:offsets[i+1]]`` (normalised bases, ACGTN), the
    smaller of the FNV-1a 64 of its bases and of its reverse complement's.

    A read and its reverse complement (the same DNA read off the other strand) get the same
    value, so ``python -m convert leakage`` finds them (the ``strand_hashes`` column).
    Compiled (numba) when available, else a vectorized numpy pass per base position.
    """
    buf = seqs if isinstance(seqs, np.ndarray) else np.frombuffer(seqs, dtype=np.uint8)
    offsets = np.asarray(offsets, dtype=np.int64)
    if numba is None:
        return _strand_hashes_numpy(buf, offsets)
    out = np.empty(max(offsets.size - 1, 0), dtype=np.uint64)
    _strand_hashes(buf, offsets, _COMPLEMENT, out)
    return out


def strand_hash_one(seq: bytes) -> int:
    """:func:`strand_hashes` of one read (reference implementation, for checks)."""
    from .provenance import fnv1a64_one

    return min(fnv1a64_one(seq), fnv1a64_one(seq[::-1].translate(bytes(_COMPLEMENT))))


def _strand_hashes_numpy(buf: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    from .provenance import fnv1a64_ranges

    lens = np.diff(offsets)
    # The reverse complement of the whole buffer holds every read's reverse complement,
    # in reverse order: read i ends where the reversed buffer's copy of it starts.
    rc = _COMPLEMENT[buf[offsets[0] : offsets[-1]]][::-1] if offsets.size else buf[:0]
    fwd = fnv1a64_ranges(buf, offsets[:-1], lens)
    rev = fnv1a64_ranges(rc, offsets[-1] - offsets[1:], lens) if lens.size else fwd
    return np.minimum(fwd, rev)


@_jit
def _strand_hashes(buf, offsets, comp, out):
    prime = np.uint64(_FNV_PRIME)
    for i in range(out.shape[0]):
        a = offsets[i]
        b = offsets[i + 1]
        f = np.uint64(_FNV_OFFSET)
        r = np.uint64(_FNV_OFFSET)
        for k in range(b - a):
            f = (f ^ np.uint64(buf[a + k])) * prime
            r = (r ^ np.uint64(comp[buf[b - 1 - k]])) * prime
        out[i] = f if f < r else r


# ----------------------------------------------------------------------------- any header
# Reads to classify (``python -m train predict``) have any header: records are split exactly as
# the converter splits them, and every record with a sequence is kept, labelled or not.
ANY_SKIP_REASONS = ("empty_header", "empty_sequence", "non_nucleotide", "malformed_fastq", "too_long")
# Problem codes of _parse_any (0: kept); ANY_SKIP_REASONS[code - 1] names them.
_EMPTY_HEADER, _EMPTY_SEQ, _NON_NUC, _MALFORMED, _TOO_LONG = 1, 2, 3, 4, 5


@_jit
def _read_id(buf, h0, h1, space, f, out, w):
    """Read id, fragment name, mate and class id of the header buf[h0:h1] into row ``w`` of ``out``.

    The ``lbl|class_id|tax_id|readlen|name/mate`` header format gives its name/mate part and class id;
    any other header gives its first word, mates from a ``/1`` ``/2`` suffix or an Illumina
    ``1:N:...`` comment. out columns: id0, id1, name0, name1, mate, class_id.
    """
    a = h0
    while a < h1 and space[buf[a]]:
        a += 1
    e = a
    while e < h1 and not space[buf[e]]:
        e += 1
    if _header_fields(buf, a, h1, space, f):
        out[w, 0] = f[4]
        out[w, 1] = e
        out[w, 2] = f[4]
        out[w, 3] = f[5]
        out[w, 4] = f[2]
        out[w, 5] = f[0]
        return
    out[w, 0] = a
    out[w, 1] = e
    out[w, 2] = a
    out[w, 3] = e
    out[w, 4] = 0
    out[w, 5] = -1
    s = e - 1
    while s > a and 48 <= buf[s] <= 57:
        s -= 1
    if s > a and s < e - 1 and e - 1 - s <= 2 and buf[s] == 47:  # name/1, name/2
        out[w, 3] = s
        out[w, 4] = _digits2(buf, s + 1, e)
        return
    c = e
    while c < h1 and space[buf[c]]:
        c += 1
    if c + 1 < h1 and 49 <= buf[c] <= 50 and buf[c + 1] == 58:  # "name 1:N:0:..." (Illumina)
        out[w, 4] = buf[c] - 48


@_jit
def _digits2(buf, a, b):
    v = 0
    for p in range(a, b):
        v = v * 10 + (buf[p] - 48)
    return v


@_jit
def _parse_any(buf, fastq, limit, code, space, rows, name_hash, record, problems, seq, offsets):
    """Split a unit's bytes into records (as the converter's parse does) and keep every record with
    a sequence, whatever its header. Returns (records, written)."""
    n = buf.shape[0]
    pos = 0
    i = 0
    w = 0
    e = np.empty(4, dtype=np.int64)
    f = np.empty(12, dtype=np.int64)
    while pos < n:
        if fastq and (buf[pos] == 10 or buf[pos] == 13):  # blank line between records
            pos = _find_nl(buf, pos, n) + 1
            continue
        bad = False
        prob = 0
        start = offsets[w]
        k = start
        if not fastq:
            nl = _find_nl(buf, pos, n)
            h1 = nl
            if h1 > pos + 1 and buf[h1 - 1] == 13:
                h1 -= 1
            h0 = pos + 1
            h1 = max(h1, h0)
            end, k, iupac, bad, lfs = _fasta_body(buf, nl, n, code, seq, start)
        else:
            end, h0, h1, s0, s1, ok = _fastq_record(buf, pos, n, e)
            if ok:
                k, iupac, bad = _copy_bases(buf, s0, s1, code, seq, start)
            if not ok:
                prob = _MALFORMED
        if prob == 0:
            blank = True
            for p in range(h0, h1):
                if not space[buf[p]]:
                    blank = False
                    break
            if end - pos > limit:
                prob = _TOO_LONG
            elif blank:
                prob = _EMPTY_HEADER
            elif k == start:
                prob = _EMPTY_SEQ
            elif bad:
                prob = _NON_NUC
        if prob == 0:
            _read_id(buf, h0, h1, space, f, rows, w)
            name_hash[w] = _fnv1a64(buf, rows[w, 2], rows[w, 3])
            record[w] = i
            offsets[w + 1] = k
            w += 1
        else:
            problems[prob - 1] += 1
        pos = end
        i += 1
    return i, w


def parse_any(data: bytes, fastq: bool, limit: int) -> tuple[np.ndarray, ...]:
    """Split one unit's bytes into records whatever their headers; keep those with a sequence.

    Records longer than ``limit`` bytes are skipped as ``too_long``. Returns ``rows`` (w, 6)
    int64 (read id start/end, fragment name start/end, mate or 0, class id or -1, as byte
    offsets into ``data``), ``name_hash`` (w,) uint64 of the fragment name, ``record`` (w,)
    record number in the unit, ``problems`` counts per :data:`ANY_SKIP_REASONS`, and the kept
    reads' normalised bases ``seq`` with their ``offsets`` (w + 1,).
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    cap = (data.count(b"\n") if fastq else data.count(b">")) + 1
    rows = np.empty((cap, 6), dtype=np.int64)
    name_hash = np.zeros(cap, dtype=np.uint64)
    record = np.empty(cap, dtype=np.int64)
    problems = np.zeros(len(ANY_SKIP_REASONS), dtype=np.int64)
    seq = np.empty(buf.size + 64, dtype=np.uint8)  # +64: the vectorised copy writes ahead of the bases
    offsets = np.zeros(cap + 1, dtype=np.int64)
    _, w = _parse_any(buf, fastq, limit, _SEQ_CODE, _SPACE, rows, name_hash, record, problems, seq, offsets)
    return rows[:w], name_hash[:w], record[:w], problems, seq, offsets[: w + 1]
