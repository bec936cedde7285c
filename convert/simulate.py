"""Simulate labeled paired-end reads from genomes: the embedded sample input of readshard.

``python -m convert.simulate --out DIR`` writes ``DIR/train.fa``, ``DIR/val.fa`` and
``DIR/mapping.tsv`` from the 25 genomes shipped in ``convert/assets/genomes`` (see
``convert/assets/ATTRIBUTION.md``). Every read has exactly the seed header format::

    >lbl|<class_id>|<tax_id>|<readlen>|<name>/<mate>

* ``class_id``: sparse, non-contiguous ids (17, 105, 201, ...) derived from the genome
  order (sorted file names), so a converter cannot confuse them with labels 0..C-1.
* ``tax_id``: the manifest's *species* taxid; empty where the manifest has none.
* ``readlen``: the sequence length (100-150 bases, each mate drawn independently).
* ``name``: ``<accession stem>_<fragment number>`` (no ``/`` or whitespace); ``mate`` 1 or 2.

Reads come in pairs from one fragment (200-500 bp, clipped to the record length) of a
random strand: mate 1 is the fragment's first bases, mate 2 the reverse complement of its
last bases, each mate 100-150 bp, with a uniform substitution error rate (default 0.2%).
Multi-record genomes (influenza segments, a plasmid) pick records in proportion to length.
Genomes are upper-cased on load; IUPAC letters (one ``Y``) are kept, so converters see some.
Each species gets exactly ``--fragments-per-species`` fragments, species interleaved at
random; each fragment (both mates) goes to val with probability ``--val-fraction``.

Output is a pure function of the arguments: numpy ``Generator(PCG64)`` streams seeded per
block from ``SeedSequence(seed, spawn_key=(block, stream))``, a fixed block size and
``gzip`` with ``mtime=0`` give the same bytes on any machine (for one numpy version). The
error stream is separate from the fragment stream, so two runs that differ only in
``--error-rate`` give the same fragments, mate for mate.

Scaling: fragments are generated, serialized and written in blocks of
:data:`BLOCK_FRAGMENTS` with vectorized numpy (no per-read Python objects), so memory is
flat in the read count.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Sequence

import numpy as np

__all__ = [
    "ASSET_GENOMES",
    "BLOCK_FRAGMENTS",
    "Genome",
    "SimulateError",
    "class_id_for",
    "load_genomes",
    "main",
    "simulate",
]

#: The genomes shipped with readshard (gzip FASTA + manifest.tsv).
ASSET_GENOMES = Path(__file__).resolve().parent / "assets" / "genomes"

#: Fragments per generation block. Fixed: the random streams are seeded per block, so
#: changing it changes the output bytes.
BLOCK_FRAGMENTS = 16384

READ_MIN, READ_MAX = 100, 150
FRAG_MIN, FRAG_MAX = 200, 500
_QUALITY = ord("I")  # constant Phred 40 in FASTQ output
_NEWLINE = ord("\n")

_GENOME_SUFFIXES = (".fasta", ".fa", ".fna", ".fasta.gz", ".fa.gz", ".fna.gz")
_IUPAC = b"ACGTURYKMSWBDHVN"
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class SimulateError(ValueError):
    """Bad simulator input (genome directory, genome file or argument)."""


def _complement_table() -> np.ndarray:
    table = np.arange(256, dtype=np.uint8)
    for a, b in ("AT", "CG", "RY", "KM", "BV", "DH"):
        table[ord(a)], table[ord(b)] = ord(b), ord(a)
    table[ord("U")] = ord("A")
    return table


_COMPLEMENT = _complement_table()
_ACGT = np.frombuffer(b"ACGT", dtype=np.uint8)
_BASE_CODE = np.full(256, 4, dtype=np.int64)  # 4 = not A/C/G/T (IUPAC ambiguity)
_BASE_CODE[_ACGT] = np.arange(4)


@dataclass(frozen=True)
class Genome:
    """One class: all records of one genome file.

    Attributes:
        file: genome file name.
        species: label written to mapping.tsv.
        class_id: sparse class id written in headers.
        tax_id: species taxid as text, ``""`` where unknown.
        stem: accession-like stem used in read names.
        records: upper-cased record sequences (records shorter than READ_MAX dropped).
    """

    file: str
    species: str
    class_id: int
    tax_id: str
    stem: str
    records: tuple[bytes, ...]


def class_id_for(index: int) -> int:
    """Sparse, strictly increasing class id of the ``index``-th genome (17, 105, 201, ...)."""
    return 17 + 88 * index + index**3


def _genome_key(path: Path) -> str:
    name = path.name
    return name[:-3] if name.endswith(".gz") else name


def _read_manifest(directory: Path) -> dict[str, dict[str, str]]:
    path = directory / "manifest.tsv"
    if not path.is_file():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines:
        return {}
    cols = lines[0].split("\t")
    rows = {}
    for line in lines[1:]:
        if line.strip():
            row = dict(zip(cols, line.split("\t")))
            rows[row.get("file", "")] = row
    return rows


def _parse_fasta(path: Path) -> list[bytes]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise SimulateError(f"cannot read genome file {path}: {exc}") from exc
    if not data.lstrip().startswith(b">"):
        raise SimulateError(f"genome file {path} is not FASTA (no '>' header at the start)")
    records = []
    for chunk in data.split(b"\n>"):
        _, _, body = chunk.partition(b"\n")
        seq = b"".join(body.split()).upper()
        bad = seq.translate(None, _IUPAC)
        if bad:
            raise SimulateError(
                f"genome file {path} has non-nucleotide characters {sorted(set(bad.decode('latin-1')))!r}"
            )
        records.append(seq)
    return records


def load_genomes(directory: str | os.PathLike[str] | None = None) -> list[Genome]:
    """Load every genome FASTA of ``directory`` (default: the shipped assets), sorted by name.

    ``manifest.tsv`` (optional) gives ``species_label`` and ``species_taxid`` per file;
    without it the file stem is the species and the taxid is unknown.

    Raises:
        SimulateError: no genomes, unreadable file, or no record of at least READ_MAX bases.
    """
    root = Path(directory) if directory is not None else ASSET_GENOMES
    if not root.is_dir():
        raise SimulateError(f"genome directory {root} does not exist")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.name.endswith(_GENOME_SUFFIXES))
    if not files:
        raise SimulateError(
            f"no genome FASTA files ({', '.join(_GENOME_SUFFIXES)}) in {root}"
        )
    manifest = _read_manifest(root)
    genomes = []
    for index, path in enumerate(files):
        key = _genome_key(path)
        base = re.sub(r"\.(fasta|fa|fna)$", "", key)
        row = manifest.get(key, {})
        species = " ".join((row.get("species_label") or base).split())
        tax_id = (row.get("species_taxid") or "").strip()
        if tax_id and not tax_id.isdigit():
            raise SimulateError(f"{root / 'manifest.tsv'}: species_taxid {tax_id!r} of {key} is not a number")
        stem = _NAME_UNSAFE.sub("_", base.split("__", 1)[-1]).strip("_") or f"genome{index}"
        records = tuple(r for r in _parse_fasta(path) if len(r) >= READ_MAX)
        if not records:
            raise SimulateError(f"genome file {path} has no record of at least {READ_MAX} bases")
        genomes.append(Genome(key, species, class_id_for(index), tax_id, stem, records))
    return genomes


# ----------------------------------------------------------------------------- vector helpers


def _place(out: np.ndarray, starts: np.ndarray, table: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Write row i of ``table`` (its first ``lens[i]`` bytes) at ``out[starts[i]:]``."""
    cols = np.arange(table.shape[1])
    mask = cols < lens[:, None]
    out[(starts[:, None] + cols)[mask]] = table[mask]
    return starts + lens


def _digits(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decimal ASCII digits of non-negative ints, left-aligned rows, and their counts."""
    values = values.astype(np.int64)
    lens = np.ones(len(values), dtype=np.int64)
    power = 10
    while len(values) and power <= values.max():
        lens += values >= power
        power *= 10
    width = int(lens.max()) if len(values) else 1
    cols = np.arange(width)
    exps = np.maximum(lens[:, None] - 1 - cols, 0)
    table = ((values[:, None] // (10**exps)) % 10 + ord("0")).astype(np.uint8)
    return table, lens


def _byte_table(items: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(b) for b in items)
    table = np.zeros((len(items), width), dtype=np.uint8)
    for i, b in enumerate(items):
        table[i, : len(b)] = np.frombuffer(b, dtype=np.uint8)
    return table, np.array([len(b) for b in items], dtype=np.int64)


@dataclass
class _Corpus:
    """All genomes concatenated, with per-species record tables for vectorized sampling."""

    seq: np.ndarray  # uint8, all records back to back
    rec_start: np.ndarray  # (R,) offset of each record in seq
    rec_len: np.ndarray  # (R,)
    rec_cum_end: np.ndarray  # (R,) cumulative record lengths (species' records contiguous)
    sp_base: np.ndarray  # (S,) cumulative length before species s
    sp_total: np.ndarray  # (S,) total length of species s
    head: tuple[np.ndarray, np.ndarray]  # ">lbl|cid|tax|" per species (no leading char)
    tail: tuple[np.ndarray, np.ndarray]  # "|stem_" per species


def _corpus(genomes: Sequence[Genome]) -> _Corpus:
    records = [r for g in genomes for r in g.records]
    rec_len = np.array([len(r) for r in records], dtype=np.int64)
    rec_start = np.concatenate([[0], np.cumsum(rec_len)[:-1]])
    sp_total = np.array([sum(len(r) for r in g.records) for g in genomes], dtype=np.int64)
    head = _byte_table([f"lbl|{g.class_id}|{g.tax_id}|".encode() for g in genomes])
    tail = _byte_table([f"|{g.stem}_".encode() for g in genomes])
    return _Corpus(
        seq=np.frombuffer(b"".join(records), dtype=np.uint8),
        rec_start=rec_start,
        rec_len=rec_len,
        rec_cum_end=np.cumsum(rec_len),
        sp_base=np.concatenate([[0], np.cumsum(sp_total)[:-1]]),
        sp_total=sp_total,
        head=head,
        tail=tail,
    )


@dataclass
class _Reads:
    """One block of reads (mates adjacent: rows 2f and 2f+1 are fragment f)."""

    species: np.ndarray
    fragment: np.ndarray  # per-species fragment number
    mate: np.ndarray
    length: np.ndarray
    bases: np.ndarray  # (n, READ_MAX) uint8, first `length` valid
    val: np.ndarray  # bool


def _block_rngs(seed: int, block: int) -> tuple[np.random.Generator, np.random.Generator]:
    frag, err = (
        np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(block, s))))
        for s in (0, 1)
    )
    return frag, err


def _generate_block(
    corpus: _Corpus,
    species_counts: np.ndarray,
    next_fragment: np.ndarray,
    *,
    seed: int,
    block: int,
    error_rate: float,
    val_fraction: float,
) -> _Reads:
    rng, err_rng = _block_rngs(seed, block)
    nsp = len(species_counts)
    # Species of each fragment: exact counts per species, interleaved at random.
    sp = np.repeat(np.arange(nsp), species_counts)
    rng.shuffle(sp)
    nfrag = len(sp)
    # Per-species fragment numbers, continuing across blocks.
    order = np.argsort(sp, kind="stable")
    first = np.concatenate([[0], np.cumsum(species_counts)[:-1]])
    fragnum = np.empty(nfrag, dtype=np.int64)
    fragnum[order] = next_fragment[sp[order]] + np.arange(nfrag) - first[sp[order]]
    next_fragment += species_counts

    # Record in proportion to length: a uniform position over the species' records.
    pos = corpus.sp_base[sp] + rng.integers(0, corpus.sp_total[sp])
    rec = np.searchsorted(corpus.rec_cum_end, pos, side="right")
    rlen = corpus.rec_len[rec]
    flen = np.minimum(rng.integers(FRAG_MIN, FRAG_MAX + 1, nfrag), rlen)
    fstart = corpus.rec_start[rec] + rng.integers(0, rlen - flen + 1)
    fend = fstart + flen
    reverse = rng.random(nfrag) < 0.5
    len1 = np.minimum(rng.integers(READ_MIN, READ_MAX + 1, nfrag), flen)
    len2 = np.minimum(rng.integers(READ_MIN, READ_MAX + 1, nfrag), flen)
    val = rng.random(nfrag) < val_fraction

    # Genome coordinates of each mate. Forward fragment: mate 1 = seq[fs:fs+l1],
    # mate 2 = revcomp(seq[fe-l2:fe]). Reverse fragment (the fragment is revcomp of the
    # genome): mate 1 = revcomp(seq[fe-l1:fe]), mate 2 = seq[fs:fs+l2].
    n = 2 * nfrag
    length = np.empty(n, dtype=np.int64)
    length[0::2], length[1::2] = len1, len2
    gstart = np.empty(n, dtype=np.int64)
    gstart[0::2] = np.where(reverse, fend - len1, fstart)
    gstart[1::2] = np.where(reverse, fstart, fend - len2)
    rc = np.empty(n, dtype=bool)
    rc[0::2], rc[1::2] = reverse, ~reverse

    cols = np.arange(READ_MAX)
    idx = np.where(rc[:, None], gstart[:, None] + length[:, None] - 1 - cols, gstart[:, None] + cols)
    np.clip(idx, 0, len(corpus.seq) - 1, out=idx)
    bases = corpus.seq[idx]
    bases[rc] = _COMPLEMENT[bases[rc]]

    # Substitution errors: a binomial count over all valid bases, positions drawn uniformly
    # (deduplicated), each replaced by a different A/C/G/T.
    if error_rate > 0:
        total = int(length.sum())
        nerr = int(err_rng.binomial(total, error_rate))
        flat = np.unique(err_rng.integers(0, total, nerr))
        shift = err_rng.integers(1, 4, len(flat))
        if len(flat):
            ends = np.cumsum(length)
            row = np.searchsorted(ends, flat, side="right")
            col = flat - (ends[row] - length[row])
            code = _BASE_CODE[bases[row, col]]
            # A/C/G/T: a different base; an IUPAC ambiguity code: any A/C/G/T.
            bases[row, col] = _ACGT[np.where(code < 4, (code + shift) % 4, shift)]

    return _Reads(
        species=np.repeat(sp, 2),
        fragment=np.repeat(fragnum, 2),
        mate=np.tile(np.array([1, 2], dtype=np.int64), nfrag),
        length=length,
        bases=bases,
        val=np.repeat(val, 2),
    )


def _serialize(corpus: _Corpus, reads: _Reads, rows: np.ndarray, *, fastq: bool, line_width: int) -> bytes:
    """FASTA/FASTQ bytes of the selected reads, built without per-read Python objects."""
    if len(rows) == 0:
        return b""
    sp = reads.species[rows]
    length = reads.length[rows]
    bases = reads.bases[rows]
    head_t, head_l = corpus.head
    tail_t, tail_l = corpus.tail
    rl_t, rl_l = _digits(length)
    fn_t, fn_l = _digits(reads.fragment[rows])
    header = 1 + head_l[sp] + rl_l + tail_l[sp] + fn_l + 2  # '>' ... '/m'
    if fastq:
        body = 2 * length + 5  # '\n' seq '\n+\n' qual '\n'
    elif line_width > 0:
        body = 1 + length + (length + line_width - 1) // line_width
    else:
        body = length + 2
    ends = np.cumsum(header + body)
    starts = ends - (header + body)
    # Everything not written below is a newline (header end, line breaks, record end).
    out = np.full(int(ends[-1]), _NEWLINE, dtype=np.uint8)
    out[starts] = ord("@") if fastq else ord(">")
    pos = _place(out, starts + 1, head_t[sp], head_l[sp])
    pos = _place(out, pos, rl_t, rl_l)
    pos = _place(out, pos, tail_t[sp], tail_l[sp])
    pos = _place(out, pos, fn_t, fn_l)
    out[pos] = ord("/")
    out[pos + 1] = reads.mate[rows] + ord("0")
    seq_start = pos + 3
    cols = np.arange(bases.shape[1])
    mask = cols < length[:, None]
    offsets = cols + cols // line_width if (line_width > 0 and not fastq) else cols
    out[(seq_start[:, None] + offsets)[mask]] = bases[mask]
    if fastq:
        out[seq_start + length + 1] = ord("+")
        out[(seq_start[:, None] + length[:, None] + 3 + cols)[mask]] = _QUALITY
    return out.tobytes()


def _open_out(path: Path, compress: bool) -> BinaryIO:
    raw = open(path, "wb")
    if not compress:
        return raw
    # filename="" and mtime=0: no name or timestamp in the gzip header, so bytes are stable.
    return gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)  # type: ignore[return-value]


def _write_mapping(path: Path, genomes: Sequence[Genome]) -> None:
    lines = ["class_id\ttax_id\tspecies"] + [f"{g.class_id}\t{g.tax_id}\t{g.species}" for g in genomes]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def simulate(
    out_dir: str | os.PathLike[str],
    *,
    fragments_per_species: int = 1000,
    seed: int = 0,
    val_fraction: float = 0.1,
    fmt: str = "fasta",
    compress: bool = False,
    error_rate: float = 0.002,
    line_width: int = 0,
    genomes_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> dict[str, Any]:
    """Write simulated train/val reads and mapping.tsv into ``out_dir``.

    Args:
        out_dir: output directory (created).
        fragments_per_species: read pairs per species (split between train and val).
        seed: random seed; same arguments give the same bytes.
        val_fraction: probability that a fragment (both mates) goes to val.
        fmt: ``"fasta"`` or ``"fastq"``.
        compress: gzip the read files (``.gz`` suffix, deterministic header).
        error_rate: per-base substitution probability.
        line_width: FASTA bases per line, 0 = one line (ignored for FASTQ).
        genomes_dir: genome FASTA directory (default: the shipped assets).
        progress: show a tqdm bar (default: when stderr is a terminal).

    Returns:
        Summary: ``files`` (train, val, mapping paths), ``reads`` per split,
        ``fragments`` per split, ``species`` count, ``class_ids``, ``seed``.

    Raises:
        SimulateError: bad argument or genome input.
    """
    if fmt not in ("fasta", "fastq"):
        raise SimulateError(f"--format must be fasta or fastq, not {fmt!r}")
    if fragments_per_species < 1:
        raise SimulateError("--fragments-per-species must be at least 1")
    if not 0.0 <= val_fraction <= 1.0:
        raise SimulateError("--val-fraction must be between 0 and 1")
    if not 0.0 <= error_rate <= 1.0:
        raise SimulateError("--error-rate must be between 0 and 1")
    if line_width < 0:
        raise SimulateError("--line-width must be 0 (one line) or positive")
    if seed < 0:
        raise SimulateError("--seed must be non-negative")

    genomes = load_genomes(genomes_dir)
    corpus = _corpus(genomes)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    suffix = (".fq" if fmt == "fastq" else ".fa") + (".gz" if compress else "")
    paths = {"train": out / f"train{suffix}", "val": out / f"val{suffix}"}
    _write_mapping(out / "mapping.tsv", genomes)

    nsp = len(genomes)
    remaining = np.full(nsp, fragments_per_species, dtype=np.int64)
    next_fragment = np.zeros(nsp, dtype=np.int64)
    total_frag = nsp * fragments_per_species
    nblocks = -(-total_frag // BLOCK_FRAGMENTS)
    counts = {"train": 0, "val": 0}
    if progress is None:
        progress = sys.stderr.isatty()
    from tqdm import tqdm

    bar = tqdm(total=2 * total_frag, unit="read", unit_scale=True, disable=not progress, desc="simulate")
    handles = {k: _open_out(p, compress) for k, p in paths.items()}
    alloc_rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(2**32 - 1,))))
    try:
        for block in range(nblocks):
            take = min(BLOCK_FRAGMENTS, int(remaining.sum()))
            # Species counts of this block: drawn without replacement from what is left,
            # so every species ends with exactly fragments_per_species fragments.
            block_counts = alloc_rng.multivariate_hypergeometric(remaining, take)
            remaining -= block_counts
            reads = _generate_block(
                corpus,
                block_counts,
                next_fragment,
                seed=seed,
                block=block,
                error_rate=error_rate,
                val_fraction=val_fraction,
            )
            for split, sel in (("train", ~reads.val), ("val", reads.val)):
                rows = np.flatnonzero(sel)
                handles[split].write(_serialize(corpus, reads, rows, fastq=fmt == "fastq", line_width=line_width))
                counts[split] += len(rows)
            bar.update(2 * take)
    finally:
        for h in handles.values():
            h.close()
        bar.close()
    return {
        "files": {"train": str(paths["train"]), "val": str(paths["val"]), "mapping": str(out / "mapping.tsv")},
        "reads": dict(counts),
        "fragments": {k: v // 2 for k, v in counts.items()},
        "species": nsp,
        "class_ids": [g.class_id for g in genomes],
        "seed": seed,
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m convert.simulate",
        description="Simulate labeled paired-end reads (>lbl|class_id|tax_id|readlen|name/mate) "
        "from the shipped genomes: DIR/train.fa, DIR/val.fa and DIR/mapping.tsv.",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--fragments-per-species", type=int, default=1000, help="read pairs per species (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0); same arguments, same bytes")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of fragments in val (default 0.1)")
    p.add_argument("--format", choices=("fasta", "fastq"), default="fasta", help="output format (default fasta)")
    p.add_argument("--gzip", action="store_true", help="gzip the read files (.gz)")
    p.add_argument("--error-rate", type=float, default=0.002, help="substitution rate per base (default 0.002)")
    p.add_argument("--line-width", type=int, default=0, help="FASTA bases per line, 0 = one line (default)")
    p.add_argument("--genomes", default=None, help="genome FASTA directory (default: the shipped assets)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: parse arguments, call :func:`simulate`, print a one-line summary."""
    args = _parser().parse_args(argv)
    try:
        summary = simulate(
            args.out,
            fragments_per_species=args.fragments_per_species,
            seed=args.seed,
            val_fraction=args.val_fraction,
            fmt=args.format,
            compress=args.gzip,
            error_rate=args.error_rate,
            line_width=args.line_width,
            genomes_dir=args.genomes,
            progress=False if args.quiet else None,
        )
    except SimulateError as exc:
        print(f"convert.simulate: error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        r = summary["reads"]
        print(
            f"{summary['species']} species, {r['train']} train + {r['val']} val reads -> "
            f"{summary['files']['train']}, {summary['files']['val']}, {summary['files']['mapping']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
