"""Kraken2 for the classifier bench: a minimal taxonomy, a database build, a classification.

The taxonomy is flat: root (1) -> one species node per class, with the tax ids of
:func:`simreads.kraken_taxids`. Library FASTA headers are ``>ID|kraken:taxid|TAXID`` so no
accession map is needed. Kraken2 2.1.2 (Debian) is assumed; ``kraken2-build --threads N``
refuses to run when ``OMP_NUM_THREADS`` is below N, so the bench's builds run without it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["KrakenError", "KrakenCalls", "available", "write_taxonomy", "write_library", "build", "classify",
           "parse_output", "split_mates"]


class KrakenError(RuntimeError):
    """kraken2 or kraken2-build failed (the message names the command)."""


@dataclass
class KrakenCalls:
    """One classification: per input line (a read, or a pair with ``--paired``)."""

    ids: list[str]
    taxids: np.ndarray  # int64, 0 = unclassified
    seconds: float  # kraken2's own "processed in" time (after loading the database)
    wall_seconds: float


def available() -> str | None:
    """``None`` when ``kraken2`` and ``kraken2-build`` are on PATH, else why not."""
    missing = [t for t in ("kraken2", "kraken2-build") if shutil.which(t) is None]
    return f"{' and '.join(missing)} not on PATH (apt-get install kraken2)" if missing else None


def write_taxonomy(db: Path, names: Mapping[int, str]) -> None:
    """``db/taxonomy/{nodes,names}.dmp``: root (1) and one species node per tax id in ``names``."""
    tax = db / "taxonomy"
    tax.mkdir(parents=True, exist_ok=True)
    nodes = ["1\t|\t1\t|\tno rank\t|\t\t|"] + [f"{t}\t|\t1\t|\tspecies\t|\t\t|" for t in names]
    # names.dmp fields may not hold a tab or '|'
    clean = {t: re.sub(r"[\t|]+", " ", n) for t, n in names.items()}
    rows = ["1\t|\troot\t|\t\t|\tscientific name\t|"] + [f"{t}\t|\t{n}\t|\t\t|\tscientific name\t|"
                                                          for t, n in clean.items()]
    (tax / "nodes.dmp").write_text("\n".join(nodes) + "\n")
    (tax / "names.dmp").write_text("\n".join(rows) + "\n")


def write_library(path: Path, records: Iterable[tuple[int, bytes]]) -> int:
    """A library FASTA of ``(taxid, sequence)`` records with Kraken2's taxid headers; returns bases."""
    bases = 0
    with open(path, "wb") as f:
        for i, (taxid, seq) in enumerate(records):
            f.write(b">s%d|kraken:taxid|%d\n%s\n" % (i, taxid, seq))
            bases += len(seq)
    return bases


def _run(cmd: Sequence[str], *, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, env=None if env is None else dict(env))
    if proc.returncode != 0:
        tail = " / ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise KrakenError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {tail}")
    return proc


def build(db: Path, library: Path, names: Mapping[int, str], *, threads: int = 1, kmer_len: int | None = None,
          minimizer_len: int | None = None, masking: bool = True) -> float:
    """Build a Kraken2 database in ``db`` (a new directory) from ``library``; returns seconds.

    The seconds cover adding the library (with low-complexity masking, as ``kraken2-build``
    does by default, when ``dustmasker`` is present) and building the hash table.
    """
    write_taxonomy(db, names)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    no_mask = [] if masking and shutil.which("dustmasker") else ["--no-masking"]
    t0 = time.perf_counter()
    _run(["kraken2-build", "--db", str(db), "--add-to-library", str(library), *no_mask], env=env)
    extra = [] if kmer_len is None else ["--kmer-len", str(kmer_len)]
    extra += [] if minimizer_len is None else ["--minimizer-len", str(minimizer_len)]
    _run(["kraken2-build", "--db", str(db), "--build", "--threads", str(threads), *extra], env=env)
    return time.perf_counter() - t0


_PROCESSED = re.compile(r"(\d+) sequences .* processed in ([0-9.]+)s")


def parse_output(text: str) -> tuple[list[str], np.ndarray]:
    """Read ids and tax ids (0 = unclassified) of Kraken2's per-read output, in its order."""
    rows = [line.split("\t", 3) for line in text.splitlines() if line]
    ids = [r[1] for r in rows]
    taxids = np.array([int(r[2]) if r[0] == "C" else 0 for r in rows], dtype=np.int64)
    return ids, taxids


def classify(db: Path, reads: Sequence[Path], out: Path, *, threads: int = 1, paired: bool = False) -> KrakenCalls:
    """Run ``kraken2`` on ``reads`` (two files with ``paired``); the per-read output goes to ``out``."""
    cmd = ["kraken2", "--db", str(db), "--threads", str(threads), "--output", str(out)]
    cmd += ["--paired"] if paired else []
    t0 = time.perf_counter()
    proc = _run([*cmd, *map(str, reads)])
    wall = time.perf_counter() - t0
    m = _PROCESSED.search(proc.stderr)
    ids, taxids = parse_output(out.read_text())
    return KrakenCalls(ids=ids, taxids=taxids, seconds=float(m.group(2)) if m else wall, wall_seconds=wall)


def split_mates(fasta: Path, r1: Path, r2: Path) -> int:
    """Write the adjacent mates of a one-line FASTA into ``r1`` and ``r2``; returns pairs."""
    lines = fasta.read_bytes().split(b"\n")
    recs = [lines[i] + b"\n" + lines[i + 1] + b"\n" for i in range(0, len(lines) - 1, 2)]
    r1.write_bytes(b"".join(recs[0::2]))
    r2.write_bytes(b"".join(recs[1::2]))
    return len(recs) // 2
