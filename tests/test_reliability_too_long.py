"""Records longer than --max-record-bytes are quarantined as too_long while they stream in:
counted in the report's reconciliation, never held whole, and memory stays bounded by bytes
(a 256 MiB record, a gzip bomb, a 240 MB header), measured as a real subprocess's peak RSS against
the same converter's peak on a two-record input: a converter that held any of these records whole
would exceed that baseline by more than the allowed margin."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import DATA, REPO, convert_cli

MAPPING = DATA / "mapping.tsv"
LIMIT = 1024


def _records(fastq: bool) -> tuple[list[bytes], set[int]]:
    """Short records with long ones (many lines, one huge line, a huge header) at both ends,
    adjacent, and around unit boundaries; returns (records, indices of the long ones)."""
    rng = np.random.default_rng(3)
    recs: list[bytes] = []
    long_idx: set[int] = set()
    kinds = ["long_lines", "short", "short", "long_line", "long_header", "short", "long_lines", "long_line"]
    kinds += ["short"] * 9 + ["long_header"] + ["short"] * 5 + ["long_line", "long_lines"]
    for i, kind in enumerate(kinds):
        n = {"short": 40, "long_lines": 6000, "long_line": 3000, "long_header": 30}[kind]
        seq = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, n)].tobytes()
        cid = 7 if i % 2 else 42
        header = b"lbl|%d||%d|r%d/1" % (cid, n, i) + (b" " + b"d" * 5000 if kind == "long_header" else b"")
        if fastq:
            recs.append(b"@" + header + b"\n" + seq + b"\n+\n" + b"I" * n + b"\n")
        else:
            body = b"\n".join(seq[k:k + 60] for k in range(0, n, 60)) if kind == "long_lines" else seq
            recs.append(b">" + header + b"\n" + body + b"\n")
        if kind != "short":
            long_idx.add(i)
    return recs, long_idx


def _rows(out: Path) -> tuple[np.ndarray, np.ndarray]:
    shards = sorted(out.glob("shard-*.h5"))
    ids = np.concatenate([h5py.File(p, "r")["input_ids"][:] for p in shards])
    labels = np.concatenate([h5py.File(p, "r")["labels"][:] for p in shards])
    return ids, labels


# Each format and compression once, each with --jobs 1 and 2 somewhere (output is the same for any N).
@pytest.mark.parametrize("fastq, gz, jobs", [(False, False, "1"), (True, False, "2"), (False, True, "2"), (True, True, "1")])
def test_too_long_records_are_quarantined_and_counted(tmp_path: Path, fastq: bool, gz: bool, jobs: str) -> None:
    _check_too_long(tmp_path, fastq, gz, ("--jobs", jobs))


@pytest.mark.parametrize("fastq", [False, True])
def test_too_long_with_a_custom_header_regex(tmp_path: Path, fastq: bool) -> None:
    _check_too_long(tmp_path, fastq, False, ("--header-regex", r"^lbl\|(?P<class_id>\d+)\|.*$"))


def _check_too_long(tmp_path: Path, fastq: bool, gz: bool, extra: tuple[str, ...]) -> None:
    recs, long_idx = _records(fastq)
    text = b"".join(recs)
    ext = ".fq" if fastq else ".fa"
    inp = tmp_path / ("in" + ext + (".gz" if gz else ""))
    inp.write_bytes(gzip.compress(text, mtime=0) if gz else text)
    ref = tmp_path / ("ref" + ext)
    ref.write_bytes(b"".join(r for i, r in enumerate(recs) if i not in long_idx))
    flags = ("--tokenizer", "char", "--max-length", "64", "--reads-per-shard", "4", "--no-progress",
             "--max-record-bytes", str(LIMIT), *extra)
    res = convert_cli(inp, "--mapping", MAPPING, "--out", tmp_path / "out", *flags)
    assert res.returncode == 0, res.stderr
    assert convert_cli(ref, "--mapping", MAPPING, "--out", tmp_path / "ref_out", *flags).returncode == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["skipped_by_reason"]["too_long"] == len(long_idx)
    assert report["records_in"] == len(recs) == report["written"] + report["skipped"]
    # The good records are stored exactly as without the long ones.
    got, want = _rows(tmp_path / "out"), _rows(tmp_path / "ref_out")
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    # quarantine.tsv: the right record numbers and the line each starts on; quarantine.fa: their headers.
    line_of = np.cumsum([1] + [r.count(b"\n") for r in recs])
    rows = [r.split("\t") for r in (tmp_path / "out" / "quarantine.tsv").read_text().splitlines()[1:]]
    assert [(int(r[2]), int(r[1]), r[3]) for r in rows] == [(i, int(line_of[i]), "too_long") for i in sorted(long_idx)]
    q = (tmp_path / "out" / "quarantine.fa").read_bytes().splitlines(keepends=True)
    assert q == [recs[i][: LIMIT + 1].split(b"\n", 1)[0] + b"\n" for i in sorted(long_idx)]  # header, cut at the limit


def test_too_long_error_mode_names_the_record(tmp_path: Path) -> None:
    recs, long_idx = _records(False)
    inp = tmp_path / "in.fa"
    inp.write_bytes(b"".join(recs))
    res = convert_cli(inp, "--mapping", MAPPING, "--out", tmp_path / "out", "--tokenizer", "char",
                      "--max-record-bytes", str(LIMIT), "--on-bad-record", "error", "--no-progress")
    assert res.returncode == 2 and "too long" in res.stderr and f"{inp}, line 1" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


# ----------------------------------------------------------------------------- memory

_PEAK = (
    "import resource, subprocess, sys\n"
    "cap = lambda: resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))  # never take the machine\n"
    "res = subprocess.run(sys.argv[1:], capture_output=True, text=True, preexec_fn=cap)\n"
    "sys.stderr.write(res.stderr)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(res.returncode)\n"
)


def _convert_peak_mb(tmp_path: Path, inp: Path, *flags: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run the converter under a fresh parent; return the result and the converter's peak RSS (MB)."""
    res = subprocess.run(
        [sys.executable, "-c", _PEAK, sys.executable, "-m", "convert", str(inp), "--mapping", str(MAPPING),
         "--out", str(tmp_path / "out"), "--no-progress", *flags],
        cwd=REPO, capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    return res, int(res.stdout.strip().splitlines()[-1]) / 1024


def _write_gzip(path: Path, pieces) -> None:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    with open(path, "wb") as f:
        for piece in pieces:
            f.write(comp.compress(piece))
        f.write(comp.flush())


def _one_long(header: bytes, seq_chunks) -> list[bytes]:
    return [b">lbl|7|11||" + header + b"/1\n", *seq_chunks, b"\n>lbl|42||8|ok/1\nACGTACGT\n"]


# Above the converter's own peak, what its buffers may add; each record below is larger than this,
# so a converter holding one whole fails (checked by making _cut_long_records a no-op).
MARGIN_MB = 200

CASES = {
    # one 256 MiB record, plain, 63-column lines (written 256 KiB at a time)
    "record_256mib": (False, lambda: _one_long(b"big", ((b"ACG" * 21 + b"\n") * 4096 for _ in range(1 << 10)))),
    # a ~1 MB gzip that expands to one 1 GiB record on a single line
    "gzip_bomb": (True, lambda: _one_long(b"bomb", (b"A" * (1 << 24) for _ in range(64)))),
    # a 240 MB header line
    "header_240mb": (False, lambda: _one_long(b"h " + b"x" * 240_000_000, [b"ACGT"])),
}


@pytest.fixture(scope="module")
def baseline_peak_mb(tmp_path_factory: pytest.TempPathFactory) -> float:
    """The converter's peak RSS (MB) on a two-record input, run as the cases are."""
    tmp = tmp_path_factory.mktemp("baseline")
    inp = tmp / "in.fa"
    inp.write_bytes(b"".join(_one_long(b"small", [b"ACGT" * 10])))
    res, peak_mb = _convert_peak_mb(tmp, inp, "--tokenizer", "metagene-1")
    assert res.returncode == 0, res.stderr[-3000:]
    return peak_mb


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_memory_bounded_by_bytes(tmp_path: Path, case: str, baseline_peak_mb: float) -> None:
    gz, make = CASES[case]
    inp = tmp_path / ("in.fa.gz" if gz else "in.fa")
    if gz:
        _write_gzip(inp, make())
    else:
        with open(inp, "wb") as f:
            for piece in make():
                f.write(piece)
    res, peak_mb = _convert_peak_mb(tmp_path, inp, "--tokenizer", "metagene-1")
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["skipped_by_reason"]["too_long"] == 1 and report["written"] == 1 and report["records_in"] == 2
    print(f"{case}: input {inp.stat().st_size:,} bytes, converter peak RSS {peak_mb:.0f} MB "
          f"(baseline {baseline_peak_mb:.0f} MB)")
    assert peak_mb < baseline_peak_mb + MARGIN_MB, (peak_mb, baseline_peak_mb)
