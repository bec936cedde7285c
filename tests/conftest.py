"""Shared fixtures and helpers: paths, a small labeled read generator from real genomes, the CLIs
run in-process (``convert_cli``, ``train_cli``) or as a real process (``run_convert``, ``run_train``)."""

from __future__ import annotations

import contextlib
import gc
import gzip
import io
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SHARED = Path(os.environ.get("READSHARD_SHARED", REPO.parent / "shared"))


def genome_files() -> list[Path]:
    """Genomes shipped in the repo (gzip), else the shared ones."""
    shipped = sorted((REPO / "convert" / "assets" / "genomes").glob("*.fasta.gz"))
    return shipped or sorted((SHARED / "data" / "genomes").glob("*.fasta"))


def _read_genome(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return "".join(line.strip() for line in f if not line.startswith(">")).upper()


_COMP = str.maketrans("ACGTN", "TGCAN")


def write_reads(
    path: Path,
    *,
    n_per_class: int = 200,
    classes: int = 4,
    seed: int = 0,
    fastq: bool = False,
    gz: bool = False,
    line_width: int = 0,
) -> tuple[Path, Path]:
    """Write labeled paired reads sampled from real genomes in the seed header format.

    Returns:
        (reads path, mapping TSV path). Class ids are non-contiguous (10, 20, ...).
    """
    rng = np.random.default_rng(seed)
    genomes = [_read_genome(p) for p in genome_files()[:classes]]
    lines: list[str] = []
    for c, genome in enumerate(genomes):
        cid = 10 * (c + 1)
        tax = "" if c % 2 else str(1000 + c)
        for i in range(n_per_class // 2):
            frag = int(rng.integers(200, 400))
            start = int(rng.integers(0, len(genome) - frag))
            f = genome[start : start + frag]
            if rng.random() < 0.5:
                f = f.translate(_COMP)[::-1]
            for mate, seq in ((1, f[: int(rng.integers(100, 151))]), (2, f[::-1].translate(_COMP)[: int(rng.integers(100, 151))])):
                header = f"lbl|{cid}|{tax}|{len(seq)}|g{c}_{i}/{mate}"
                if fastq:
                    lines.append(f"@{header}\n{seq}\n+\n{'I' * len(seq)}\n")
                elif line_width:
                    body = "\n".join(seq[k : k + line_width] for k in range(0, len(seq), line_width))
                    lines.append(f">{header}\n{body}\n")
                else:
                    lines.append(f">{header}\n{seq}\n")
    # Interleave classes so every shard holds several (a fixed, seeded order).
    order = rng.permutation(len(lines) // 2)
    text = "".join(lines[2 * k] + lines[2 * k + 1] for k in order).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        path.write_bytes(gzip.compress(text, mtime=0))
    else:
        path.write_bytes(text)
    mapping = path.parent / "mapping.tsv"
    rows = ["class_id\ttax_id\tspecies"] + [
        f"{10 * (c + 1)}\t{'' if c % 2 else 1000 + c}\t{genome_files()[c].name.split('__')[0]}" for c in range(len(genomes))
    ]
    mapping.write_text("\n".join(rows) + "\n")
    return path, mapping


def wait_for_shards(staging: Path, n: int, proc: subprocess.Popen | None = None, timeout: float = 120) -> int:
    """Wait until ``staging`` holds ``n`` published shards, ``proc`` exits or ``timeout`` s pass; return the count.

    For tests that interrupt a running conversion once it has made some progress.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        if len(list(Path(staging).glob("shard-*.h5"))) >= n:
            break
        time.sleep(0.01)
    return len(list(Path(staging).glob("shard-*.h5")))


def start_convert(inp: Path, mapping: Path, out: Path, *extra: str) -> subprocess.Popen:
    """Start ``python -m convert`` (500 reads per shard) in its own session, for tests that kill it."""
    return subprocess.Popen(
        [sys.executable, "-m", "convert", str(inp), "--mapping", str(mapping), "--out", str(out),
         "--reads-per-shard", "500", "--no-progress", *extra],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )


def shard_hashes(out: Path) -> list[tuple[str, str]]:
    """(file, sha256) of each shard a published dataset's manifest lists."""
    import json

    return [(e["file"], e["sha256"]) for e in json.loads((out / "manifest.json").read_text())["shards"]]


def run_convert(*args: str | os.PathLike[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m convert ARGS`` in a subprocess, capturing output."""
    return subprocess.run(
        [sys.executable, "-m", "convert", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def run_train(*args: str | os.PathLike[str], cwd: Path = REPO, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python -m train ARGS`` in a subprocess (from ``cwd``), capturing output."""
    return subprocess.run(
        [sys.executable, "-m", "train", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO)},
    )


@dataclass
class Ran:
    """What an in-process CLI call left: the exit code and captured streams (as ``CompletedProcess``)."""

    returncode: int
    stdout: str
    stderr: str


def in_process(main: Callable[[Sequence[str]], int], args: Sequence[str | os.PathLike[str]], cwd: Path | None) -> Ran:
    """``main(args)`` with stdout/stderr captured; argparse's ``SystemExit`` becomes the exit code."""
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in args])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    finally:
        os.chdir(old)
        gc.unfreeze()  # the converter freezes what it imported; the test process must still collect
    return Ran(int(code), out.getvalue(), err.getvalue())


def convert_cli(*args: str | os.PathLike[str], cwd: Path | None = None) -> Ran:
    """``python -m convert ARGS`` in this process (``convert.cli.main``, no ``exit_now``): ~20x cheaper
    than a subprocess; tests where the process itself is the point use :func:`run_convert`."""
    from convert.cli import main

    return in_process(main, args, cwd)


def train_cli(*args: str | os.PathLike[str], cwd: Path | None = None) -> Ran:
    """``python -m train ARGS`` in this process (``train.cli.main``)."""
    from train.cli import main

    return in_process(main, args, cwd)


@pytest.fixture
def reads(tmp_path: Path) -> tuple[Path, Path]:
    """A small labeled FASTA (4 real genomes, 200 reads each) and its mapping."""
    return write_reads(tmp_path / "in" / "reads.fa")


@pytest.fixture(scope="session")
def metagene_tokenizer_path() -> Path:
    """The shipped real METAGENE-1 tokenizer.json."""
    return REPO / "convert" / "assets" / "tokenizers" / "metagene-1" / "tokenizer.json"
