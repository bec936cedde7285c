"""Unit boundaries of a plain FASTA or FASTQ file, found by one compiled pass outside the GIL.

The converter's scan (:func:`convert.fastx.iter_units`) runs in the main thread while units
are converted on worker threads. For plain (not gzip) input it only has to find where each
unit of ``records`` records starts and ends, how many line ends come before it (for line
numbers) and its longest record (records over ``--max-record-bytes`` are cut by the
streaming scan instead). :func:`fasta_units` does that over blocks read into one reused
buffer: no copy of the input into Python objects, no per-record Python, and no GIL held while
it runs, so the workers never wait on the scan.

The pass looks at 64 bytes at a time (a loop LLVM vectorizes: any ``>``? how many LFs?) and
only walks byte by byte through the chunks that can hold a record start. The record rules
are :mod:`convert.fastx`'s: FASTA, ``>`` at the start of a line; FASTQ, every fourth line,
blank lines between records skipped. ``tests/test_boundaries.py`` checks the units against
the streaming scan on fuzzed input.
"""

from __future__ import annotations

import numpy as np

__all__ = ["AVAILABLE", "UNIT_FIELDS", "new_state", "fasta_units", "fastq_units", "last_unit"]

try:
    import numba

    AVAILABLE = True
except Exception:  # iter_units then keeps the streaming scan for every input
    numba = None
    AVAILABLE = False

# Scan state (int64), carried from one block to the next. _LEAD: the first byte of the open
# unit; _LINE: FASTQ, the line-in-record index (0..3) of the next line.
_PREV_LF, _LFS, _FIRST, _COUNT, _REC_START, _LONGEST, _LF_FIRST, _LEAD, _LINE = range(9)
_STATE_SIZE = 9
_W = 64  # bytes looked at per vector step
UNIT_FIELDS = ("first", "cut", "records", "lfs_before", "longest", "lead")  # a row of ``out``


def new_state() -> np.ndarray:
    """The state at the start of a file (the first byte is at a line start; no unit open)."""
    st = np.zeros(_STATE_SIZE, dtype=np.int64)
    st[_PREV_LF] = 1
    st[_FIRST] = -1
    return st


def last_unit(st: np.ndarray, end: int) -> tuple[int, ...] | None:
    """The unit still open when the file ends at offset ``end``, as a row of
    :func:`fasta_units` (:data:`UNIT_FIELDS`); None if the file had no record start at all."""
    first = int(st[_FIRST])
    if first < 0:
        return None
    longest = max(int(st[_LONGEST]), end - int(st[_REC_START]))
    return first, end, int(st[_COUNT]), int(st[_LF_FIRST]), longest, int(st[_LEAD])


def _jit(fn):
    return numba.njit(cache=True, nogil=True)(fn) if numba is not None else fn


def _jit_inline(fn):
    return numba.njit(cache=True, nogil=True, inline="always")(fn) if numba is not None else fn


@_jit_inline
def _start(st, q, c, records, out, k):
    """A record starts at file offset ``q`` (its first byte ``c``): close the open unit in
    ``out[k]`` if it is full.

    Returns the rows of ``out`` used (``k`` or ``k + 1``).
    """
    if st[_FIRST] < 0:
        st[_FIRST] = q
        st[_COUNT] = 1
        st[_REC_START] = q
        st[_LONGEST] = 0
        st[_LF_FIRST] = st[_LFS]
        st[_LEAD] = c
        return k
    st[_LONGEST] = max(st[_LONGEST], q - st[_REC_START])
    st[_REC_START] = q
    if st[_COUNT] < records:
        st[_COUNT] += 1
        return k
    out[k, 0] = st[_FIRST]
    out[k, 1] = q
    out[k, 2] = st[_COUNT]
    out[k, 3] = st[_LF_FIRST]
    out[k, 4] = st[_LONGEST]
    out[k, 5] = st[_LEAD]
    st[_FIRST] = q
    st[_COUNT] = 1
    st[_LONGEST] = 0
    st[_LF_FIRST] = st[_LFS]
    st[_LEAD] = c
    return k + 1


@_jit_inline
def _bytes(buf, p, e, base, records, st, out, k):
    """Byte by byte over ``buf[p:e]``; stops early (returning its position) once ``out`` is full."""
    prev = st[_PREV_LF]
    lfs = st[_LFS]  # a local in the loop: the state array is written back at record starts and at the end
    while p < e:
        c = buf[p]
        if c == 62 and prev != 0:
            st[_LFS] = lfs
            k = _start(st, base + p, c, records, out, k)
        prev = 1 if c == 10 else 0
        lfs += prev
        p += 1
        if k == out.shape[0]:
            break
    st[_PREV_LF] = prev
    st[_LFS] = lfs
    return p, k


@_jit_inline
def _count_lf(chunk, e):
    c = 0
    for i in range(e):
        c += chunk[i] == 10
    return c


@_jit
def fasta_units(buf, p, n, base, records, st, out):
    """Scan ``buf[p:n]`` (the file's bytes from offset ``base``), continuing state ``st``.

    Every unit closed (its ``records + 1``-th record start seen) becomes a row of ``out``
    (:data:`UNIT_FIELDS`: first and cut are file offsets, then its records, the line ends
    before it, its longest record and its first byte). Returns
    ``(position reached, rows)``: when ``out`` fills up the scan stops there; call again
    from that position with the same block.
    """
    k = 0
    while p < n and k < out.shape[0]:
        if p + _W > n:  # the block's last bytes
            p, k = _bytes(buf, p, n, base, records, st, out, k)
            continue
        chunk = buf[p : p + _W]  # indexed by range(): no negative-index fix-up, so it vectorizes
        gt = 0
        lf = 0
        for i in range(_W):
            c = chunk[i]
            gt |= c == 62
            lf += c == 10
        if gt != 0:  # a '>' here: is it at a line start?
            lfs = st[_LFS]
            for i in range(_W):
                if chunk[i] == 62 and (st[_PREV_LF] != 0 if i == 0 else chunk[i - 1] == 10):
                    if st[_FIRST] < 0 or st[_COUNT] >= records:
                        # A unit opens here: the line ends before it give its first line.
                        st[_LFS] = lfs + _count_lf(chunk, i)
                    k = _start(st, base + p + i, 62, records, out, k)
                    if k == out.shape[0]:  # full: resume right after this '>'
                        st[_LFS] = lfs + _count_lf(chunk, i + 1)
                        st[_PREV_LF] = 0
                        return p + i + 1, k
            st[_LFS] = lfs
        st[_LFS] += lf
        st[_PREV_LF] = chunk[_W - 1] == 10
        p += _W
    return p, k


@_jit_inline
def _fastq_bytes(buf, p, e, base, records, st, out, k):
    """:func:`_bytes` for FASTQ: a line start is a record start on line 0 of a record unless
    it is blank (its first byte LF or CR), which is skipped between records."""
    prev = st[_PREV_LF]
    lfs = st[_LFS]
    line = st[_LINE]
    while p < e:
        c = buf[p]
        if prev != 0:  # a line starts here
            if line != 0:
                line = (line + 1) & 3
            elif c != 10 and c != 13:
                line = 1
                st[_LFS] = lfs
                k = _start(st, base + p, c, records, out, k)
        prev = 1 if c == 10 else 0
        lfs += prev
        p += 1
        if k == out.shape[0]:
            break
    st[_PREV_LF] = prev
    st[_LFS] = lfs
    st[_LINE] = line
    return p, k


@_jit_inline
def _fastq_line(st, q, c, lfs, records, out, k):
    """A FASTQ line starts at file offset ``q`` with byte ``c`` (``lfs`` line ends before it)."""
    line = st[_LINE]
    if line != 0:
        st[_LINE] = (line + 1) & 3
    elif c != 10 and c != 13:  # not a blank line between records: a record starts
        st[_LINE] = 1
        if st[_FIRST] < 0 or st[_COUNT] >= records:
            st[_LFS] = lfs  # a unit opens here: the line ends before it give its first line
        k = _start(st, q, c, records, out, k)
    return k


@_jit
def fastq_units(buf, p, n, base, records, st, out):
    """:func:`fasta_units` for FASTQ (records of four lines; a line starts after each LF)."""
    k = 0
    while p < n and k < out.shape[0]:
        if p + _W > n:  # the block's last bytes
            p, k = _fastq_bytes(buf, p, n, base, records, st, out, k)
            continue
        chunk = buf[p : p + _W]
        lf = 0
        for i in range(_W):
            lf += chunk[i] == 10
        if lf != 0 or st[_PREV_LF] != 0:
            lfs = st[_LFS]
            if st[_PREV_LF] != 0:  # the previous chunk ended a line
                k = _fastq_line(st, base + p, chunk[0], lfs, records, out, k)
                if k == out.shape[0]:
                    st[_LFS] = lfs
                    st[_PREV_LF] = 0
                    return p + 1, k
            seen = 0
            for i in range(_W - 1):
                if chunk[i] == 10:
                    seen += 1
                    k = _fastq_line(st, base + p + i + 1, chunk[i + 1], lfs + seen, records, out, k)
                    if k == out.shape[0]:  # full: resume right after this line's first byte
                        st[_LFS] = lfs + seen + (chunk[i + 1] == 10)
                        st[_PREV_LF] = chunk[i + 1] == 10
                        return p + i + 2, k
            st[_LFS] = lfs
        st[_LFS] += lf
        st[_PREV_LF] = chunk[_W - 1] == 10
        p += _W
    return p, k
