"""The numba record parser (default header format) equals the per-record regex path.

Fuzzed FASTA/FASTQ units (headers near the format's edges, IUPAC and junk bases, CRLF, blank
lines, malformed FASTQ, missing final newline): the written columns and bases, every skipped
record (position, line, reason, verbatim bytes, header) and every count are identical.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _strategies import fasta_records
from convert.fastx import Unit
from convert.labels import DEFAULT_HEADER_REGEX, LabelMap
from convert.unit import rows_default, _rows_regex, Settings

LM = LabelMap(class_ids=[42, 7, 0], names=["a", "b", "c"], tax_ids=[-1, 11, 5], sha256="x")
SETTINGS = Settings(tokenizer="char", max_length=8, header_regex=DEFAULT_HEADER_REGEX, label_map=LM,
                     layout="mmap", compression="gzip", on_bad_record="skip", staging="/nonexistent")

_num = st.one_of(st.sampled_from(["", "0", "7", "42", "007", "11", "127", "128", "2147483647", "2147483648",
                                  "4611686018427387904", "4611686018427387905", "99999999999999999999",
                                  "0000000000000000000000042"]), st.integers(0, 10**6).map(str))
_name = st.text("abXY_09.|-é/", min_size=0, max_size=8)
_mate = st.sampled_from(["", "/1", "/2", "/0", "/127", "/128", "/", "/x", "/1/2", "//1"])
_good = st.builds(lambda c, t, r, n, m: f"lbl|{c}|{t}|{r}|{n}{m}", _num, _num, _num, _name, _mate)
_header = st.one_of(
    _good, _good, _good,
    _good.map(lambda h: h + " desc"), _good.map(lambda h: " \t" + h), _good.map(lambda h: h + "\x0b"),
    st.text("lb|0123456789 \t\x0b\x0c/", max_size=20), st.just(""), st.just("  "),
)
_seq = st.one_of(
    st.text("ACGTNacgtnRYSWKMBDHVUu", max_size=80), st.text("ACGT!1*.- \t\x00é\x0b", max_size=20),
    # Long plain runs (the parse's 32-base vector step) with the odd byte somewhere inside.
    st.builds(lambda a, x, b: a + x + b, st.text("ACGTNacgtn", min_size=20, max_size=120),
              st.sampled_from(["", "", "R", "u", "\r", " ", "!", ">"]), st.text("ACGTN", max_size=90)),
)
_eol = st.sampled_from(["\n", "\r\n"])


def fasta() -> st.SearchStrategy[bytes]:
    return fasta_records(_header, _seq, _eol, records=st.integers(1, 10), widths=[0, 0, 7], blanks=["", "\n", "\r\n"])


@st.composite
def fastq(draw) -> bytes:
    out = []
    for _ in range(draw(st.integers(1, 8))):
        seq = draw(_seq)
        qual = "I" * max(0, len(seq) + draw(st.sampled_from([0, 0, 0, 1, -1])))
        eol = draw(_eol)
        plus = draw(st.sampled_from(["+", "+", "", "+x", "\r"]))
        at = draw(st.sampled_from(["@", "@", "@", "x"]))
        out.append(at + draw(_header) + eol + seq + eol + plus + eol + qual + eol + draw(st.sampled_from(["", "", "\n", "\r\n"])))
    text = "".join(out)
    cut = draw(st.sampled_from([0, 0, 1, 3, 7]))
    if cut:
        text = text[: max(1, len(text) - cut)]
    return text.encode("latin-1")


def _same_rows(fast, slow) -> None:
    for f in dataclasses.fields(fast):
        a, b = getattr(fast, f.name), getattr(slow, f.name)
        if f.name == "seqs":  # bytes-like either way: the numba path hands over its uint8 array
            assert bytes(a) == bytes(b)
        elif isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b), f.name
        else:
            assert a == b, f.name


def _compare(data: bytes, kind: str) -> None:
    unit = Unit("in", 0, 0, 3, 0, data, kind)
    fast, slow = rows_default(unit, data, SETTINGS), _rows_regex(unit, data, SETTINGS)
    _same_rows(fast, slow)
    # The scan's record count is only a capacity hint: exact, too small (the parser retries
    # with a bound from the bytes) or too large, the rows are the same.
    for hint in (fast.records_in, 0, max(fast.records_in - 1, 0), fast.records_in + 5):
        _same_rows(rows_default(dataclasses.replace(unit, records=hint), data, SETTINGS), slow)


@pytest.mark.slow  # 300 examples
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=fasta())
def test_fasta_equals_regex_path(data: bytes) -> None:
    _compare(data, "fasta")


@pytest.mark.slow  # 300 examples
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=fastq())
def test_fastq_equals_regex_path(data: bytes) -> None:
    _compare(data, "fastq")


@pytest.mark.parametrize(
    "header, problem",
    [
        ("lbl|7|11|150|frag1/1", None),
        ("lbl|7||150|frag1/2", None),
        ("lbl|42|||f", None),
        ("lbl|8|11|150|f/1", "unknown_class"),
        ("lbl|7|2147483648|150|f/1", "header_mismatch"),
        ("lbl|7|11|150|f/128", "header_mismatch"),
        ("lbl|7|11|150|/1", "header_mismatch"),
        ("lbl|7|11|150|f/", "header_mismatch"),
        ("lbl||11|150|f", "header_mismatch"),
        ("lbl|7|11|4611686018427387905|f", "header_mismatch"),
        ("LBL|7|11|150|f", "header_mismatch"),
        ("  ", "empty_header"),
        # The id ends at whitespace; numbers at their limits; digits glued to other text.
        ("lbl|7|11|150|f/1 a description", None),
        ("\tlbl|7|11|150|f/1\tx", None),
        ("lbl|007|2147483647|4611686018427387904|f/127", None),
        ("lbl|7|11|150|f/01", None),
        ("lbl|7|11|150|f/1x", "header_mismatch"),
        ("lbl|7|11|150|f/1/2", "header_mismatch"),
        ("lbl|7 |11|150|f", "header_mismatch"),
        ("lbl|7|11|150 |f", "header_mismatch"),
        ("lbl|7|11|150| f", "header_mismatch"),
        ("lbl|2147483648|11|150|f", "header_mismatch"),
        ("lbl|7|11|99999999999999999999999|f", "header_mismatch"),
        ("lbl|7a|11|150|f", "header_mismatch"),
        ("lbl|", "header_mismatch"),
        ("lbl|7|11|150|", "header_mismatch"),
    ],
)
def test_header_table(header: str, problem: str | None) -> None:
    data = f">{header}\nACGT\n".encode()
    _compare(data, "fasta")
    rows = rows_default(Unit("in", 0, 0, 1, 0, data, "fasta"), data, SETTINGS)
    assert [b[2] for b in rows.bad] == ([] if problem is None else [problem])


@pytest.mark.parametrize("class_id, problem", [(5, None), (3_000_000, None), (2_999_999, "unknown_class"),
                                               (6, "unknown_class"), (1 << 20, "unknown_class")])
def test_class_ids_beyond_the_lookup_table(class_id: int, problem: str | None) -> None:
    """Ids under 2**20 are looked up in a table, larger ones binary-searched: same answers."""
    lm = LabelMap(class_ids=[3_000_000, 5], names=["a", "b"], tax_ids=[-1, -1], sha256="x")
    s = dataclasses.replace(SETTINGS, label_map=lm)
    data = f">lbl|{class_id}|||r/1\nACGT\n".encode()
    rows = rows_default(Unit("in", 0, 0, 1, 0, data, "fasta"), data, s)
    assert [b[2] for b in rows.bad] == ([] if problem is None else [problem])
    assert rows.class_ids.tolist() == ([] if problem else [class_id])
