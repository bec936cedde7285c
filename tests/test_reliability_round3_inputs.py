"""Issue 21, item 7: inputs named for what they are (UTF-8 headers, NUL bytes, directories,
FIFOs and pipes, one file given twice, species names shared by several mapping rows)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import REPO, write_reads
import shards as fmt
from convert.cli import main

_SIX = ("--tokenizer", "dnabert-6mer", "--no-progress")


def _run(*args: str | os.PathLike[str]) -> tuple[int, str, str]:
    """``python -m convert ARGS`` in-process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in args])
    return rc, out.getvalue(), err.getvalue()


def _one_paragraph(err: str) -> None:
    assert "Traceback" not in err and err.startswith("error: ") and err.count("\n") == 1, err


@pytest.fixture(scope="module")
def reads(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """~180 KB of labeled reads (1,200 records, 4 classes) and their mapping."""
    return write_reads(tmp_path_factory.mktemp("in") / "r.fa", n_per_class=300)


@pytest.mark.parametrize("description", [" Bacillus phage \u03c629 \u2013 r\u00e9ad".encode(),  # UTF-8
                                         " Bacillus phage 29 r\u00e9ad".encode("latin-1")], ids=["utf8", "latin1"])
def test_header_descriptions_beyond_ascii_are_text(reads, tmp_path: Path, description: bytes) -> None:
    inp, mapping = reads
    text = inp.read_bytes()
    # A description after the record id on every header of the first 64 KiB (what the sniff reads).
    head, tail = text[: 1 << 16], text[1 << 16 :]
    fa = tmp_path / "described.fa"
    fa.write_bytes(head.replace(b"/1\n", b"/1" + description + b"\n") + tail)
    rc, out, err = _run(fa, "--mapping", mapping, "--out", tmp_path / "out", *_SIX)
    assert rc == 0, err
    report = json.loads((tmp_path / "out" / fmt.REPORT_NAME).read_text())
    assert report["records_in"] == report["written"] == 1200


@pytest.mark.parametrize("offset", [10, 120, 100_000, 100_050])  # a header or a sequence, near the start or 100 KB in
@pytest.mark.parametrize("regex", [None, r"^lbl\|(?P<class_id>\d+)\|(?P<tax_id>\d+)?\|(?P<readlen>\d+)?\|(?P<name>[^/\s]+)/?(?P<mate>\d+)?$"])
def test_a_nul_byte_quarantines_its_record_wherever_it_is(reads, tmp_path: Path, offset: int, regex: str | None) -> None:
    inp, mapping = reads
    text = inp.read_bytes()
    fa = tmp_path / "nul.fa"
    fa.write_bytes(text[:offset] + b"\x00" + text[offset + 1 :])
    line = text[:offset].count(b"\n") + 1
    record_line = text[:offset].rfind(b"\n>") + 2 if text[:offset].rfind(b"\n>") >= 0 else 1
    extra = ("--header-regex", regex) if regex else ()
    rc, out, err = _run(fa, "--mapping", mapping, "--out", tmp_path / "out", *_SIX, *extra)
    assert rc == 0, err
    report = json.loads((tmp_path / "out" / fmt.REPORT_NAME).read_text())
    assert (report["records_in"], report["written"], report["skipped"]) == (1200, 1199, 1)
    tsv = (tmp_path / "out" / "quarantine.tsv").read_text().splitlines()[1:]
    assert len(tsv) == 1
    q_line = int(tsv[0].split("\t")[1])
    assert q_line == text[:record_line].count(b"\n") + 1 and q_line in (line, line - 1)
    assert b"\x00" in (tmp_path / "out" / fmt.QUARANTINE_NAME).read_bytes()
    rc, stdout, _ = _run("verify", tmp_path / "out", "--source", fa, "--no-progress")  # pyfastx cannot see NULs
    assert rc == 0, stdout


def test_binary_is_still_refused(tmp_path: Path) -> None:
    fa = tmp_path / "r.fa"
    fa.write_bytes(b">" + bytes(range(256)) * 20)
    rc, _, err = _run(fa, "--out", tmp_path / "out", "--mapping", REPO / "tests" / "data" / "mapping.tsv")
    assert rc == 2 and "binary data" in err
    _one_paragraph(err)


def _special(kind: str, tmp_path: Path) -> Path:
    if kind == "directory":
        (tmp_path / "d").mkdir()
        return tmp_path / "d"
    os.mkfifo(tmp_path / "fifo")
    return tmp_path / "fifo"


@pytest.mark.parametrize(("kind", "says"), [("directory", "this is a directory"), ("fifo", "this is a pipe")])
def test_directory_and_fifo_are_named(reads, tmp_path: Path, kind: str, says: str) -> None:
    _, mapping = reads
    path = _special(kind, tmp_path)
    # A FIFO nobody writes to would block an open(): a watchdog fails the test instead of hanging it.
    timer = threading.Timer(20, lambda: os.open(path, os.O_WRONLY | os.O_NONBLOCK) if kind == "fifo" else None)
    timer.start()
    try:
        rc, _, err = _run(path, "--mapping", mapping, "--out", tmp_path / "out", *_SIX)
    finally:
        timer.cancel()
    assert rc == 2 and says in err and "no such file" not in err
    assert "write the stream to a file" in err.lower() or kind == "directory"
    _one_paragraph(err)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_stdin_pipe_is_named_in_a_real_process(reads, tmp_path: Path) -> None:
    _, mapping = reads
    proc = subprocess.run(
        [sys.executable, "-m", "convert", "/dev/stdin", "--mapping", str(mapping), "--out", str(tmp_path / "out")],
        input=">lbl|10||4|a/1\nACGT\n", capture_output=True, text=True, cwd=REPO, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 2, proc.stderr
    assert "this is a pipe" in proc.stderr and "pass the gzip file itself" in proc.stderr
    _one_paragraph(proc.stderr)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


@pytest.mark.parametrize("how", ["twice", "symlink", "hardlink"])
def test_the_same_input_twice_is_refused(reads, tmp_path: Path, how: str) -> None:
    inp, mapping = reads
    other = inp
    if how == "symlink":
        other = tmp_path / "link.fa"
        other.symlink_to(inp)
    elif how == "hardlink":
        other = tmp_path / "hard.fa"
        os.link(inp, other)
    rc, _, err = _run(inp, other, "--mapping", mapping, "--out", tmp_path / "out", *_SIX)
    assert rc == 2 and "are the same file" in err and str(inp) in err and str(other) in err
    _one_paragraph(err)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))  # no staging left behind


def test_shared_species_names_are_counted_per_label(reads, tmp_path: Path) -> None:
    inp, mapping = reads
    rows = mapping.read_text().splitlines()
    rows[1:3] = [r.rsplit("\t", 1)[0] + "\tsame species" for r in rows[1:3]]  # class ids 10 and 20
    dup = tmp_path / "mapping.tsv"
    dup.write_text("\n".join(rows) + "\n")
    rc, _, err = _run(inp, "--mapping", dup, "--out", tmp_path / "out", *_SIX)
    assert rc == 0, err
    per_class = json.loads((tmp_path / "out" / fmt.REPORT_NAME).read_text())["per_class"]
    assert sum(per_class.values()) == 1200 and len(per_class) == 4
    assert per_class["same species (class 10)"] == per_class["same species (class 20)"] == 300
    rc, out, _ = _run("stats", tmp_path / "out", "--json")
    stats = json.loads(out)["per_class"]
    assert rc == 0 and stats == per_class
