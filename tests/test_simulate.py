"""Tests of the read simulator (sample.simulate) and the embedded sample genomes."""

from __future__ import annotations

import gzip
import hashlib
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyfastx
import pytest

from conftest import REPO, in_process
from sample.simulate import (
    ASSET_GENOMES,
    READ_MAX,
    READ_MIN,
    SimulateError,
    load_genomes,
    simulate,
)

SEED_REGEX = re.compile(
    r"^lbl\|(?P<class_id>\d+)\|(?P<tax_id>\d+)?\|(?P<readlen>\d+)?\|(?P<name>[^/\s]+)(?:/(?P<mate>\d+))?$"
)
FPS = 200  # fragments per species in the shared fixtures: 25 species -> 10,000 reads
COMP = str.maketrans("ACGTRYKMBVDHN", "TGCAYRMKVBHDN")


def revcomp(s: str) -> str:
    return s.translate(COMP)[::-1]


def read_records(path: Path) -> list[tuple[str, str]]:
    """(header without '>'/'@', sequence) of a FASTA/FASTQ file, parsed by hand (raw lines)."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt") as fh:
        text = fh.read()
    lines = text.split("\n")
    assert lines[-1] == "", "file must end with a newline"
    lines = lines[:-1]
    records: list[tuple[str, str]] = []
    if path.name.split(".")[1] == "fq":
        for i in range(0, len(lines), 4):
            assert lines[i][0] == "@" and lines[i + 2] == "+"
            assert len(lines[i + 3]) == len(lines[i + 1])
            records.append((lines[i][1:], lines[i + 1]))
        return records
    for line in lines:
        if line.startswith(">"):
            records.append((line[1:], ""))
        else:
            records[-1] = (records[-1][0], records[-1][1] + line)
    return records


def run(out: Path, **kw) -> dict:
    kw.setdefault("fragments_per_species", FPS)
    kw.setdefault("progress", False)
    return simulate(out, **kw)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "default"
    run(out)
    return out


@pytest.fixture(scope="module")
def exact(tmp_path_factory) -> Path:
    """Error-free reads, same seed as `sample`."""
    out = tmp_path_factory.mktemp("sim") / "exact"
    run(out, error_rate=0.0)
    return out


@pytest.fixture(scope="module")
def mapping(sample) -> list[dict[str, str]]:
    lines = (sample / "mapping.tsv").read_text().splitlines()
    assert lines[0] == "class_id\ttax_id\tspecies"
    return [dict(zip(("class_id", "tax_id", "species"), line.split("\t"))) for line in lines[1:]]


@pytest.fixture(scope="module")
def genomes() -> dict[int, list[str]]:
    return {g.class_id: [r.decode() for r in g.records] for g in load_genomes()}


# ------------------------------------------------------------------------- assets


def test_assets_are_the_shared_genomes():
    manifest = (ASSET_GENOMES / "manifest.tsv").read_text().splitlines()
    cols = manifest[0].split("\t")
    rows = [dict(zip(cols, line.split("\t"))) for line in manifest[1:]]
    assert len(rows) == 25
    total = 0
    for row in rows:
        path = ASSET_GENOMES / (row["file"] + ".gz")
        raw = path.read_bytes()
        total += len(raw)
        assert raw[4:8] == b"\0\0\0\0", f"{path.name}: gzip header has a timestamp"
        assert hashlib.sha256(gzip.decompress(raw)).hexdigest() == row["sha256"], path.name
    assert total < 400_000
    attribution = (ASSET_GENOMES.parent / "ATTRIBUTION.md").read_text()
    for row in rows:
        assert row["file"] + ".gz" in attribution and row["source_commit"] in attribution


def test_load_genomes_keeps_iupac_and_uppercases():
    by_file = {g.file: g for g in load_genomes()}
    assert len(by_file) == 25
    cox = b"".join(by_file["Enterovirus_A_coxsackievirus_A8__KM609478.1.fasta"].records)
    assert cox.count(b"Y") == 1
    human = b"".join(by_file["Homo_sapiens_mitochondrion__MT-human.fasta"].records)
    assert human == human.upper() and len(human) == 16569
    assert len(by_file["Influenza_A_virus_PR8_H1N1__NC_002016-NC_002023.fasta"].records) == 8
    assert len(by_file["Candidatus_Stammera_capleta__CP043989.1_CP043990.1.fasta"].records) == 2


# ------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    "options, filename",
    [
        ({}, "train.fa"),
        ({"line_width": 60}, "train.fa"),
        ({"line_width": 7}, "train.fa"),
        ({"fmt": "fastq"}, "train.fq"),
        ({"compress": True}, "train.fa.gz"),
        ({"fmt": "fastq", "compress": True}, "train.fq.gz"),
    ],
)
def test_records_follow_the_seed_format(tmp_path, options, filename):
    run(tmp_path, fragments_per_species=40, **options)
    records = read_records(tmp_path / filename)
    assert len(records) > 1000 and len(records) % 2 == 0
    for i, (header, seq) in enumerate(records):
        m = SEED_REGEX.match(header)
        assert m, header
        assert int(m["readlen"]) == len(seq)
        assert READ_MIN <= len(seq) <= READ_MAX
        assert re.fullmatch(r"[ACGTRYKMSWBDHVN]+", seq)
        assert re.fullmatch(r"[A-Za-z0-9._-]+_\d+", m["name"])
        assert m["mate"] == ("1" if i % 2 == 0 else "2")
        if i % 2 == 1:  # mates adjacent, same fragment, same labels
            prev = SEED_REGEX.match(records[i - 1][0])
            assert (prev["class_id"], prev["tax_id"], prev["name"]) == (m["class_id"], m["tax_id"], m["name"])


@pytest.mark.parametrize("width", [7, 60, 149, 150])
def test_line_width_only_reflows(tmp_path, sample, width):
    run(tmp_path, line_width=width)
    text = (tmp_path / "train.fa").read_text()
    assert max(len(line) for line in text.splitlines() if not line.startswith(">")) <= width
    assert read_records(tmp_path / "train.fa") == read_records(sample / "train.fa")


def test_mates_are_independent_lengths(sample):
    records = read_records(sample / "train.fa")
    lens = np.array([len(s) for _, s in records]).reshape(-1, 2)
    assert (lens[:, 0] != lens[:, 1]).mean() > 0.9
    assert lens.min() == READ_MIN and lens.max() == READ_MAX


def test_class_ids_sparse_and_in_mapping(sample, mapping):
    ids = [int(r["class_id"]) for r in mapping]
    assert len(ids) == 25 == len(set(ids))
    assert ids != list(range(len(ids))) and max(ids) > 10 * len(ids)
    assert all(b - a > 1 for a, b in zip(ids, ids[1:]))
    taxa = {int(r["class_id"]): r["tax_id"] for r in mapping}
    seen = Counter()
    for split in ("train.fa", "val.fa"):
        for header, _ in read_records(sample / split):
            m = SEED_REGEX.match(header)
            cid = int(m["class_id"])
            assert cid in taxa
            assert (m["tax_id"] or "") == taxa[cid]
            seen[cid] += 1
    assert set(seen) == set(ids)
    assert all(v == 2 * FPS for v in seen.values()), "every species gets exactly FPS read pairs"


def test_some_tax_ids_empty(sample, mapping):
    empty = [r["species"] for r in mapping if r["tax_id"] == ""]
    assert 0 < len(empty) < len(mapping)
    assert any("Pongo" in s for s in empty)  # no taxid in the manifest
    assert any("Yersinia" in s for s in empty)  # strain taxid only: not written
    headers = [h for h, _ in read_records(sample / "train.fa")]
    assert any("||" in h for h in headers) and any(SEED_REGEX.match(h)["tax_id"] for h in headers)


def test_species_interleaved(sample):
    ids = [SEED_REGEX.match(h)["class_id"] for h, _ in read_records(sample / "train.fa")[::2]]
    runs = sum(a != b for a, b in zip(ids, ids[1:]))
    assert runs > len(ids) * 0.8  # not grouped by species


# ------------------------------------------------------------------------- split, determinism


def test_split_by_fragment(sample):
    names = {}
    for split in ("train.fa", "val.fa"):
        names[split] = Counter(SEED_REGEX.match(h)["name"] for h, _ in read_records(sample / split))
        assert set(names[split].values()) == {2}, "both mates of a fragment in the same file"
    assert not set(names["train.fa"]) & set(names["val.fa"])
    frac = len(names["val.fa"]) / (len(names["val.fa"]) + len(names["train.fa"]))
    assert 0.08 < frac < 0.12


@pytest.mark.parametrize("fraction, expect", [(0.0, 0), (1.0, 25 * FPS)])
def test_val_fraction_extremes(tmp_path, fraction, expect):
    summary = run(tmp_path, val_fraction=fraction)
    assert summary["fragments"]["val"] == expect
    assert summary["fragments"]["train"] == 25 * FPS - expect


def digest(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.mark.parametrize(
    "options",
    [{}, {"fmt": "fastq", "compress": True}, {"line_width": 60, "error_rate": 0.01}],
)
def test_deterministic_by_seed(tmp_path, options):
    run(tmp_path / "a", seed=7, **options)
    run(tmp_path / "b", seed=7, **options)
    run(tmp_path / "c", seed=8, **options)
    a, b, c = digest(tmp_path / "a"), digest(tmp_path / "b"), digest(tmp_path / "c")
    assert a == b
    assert a["mapping.tsv"] == c["mapping.tsv"]
    assert all(a[k] != c[k] for k in a if k != "mapping.tsv")


def test_multi_block_run_is_consistent(tmp_path):
    # More fragments than one block (16384): fragment numbers continue across blocks.
    summary = run(tmp_path, fragments_per_species=700, val_fraction=0.0)
    assert summary["reads"]["train"] == 2 * 25 * 700
    names = [SEED_REGEX.match(h)["name"] for h, _ in read_records(tmp_path / "train.fa")[::2]]
    assert len(set(names)) == len(names)
    per_stem = Counter(n.rsplit("_", 1)[0] for n in names)
    assert set(per_stem.values()) == {700}
    nums = sorted(int(n.rsplit("_", 1)[1]) for n in names if n.startswith("NC_001422.1_"))
    assert nums == list(range(700))


# ------------------------------------------------------------------------- read geometry, errors


def locate(read: str, records: list[str]) -> tuple[int, int, int] | None:
    """(record, start, strand) of an exact occurrence, strand +1 forward / -1 reverse."""
    for r, rec in enumerate(records):
        if (p := rec.find(read)) >= 0:
            return r, p, 1
        if (p := rec.find(revcomp(read))) >= 0:
            return r, p, -1
    return None


def test_mates_come_from_one_fragment(exact, genomes):
    records = read_records(exact / "train.fa")
    strands = Counter()
    checked = 0
    for i in range(0, 1200, 2):
        (h1, s1), (_, s2) = records[i], records[i + 1]
        cid = int(SEED_REGEX.match(h1)["class_id"])
        recs = genomes[cid]
        hit1, hit2 = locate(s1, recs), locate(s2, recs)
        assert hit1 and hit2, h1
        (r1, p1, st1), (r2, p2, st2) = hit1, hit2
        if recs[r1].count(s1) + recs[r1].count(revcomp(s1)) > 1:
            continue  # repeat: position ambiguous
        assert r1 == r2, "mates on one record"
        assert st2 == -st1, "mate 2 is on the other strand"
        if st1 == 1:  # forward fragment [p1, p2 + len2)
            start, end = p1, p2 + len(s2)
        else:  # reverse fragment: mate 1 is revcomp of its genomic end
            start, end = p2, p1 + len(s1)
        flen = end - start
        assert 200 <= flen <= 500 or flen == len(recs[r1]), flen
        assert min(len(s1), len(s2)) <= flen
        strands[st1] += 1
        checked += 1
    assert checked > 500
    assert strands[1] > 0.4 * checked and strands[-1] > 0.4 * checked


def test_multi_record_genomes_sampled_by_length(exact, genomes):
    flu = next(cid for cid, recs in genomes.items() if len(recs) == 8)
    recs = genomes[flu]
    hits = Counter()
    for split in ("train.fa", "val.fa"):
        for header, seq in read_records(exact / split):
            if int(SEED_REGEX.match(header)["class_id"]) == flu:
                hits[locate(seq, recs)[0]] += 1
    total = sum(hits.values())
    assert total == 2 * FPS
    lengths = np.array([len(r) for r in recs])
    expected = lengths / lengths.sum() * total
    observed = np.array([hits[r] for r in range(8)])
    assert (observed > 0).all()
    assert np.abs(observed - expected).max() < 0.5 * expected.max()


@pytest.mark.parametrize("rate", [0.002, 0.02])
def test_error_rate_honoured(tmp_path, exact, rate):
    # The error stream is separate from the fragment stream: same reads, only substitutions.
    run(tmp_path, error_rate=rate)
    clean = read_records(exact / "train.fa")
    noisy = read_records(tmp_path / "train.fa")
    assert [h for h, _ in clean] == [h for h, _ in noisy]
    a = np.frombuffer("".join(s for _, s in clean).encode(), dtype=np.uint8)
    b = np.frombuffer("".join(s for _, s in noisy).encode(), dtype=np.uint8)
    observed = (a != b).mean()
    assert abs(observed - rate) < 0.15 * rate, observed
    assert set(np.unique(b[a != b]).tobytes()) <= set(b"ACGT")


def test_default_sample_has_errors(sample, exact):
    assert (sample / "train.fa").read_bytes() != (exact / "train.fa").read_bytes()


# ------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    "options, filename",
    [({"fmt": "fastq"}, "train.fq"), ({"compress": True}, "train.fa.gz"), ({"fmt": "fastq", "compress": True}, "train.fq.gz")],
)
def test_formats_parse_with_pyfastx(tmp_path, sample, options, filename):
    run(tmp_path, **options)
    parsed = [(r[0], r[1]) for r in pyfastx.Fastx(str(tmp_path / filename))]
    if options.get("fmt") == "fastq":
        assert all(len(r[2]) == len(r[1]) for r in pyfastx.Fastx(str(tmp_path / filename)))
    assert parsed == read_records(sample / "train.fa")


# ------------------------------------------------------------------------- custom genomes, errors


def write_genome(path: Path, records: dict[str, str], width: int = 60) -> None:
    with open(path, "w") as fh:
        for name, seq in records.items():
            fh.write(f">{name} some description\n")
            fh.writelines(seq[i : i + width] + "\n" for i in range(0, len(seq), width))


def test_custom_genome_dir_without_manifest(tmp_path):
    rng = np.random.default_rng(1)
    g = tmp_path / "genomes"
    g.mkdir()
    seq = "".join(rng.choice(list("acgtRYN"), 3000))
    write_genome(g / "Alpha__X1.fa", {"x1": seq, "short": "ACGT" * 10})
    with gzip.open(g / "Beta__Y2.fna.gz", "wt") as fh:
        fh.write(">y\r\n" + "".join(rng.choice(list("ACGT"), 900)) + "\r\n")
    summary = run(tmp_path / "out", genomes_dir=g, fragments_per_species=300, error_rate=0.0)
    assert summary["species"] == 2
    mapping = (tmp_path / "out" / "mapping.tsv").read_text().splitlines()
    assert mapping[1:] == ["17\t\tAlpha__X1", "106\t\tBeta__Y2"]
    records = read_records(tmp_path / "out" / "train.fa")
    seqs = "".join(s for _, s in records)
    assert seqs == seqs.upper() and set("RYN") & set(seqs)
    for header, s in records:
        m = SEED_REGEX.match(header)
        assert m and m["tax_id"] is None and m["name"].startswith(("X1_", "Y2_"))
        if m["name"].startswith("X1_"):
            assert s in seq.upper() or revcomp(s) in seq.upper()


@pytest.mark.parametrize(
    "content, message",
    [
        (">a\nACGT\n", "no record of at least"),
        ("ACGTACGT\n", "not FASTA"),
        (">a\n" + "ACGT" * 50 + "XZ\n", "non-nucleotide"),
    ],
)
def test_bad_genome_files(tmp_path, content, message):
    (tmp_path / "bad.fa").write_text(content)
    with pytest.raises(SimulateError, match=message):
        run(tmp_path / "out", genomes_dir=tmp_path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fragments_per_species": 0}, "fragments-per-species"),
        ({"val_fraction": 1.5}, "val-fraction"),
        ({"error_rate": -0.1}, "error-rate"),
        ({"line_width": -1}, "line-width"),
        ({"fmt": "sam"}, "format"),
        ({"seed": -1}, "seed"),
        ({"genomes_dir": "/nonexistent/genomes"}, "does not exist"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(SimulateError, match=message):
        run(tmp_path, **kwargs)


def test_cli(tmp_path):
    """``python -m sample.simulate``'s main in-process (make convert runs it as a real process)."""
    from sample.simulate import main

    done = in_process(main, ["--out", tmp_path / "o", "--fragments-per-species", "5", "--format", "fastq", "--gzip"], REPO)
    assert done.returncode == 0, done.stderr
    assert "25 species" in done.stdout
    assert (tmp_path / "o" / "train.fq.gz").is_file() and (tmp_path / "o" / "val.fq.gz").is_file()
    bad = in_process(main, ["--out", tmp_path / "p", "--genomes", tmp_path / "nothing"], REPO)
    assert bad.returncode == 2
    assert "does not exist" in bad.stderr and "Traceback" not in bad.stderr
    shown = in_process(main, ["--help"], REPO)
    assert shown.returncode == 0
    helptext = shown.stdout
    for flag in ("--fragments-per-species", "--seed", "--val-fraction", "--format", "--gzip", "--error-rate", "--line-width", "--genomes"):
        assert flag in helptext
