"""Hypothesis strategies shared by the parser and converter fuzz tests."""

from __future__ import annotations

from typing import Sequence

from hypothesis import strategies as st

__all__ = ["fasta_records"]


@st.composite
def fasta_records(draw: st.DrawFn, header: st.SearchStrategy[str], seq: st.SearchStrategy[str],
                  eol: st.SearchStrategy[str], *, records: st.SearchStrategy[int], widths: Sequence[int],
                  blanks: Sequence[str]) -> bytes:
    """FASTA bytes (latin-1) of drawn records: ``>`` header, line end, maybe a blank line (``blanks``),
    the sequence wrapped at a drawn width (0: one line); sometimes without the final line end."""
    out = []
    for _ in range(draw(records)):
        s = draw(seq)
        width = draw(st.sampled_from(widths))
        lines = [s[i : i + width] for i in range(0, len(s), width)] if width else [s]
        out.append(">" + draw(header) + draw(eol) + draw(st.sampled_from(blanks)) + "".join(x + draw(eol) for x in lines))
    text = "".join(out)
    if text and draw(st.booleans()):
        text = text.rstrip("\r\n")  # no trailing newline
    return text.encode("latin-1")
