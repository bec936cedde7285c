"""Parser edge cases: one row per fixture in tests/data."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import DATA, UNREADABLE_INPUTS
from convert.fastx import InputError, iter_units, parse_unit, sniff, unit_bytes

A = "ACGTACGTTGCAACGGTACCGTAGCTAGCTAGGCTTAACG"


def records(name: str, per_unit: int = 1000) -> list:
    return [r for u in iter_units(DATA / name, 0, per_unit) for r in parse_unit(u)]


@pytest.mark.parametrize(
    "name, seqs, lines, problems",
    [
        ("multiline.fa", [A, A], [1, 4], [None, None]),
        ("crlf.fa", [A, A], [1, 4], [None, None]),
        ("lowercase.fa", [A, A], [1, 3], [None, None]),
        ("iupac.fa", ["ACGT" + "N" * 11 + "ACGTNN" + "N" + A[:18], A], [1, 3], [None, None]),
        ("description.fa", [A, A], [1, 3], [None, None]),
        ("no_trailing_newline.fa", [A, A], [1, 3], [None, None]),
        ("blank_lines.fa", [A, A], [3, 6], [None, None]),
        ("reads.fq", [A, A], [1, 5], [None, None]),
        ("reads.fa.gz", [A, A], [1, 3], [None, None]),
        (
            "bad_records.fa",
            [A, A, A, b"", b"", b"", A],
            [1, 3, 5, 7, 9, 10, 12],
            [None, None, None, "empty_header", "empty_sequence", "non_nucleotide", None],
        ),
        ("bad_records.fq", [A, b"", A], [1, 5, 9], [None, "malformed_fastq", None]),
    ],
)
def test_parse_table(name: str, seqs: list, lines: list[int], problems: list) -> None:
    recs = records(name)
    assert [r.problem for r in recs] == problems
    assert [r.line for r in recs] == lines
    want = [s.encode() if isinstance(s, str) else s for s in seqs]
    assert [r.seq for r in recs] == want


def test_iupac_counted() -> None:
    recs = records("iupac.fa")
    # R Y K M S W B D H V (10) + r y (2) = 12 IUPAC codes; N/n are not counted.
    assert recs[0].iupac == 12
    assert recs[1].iupac == 0


def test_raw_is_verbatim() -> None:
    text = (DATA / "crlf.fa").read_bytes()
    assert b"".join(r.raw for r in records("crlf.fa")) == text


@pytest.mark.parametrize("per_unit", [1, 2, 3, 5, 1000])
def test_units_cut_at_record_boundaries(tmp_path: Path, per_unit: int) -> None:
    text = "".join(f">lbl|7|11|40|r{i}/1\n{A[:20]}\n{A[20:]}\n" for i in range(11)).encode()
    p = tmp_path / "r.fa"
    p.write_bytes(text)
    units = list(iter_units(p, 0, per_unit))
    assert b"".join(unit_bytes(u) for u in units) == text
    assert all(unit_bytes(u).startswith(b">") for u in units)
    assert [len(list(parse_unit(u))) for u in units][:-1] == [per_unit] * (len(units) - 1)
    recs = [r for u in units for r in parse_unit(u)]
    assert [r.line for r in recs] == [1 + 3 * i for i in range(11)]
    assert [u.first_record for u in units] == [per_unit * k for k in range(len(units))]


def test_units_across_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import convert.fastx as fx

    monkeypatch.setattr(fx, "BLOCK", 7)  # records straddle many read blocks
    text = "".join(f">lbl|7|11|40|r{i}/1\n{A}\n" for i in range(9)).encode()
    p = tmp_path / "r.fa"
    p.write_bytes(text)
    units = list(iter_units(p, 0, 2))
    assert b"".join(unit_bytes(u) for u in units) == text
    assert len(units) == 5


def test_fastq_units(tmp_path: Path) -> None:
    text = "".join(f"@r{i}\n{A}\n+\n{'I' * 40}\n" for i in range(7)).encode()
    p = tmp_path / "r.fq"
    p.write_bytes(text)
    units = list(iter_units(p, 0, 3))
    assert [len(list(parse_unit(u))) for u in units] == [3, 3, 1]
    assert b"".join(unit_bytes(u) for u in units) == text


@pytest.mark.parametrize("name, message", UNREADABLE_INPUTS + [("does_not_exist.fa", "no such file")])
def test_sniff_rejects(name: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        sniff(DATA / name)
    assert name in str(info.value)
    assert message in str(info.value)


def test_truncated_gzip_names_offset() -> None:
    with pytest.raises(InputError) as info:
        list(iter_units(DATA / "truncated.fa.gz", 0, 1000))
    assert "truncated.fa.gz" in str(info.value)
    assert "gzip" in str(info.value)


@pytest.mark.parametrize("gz", [False, True])
def test_plain_units_are_byte_ranges(tmp_path: Path, gz: bool) -> None:
    """A plain file's units carry only (offset, length): workers read their own range;
    gzip units carry their decompressed bytes (no random access into a deflate stream)."""
    import gzip
    import pickle

    text = b"\n\n" + "".join(f">lbl|7|11|40|r{i}/1\n{A}\n" for i in range(50)).encode()
    p = tmp_path / ("r.fa.gz" if gz else "r.fa")
    p.write_bytes(gzip.compress(text) if gz else text)
    units = list(iter_units(p, 0, 7))
    assert b"".join(unit_bytes(u) for u in units) == text[2:]
    for u in units:
        assert text[u.offset : u.offset + u.length] == unit_bytes(u)
        assert u.nbytes == u.length
        if gz:
            assert u.data is not None
        else:
            assert u.data is None
            assert len(pickle.dumps(u)) < 400  # nothing of the input crosses the pipe


def test_changed_input_is_an_error(tmp_path: Path) -> None:
    p = tmp_path / "r.fa"
    p.write_bytes("".join(f">lbl|7|11|40|r{i}/1\n{A}\n" for i in range(10)).encode())
    units = list(iter_units(p, 0, 3))
    p.write_bytes(b">x\nACGT\n")
    with pytest.raises(InputError, match="changed while it was being converted") as info:
        unit_bytes(units[1])
    assert "r.fa" in str(info.value) and "byte offset" in str(info.value)



_HDR = b"lbl|99999999999999999999|||/1"


@pytest.mark.parametrize("tail", [b"\x1f", b"junk\n", b"\n\x1f\n"])
def test_fastq_unit_starting_with_garbage_is_not_a_changed_input(tmp_path: Path, tail: bytes) -> None:
    """A unit that begins with a malformed record's stray byte reads back like a whole-file unit
    (found by the fuzz test: the byte-range check expected every unit to start with '@')."""
    path = tmp_path / "in.fq"
    path.write_bytes(b"@" + _HDR + b"\n\n+\n\n@" + _HDR + b" some description\nAAAAAA\n+\nIIIIII\n" + tail)
    one = [(r.line, r.raw, r.problem) for u in iter_units(path, 0, 1) for r in parse_unit(u)]
    whole = [(r.line, r.raw, r.problem) for u in iter_units(path, 0, 10**6) for r in parse_unit(u)]
    assert one == whole and one[-1][2] == "malformed_fastq"
