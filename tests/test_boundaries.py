"""The compiled unit scan of plain FASTA and FASTQ (convert.boundaries) gives exactly the streaming scan's units."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from convert import boundaries, fastx
from convert.fastx import iter_units

pytestmark = pytest.mark.skipif(not boundaries.AVAILABLE, reason="numba is not installed")


def _streamed(path: Path, per_unit: int, limit: int | None) -> list:
    return list(fastx._stream_units(path, "fasta", 3, per_unit, None, limit))


def _fuzz_fasta(rng: random.Random, records: int) -> bytes:
    """Records with the shapes a real file throws at a scan: multi-line, CRLF, blank lines,
    '>' inside a line, long lines, a missing final newline, leading blank lines."""
    out = [rng.choice([b"", b"\n", b"\r\n\n"])]
    for i in range(records):
        head = rng.choice([b">r%d" % i, b">lbl|1|2|3|x%d/1" % i, b">", b">>%d" % i])
        lines = [bytes(rng.choice(b"ACGTNacgt>") for _ in range(rng.choice([0, 1, 5, 63, 64, 65, 200])))
                 for _ in range(rng.choice([0, 1, 1, 2, 3]))]
        lines = [ln.lstrip(b">") for ln in lines]  # a '>' at a line start would be a record
        eol = rng.choice([b"\n", b"\r\n"])
        out.append(head + eol + b"".join(ln + eol + rng.choice([b"", b"", eol]) for ln in lines))
    text = b"".join(out)
    return text.rstrip(b"\n") if rng.random() < 0.3 else text


def _fuzz_fastq(rng: random.Random, records: int) -> bytes:
    """Four-line records with blank lines between them (LF, CRLF, a lone CR), records with a
    line too few or too many (the scan counts lines, the parser judges), '@' and '+' opening
    sequence and quality lines, garbage before the first record."""
    out = [rng.choice([b"", b"\n", b"\r\n", b"junk\n"])]
    for i in range(records):
        eol = rng.choice([b"\n", b"\r\n"])
        seq = bytes(rng.choice(b"ACGTN@+") for _ in range(rng.choice([0, 1, 63, 64, 65, 150])))
        qual = bytes(rng.choice(b"I@+#") for _ in range(len(seq)))
        lines = [b"@r%d" % i, seq, b"+", qual]
        if rng.random() < 0.1:
            lines.pop(rng.randrange(4))  # malformed: the following records shift by a line
        out.append(b"".join(line + eol for line in lines) + rng.choice([b"", b"", b"\n", b"\r\n", b"\r\n\n"]))
    text = b"".join(out)
    return text.rstrip(b"\r\n") if rng.random() < 0.3 else text


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("per_unit", [1, 2, 7, 1000])
@pytest.mark.parametrize("block", [64, 100, 4096])
@pytest.mark.parametrize("fmt", ["fasta", "fastq"])
def test_units_equal_the_streaming_scan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int,
                                        per_unit: int, block: int, fmt: str) -> None:
    rng = random.Random(seed * 1000 + per_unit)
    path = tmp_path / f"in.{fmt}"
    fuzz = _fuzz_fasta if fmt == "fasta" else _fuzz_fastq
    data = fuzz(rng, rng.choice([1, 3, 40, 300]))
    path.write_bytes(data if fmt == "fasta" else b"@first\nACGT\n+\nIIII\n" + data)  # sniffed as FASTQ
    monkeypatch.setattr(fastx, "BLOCK", block)  # block edges inside records, chunks and CRLFs
    fast = list(iter_units(path, 3, per_unit, max_record_bytes=None))
    assert fast == list(fastx._stream_units(path, fmt, 3, per_unit, None, None))
    assert all(u.data is None for u in fast)  # byte ranges: the workers read them


@pytest.mark.parametrize("fmt, record, lines", [("fasta", b">r%d\nACGT\n", 2), ("fastq", b"@r%d\nACGT\n+\nIIII\n", 4),
                                                ("fastq", b"@r%d\nACGTACGTACGTACGTACGTACGTACGTACGTACGTACGTACGTACGTACGTACGTACGTAC\n+\n"
                                                          b"IIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIIII\n\n", 5)])
def test_many_units_in_one_block(tmp_path: Path, fmt: str, record: bytes, lines: int) -> None:
    """More units close in one block than the kernel's output holds: it stops and resumes."""
    path = tmp_path / f"in.{fmt}"
    path.write_bytes(b"".join(record % i for i in range(2000)))
    fast = list(iter_units(path, 3, 1))
    assert fast == list(fastx._stream_units(path, fmt, 3, 1, None, None))
    assert [u.first_line for u in fast[:3]] == [1, 1 + lines, 1 + 2 * lines] and len(fast) == 2000


@pytest.mark.parametrize("where", [0, 5, 39])
def test_a_record_over_the_limit_hands_over_to_the_streaming_scan(tmp_path: Path, where: int) -> None:
    """From the unit holding a too-long record on, the streaming scan (which cuts it) takes over."""
    recs = [b">r%d\nACGTACGT\n" % i for i in range(40)]
    recs[where] = b">long\n" + b"ACGT" * 300 + b"\n"
    path = tmp_path / "in.fa"
    path.write_bytes(b"".join(recs))
    fast = list(iter_units(path, 3, 4, max_record_bytes=512))
    assert fast == _streamed(path, 4, 512)
    assert any(u.data is not None for u in fast)  # the cut unit carries its bytes


def test_progress_counts_every_byte(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "in.fa"
    path.write_bytes(b"".join(b">r%d\nACGTACGT\n" % i for i in range(500)))
    monkeypatch.setattr(fastx, "BLOCK", 1000)
    seen: list[int] = []
    list(iter_units(path, 0, 7, progress=seen.append))
    assert sum(seen) == path.stat().st_size


def test_no_record_start_is_the_streaming_scan_error(tmp_path: Path) -> None:
    path = tmp_path / "in.fa"
    path.write_bytes(b"  >not at a line start\nACGT\n")
    with pytest.raises(fastx.InputError, match="no record header"):
        list(iter_units(path, 0, 10))


def test_state_starts_at_a_line_start() -> None:
    st = boundaries.new_state()
    out = np.empty((4, len(boundaries.UNIT_FIELDS)), dtype=np.int64)
    buf = np.frombuffer(b">a\nAC\n>b\nAC\n", dtype=np.uint8)
    p, k = boundaries.fasta_units(buf, 0, buf.size, 0, 1, st, out)
    assert (p, k) == (buf.size, 1)
    assert out[0].tolist() == [0, 6, 1, 0, 6, ord(">")]  # first, cut, records, LFs before, longest, lead
    assert boundaries.last_unit(st, buf.size) == (6, 12, 1, 2, 6, ord(">"))  # the unit the end of the file closes
    assert boundaries.last_unit(boundaries.new_state(), 0) is None  # no record start seen


@pytest.mark.slow  # a converter process without numba
def test_without_numba_the_conversion_is_the_same(tmp_path: Path, reads) -> None:
    """numba that cannot be imported: the streaming scan, the regex parse and Hugging Face
    take over, and the shards hold the same rows."""
    import os
    import subprocess
    import sys

    import h5py

    from conftest import REPO

    inp, mapping = reads
    (tmp_path / "block").mkdir()
    (tmp_path / "block" / "numba.py").write_text("raise ImportError('numba is broken here')\n")
    outs = {}
    for name, path in (("numba", str(REPO)), ("none", f"{tmp_path / 'block'}{os.pathsep}{REPO}")):
        outs[name] = tmp_path / name
        res = subprocess.run([sys.executable, "-m", "convert", str(inp), "--mapping", str(mapping), "--out",
                              str(outs[name]), "--tokenizer", "metagene-1", "--reads-per-shard", "300",
                              "--jobs", "2", "--no-progress"],
                             env={**os.environ, "PYTHONPATH": path}, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
    assert "numba cannot be imported" in res.stderr
    shards = sorted(p.name for p in outs["numba"].glob("shard-*.h5"))
    assert shards == sorted(p.name for p in outs["none"].glob("shard-*.h5")) and len(shards) == 3
    for name in shards:
        with h5py.File(outs["numba"] / name) as a, h5py.File(outs["none"] / name) as b:
            for key in ("input_ids", "labels", "lengths", "record_numbers", "fragment_hashes"):
                np.testing.assert_array_equal(a[key][()], b[key][()])
