"""Paired reads for the classifier bench, split by fragment into train, val and test.

Two simulators:

* ``art``: ``art_illumina`` (Debian ``art-nextgen-simulation-tools``) with its HiSeq 2500
  error profile, 150 bp pairs from 200 bp fragments (``-ss HS25 -p -l 150 -m 200 -s 10``),
  ``-c`` pairs per record so every genome gets the same number of reads (a record's share
  in proportion to its length);
* ``builtin``: :func:`sample.simulate.simulate` (100-150 bp mates, 200-500 bp fragments,
  uniform substitutions).

Either way every read has the seed header ``>lbl|class_id|tax_id|readlen|name/mate``
(class ids and ``mapping.tsv`` as :mod:`sample.simulate` writes them), mates adjacent,
and both mates of a fragment land in the same split.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from sample.simulate import Genome, load_genomes, simulate

__all__ = ["ART_ARGS", "SimError", "Simulated", "art_available", "kraken_taxids", "simulate_reads", "write_mapping"]

#: The ART command line's fixed part: HiSeq 2500, paired, 150 bp, fragments 200 +- 10 bp.
ART_ARGS = ("-ss", "HS25", "-p", "-l", "150", "-m", "200", "-s", "10", "-na", "-q")
_ART_MIN_RECORD = 260  # shorter records cannot hold a 200 +- 10 bp fragment reliably
SPLITS = ("train", "val", "test")


class SimError(RuntimeError):
    """A simulator could not run (missing tool, failed process, bad genome input)."""


@dataclass
class Simulated:
    """What :func:`simulate_reads` wrote."""

    files: dict[str, Path]  # train, val, test FASTA (mates adjacent)
    mapping: Path
    reads: dict[str, int]
    simulator: str
    genomes: list[Genome] = field(repr=False)


def art_available() -> bool:
    """Whether ``art_illumina`` is on PATH."""
    return shutil.which("art_illumina") is not None


def write_mapping(path: Path, genomes: Sequence[Genome]) -> None:
    """``class_id``, ``tax_id``, ``species`` per genome (the converter's ``--mapping``)."""
    rows = ["class_id\ttax_id\tspecies"] + [f"{g.class_id}\t{g.tax_id}\t{g.species}" for g in genomes]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


def kraken_taxids(genomes: Sequence[Genome]) -> dict[int, int]:
    """Class id -> the tax id Kraken2's database uses for that species.

    The mapping's tax id where it is known and unique; otherwise the class id (species
    without a tax id still need a node), moved past every used id if it collides.
    """
    given = [int(g.tax_id) for g in genomes if g.tax_id]
    unique = {t for t in given if given.count(t) == 1 and t != 1}
    out = {g.class_id: int(g.tax_id) for g in genomes if g.tax_id and int(g.tax_id) in unique}
    used = set(out.values()) | {1}  # 1 is the root the bench's taxonomy hangs every species from
    for g in genomes:
        if g.class_id not in out:
            t = g.class_id
            while t in used:
                t += 1
            out[g.class_id] = t
            used.add(t)
    return out


def _shares(total: int, weights: np.ndarray) -> np.ndarray:
    """``total`` split in proportion to ``weights`` (largest remainders; sums to ``total``)."""
    exact = total * weights / weights.sum()
    base = np.floor(exact).astype(np.int64)
    extra = np.argsort(-(exact - base), kind="stable")[: total - int(base.sum())]
    base[extra] += 1
    return base


def _fastq_sequences(path: Path) -> list[bytes]:
    # ART writes 4-line records with the sequence on one line (qualities may start with '@').
    return path.read_bytes().split(b"\n")[1::4]


def _art_genome(g: Genome, pairs: int, seed: int, tmp: Path) -> tuple[list[bytes], list[bytes]]:
    recs = [r for r in g.records if len(r) >= _ART_MIN_RECORD]
    if not recs:
        raise SimError(f"{g.file}: no record of at least {_ART_MIN_RECORD} bases for 200 bp ART fragments")
    first: list[bytes] = []
    second: list[bytes] = []
    for i, (rec, n) in enumerate(zip(recs, _shares(pairs, np.array([len(r) for r in recs], dtype=float)))):
        if n == 0:
            continue
        ref = tmp / "ref.fa"
        ref.write_bytes(b">r\n" + rec + b"\n")
        prefix = tmp / "art_"
        cmd = ["art_illumina", *ART_ARGS, "-i", str(ref), "-c", str(int(n)), "-rs", str(seed + 7919 * i),
               "-o", str(prefix)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise SimError(f"art_illumina failed on {g.file} record {i + 1} (exit {proc.returncode}): "
                           f"{' / '.join(tail)}; run `{' '.join(cmd)}` to see why")
        first += _fastq_sequences(Path(f"{prefix}1.fq"))
        second += _fastq_sequences(Path(f"{prefix}2.fq"))
    if len(first) != pairs or len(second) != pairs:
        raise SimError(f"art_illumina wrote {len(first)}/{len(second)} mates for {g.file}, expected {pairs} pairs")
    return first, second


def _art_fragments(genomes: Sequence[Genome], reads_per_genome: int, seed: int) -> list[bytes]:
    frags: list[bytes] = []
    with tempfile.TemporaryDirectory(prefix="readshard-art-") as tmp:
        for gi, g in enumerate(genomes):
            s1, s2 = _art_genome(g, reads_per_genome // 2, seed + 104729 * gi, Path(tmp))
            head = f">lbl|{g.class_id}|{g.tax_id}|".encode()
            stem = g.stem.encode()
            frags += [b"%s%d|%s_%d/1\n%s\n%s%d|%s_%d/2\n%s\n" % (head, len(a), stem, k, a, head, len(b), stem, k, b)
                      for k, (a, b) in enumerate(zip(s1, s2))]
    return frags


def _builtin_fragments(genomes_dir: Path | None, reads_per_genome: int, seed: int) -> list[bytes]:
    with tempfile.TemporaryDirectory(prefix="readshard-sim-") as tmp:
        summary = simulate(tmp, fragments_per_species=reads_per_genome // 2, seed=seed, val_fraction=0.0,
                           genomes_dir=genomes_dir, progress=False)
        lines = Path(summary["files"]["train"]).read_bytes().split(b"\n")
    # One-line FASTA, mates adjacent: 4 lines per fragment.
    n = (len(lines) - 1) // 4
    return [b"\n".join(lines[4 * i: 4 * i + 4]) + b"\n" for i in range(n)]


def simulate_reads(out: str | os.PathLike[str], *, simulator: str = "art",
                   genomes_dir: str | os.PathLike[str] | None = None,
                   reads_per_genome: int = 4000, val_fraction: float = 0.1, test_fraction: float = 0.1,
                   seed: int = 0) -> Simulated:
    """Simulate ``reads_per_genome`` reads (pairs) per genome into ``out/{train,val,test}.fa``.

    Args:
        out: output directory (created).
        simulator: ``art`` (needs ``art_illumina``) or ``builtin``.
        genomes_dir: genome FASTA directory (default: the shipped genomes).
        reads_per_genome: reads per genome, both mates counted (rounded down to even).
        val_fraction, test_fraction: share of fragments in val and test; the rest is train.
        seed: seeds the simulator and the split.

    Raises:
        SimError: unknown simulator, ``art_illumina`` missing or failing, bad genomes.
    """
    if simulator not in ("art", "builtin"):
        raise SimError(f"--simulator must be art or builtin, not {simulator!r}")
    if simulator == "art" and not art_available():
        raise SimError("art_illumina is not on PATH (apt-get install art-nextgen-simulation-tools), "
                       "or use --simulator builtin")
    if reads_per_genome < 2:
        raise SimError("--reads-per-genome must be at least 2 (one pair)")
    gdir = Path(genomes_dir) if genomes_dir is not None else None
    genomes = load_genomes(gdir)
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    frags = (_art_fragments(genomes, reads_per_genome, seed) if simulator == "art"
             else _builtin_fragments(gdir, reads_per_genome, seed))
    u = np.random.default_rng([seed, 2]).random(len(frags))
    which = np.where(u < test_fraction, 2, np.where(u < test_fraction + val_fraction, 1, 0))
    files = {name: outp / f"{name}.fa" for name in SPLITS}
    reads = {}
    for k, name in enumerate(SPLITS):
        idx = np.flatnonzero(which == k)
        files[name].write_bytes(b"".join(frags[i] for i in idx))
        reads[name] = 2 * len(idx)
    mapping = outp / "mapping.tsv"
    write_mapping(mapping, genomes)
    return Simulated(files=files, mapping=mapping, reads=reads, simulator=simulator, genomes=genomes)
