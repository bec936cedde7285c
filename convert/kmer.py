"""DNABERT's overlapping k-mer ids in one compiled pass, for :class:`convert.tokenizers.KmerTokenizer`.

The numpy path of ``KmerTokenizer.encode`` builds k temporaries the size of the whole unit
(int64 codes, masks, gathers); this kernel reads each base once, keeps a rolling 2k-bit code
and writes each id straight into its row, without the GIL. Same ids, same truncation: a read
longer than the row keeps ``[CLS]`` and its first k-mers, with ``[SEP]`` in the last column.
Imported on first use, so that ``import convert`` does not pay for numba.
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except Exception:  # the tokenizer keeps its numpy path
    numba = None

__all__ = ["AVAILABLE", "kmer_rows"]

AVAILABLE = numba is not None


def _rows(seqs, offsets, base_code, table, k, unk, cls, sep, pad, out, counts):  # pragma: no cover - compiled
    n, width = out.shape
    mask = (1 << (2 * k)) - 1
    for i in range(n):
        a = offsets[i]
        ln = offsets[i + 1] - a
        nk = max(ln - k + 1, 0)
        counts[i] = nk + 2
        row = out[i]
        row[:] = pad
        row[0] = cls
        code = 0
        last_bad = -1
        for p in range(ln):
            b = base_code[seqs[a + p]]
            if b > 3:
                last_bad = p
            code = ((code << 2) | (b & 3)) & mask
            col = p - k + 2  # k-mer starting at p - k + 1, after [CLS]
            if col >= width:
                break
            if col >= 1:
                row[col] = unk if last_bad >= col - 1 else table[code]
        if nk + 2 > width:
            row[width - 1] = sep
        else:
            row[nk + 1] = sep


_compiled = numba.njit(cache=True, nogil=True)(_rows) if numba is not None else None


def kmer_rows(seqs: bytes | np.ndarray, offsets: np.ndarray, *, base_code: np.ndarray, table: np.ndarray, k: int,
              unk: int, cls: int, sep: int, pad: int, max_length: int) -> tuple[np.ndarray, np.ndarray] | None:
    """``(ids (n, max_length) int16, full lengths (n,) int32)`` of reads ``seqs[offsets[i]:offsets[i+1]]``,
    or None without numba (the caller then takes its numpy path)."""
    if _compiled is None:
        return None
    n = offsets.shape[0] - 1
    out = np.empty((n, max_length), dtype=np.int16)
    counts = np.empty(n, dtype=np.int32)
    _compiled(np.frombuffer(seqs, dtype=np.uint8), np.ascontiguousarray(offsets, dtype=np.int64),
              base_code, table, k, unk, cls, sep, pad, out, counts)
    return out, counts
