"""benchmarks/classifier_bench.py: ART reads, Kraken2 databases and the results table, with the
real tools (Debian kraken2 and art-nextgen-simulation-tools; skipped with a reason without them)."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import classifier_bench as cb  # noqa: E402
import kraken  # noqa: E402
import simreads  # noqa: E402

GENOMES = REPO / "sample" / "genomes"
# Three small genomes (5.4, 2.8 and 6.3 kb): quick to simulate from and to index.
TINY = ("Escherichia_phage_phiX174__NC_001422.1.fasta.gz", "Cannabis_sativa_mitovirus_1__OR159227.1.fasta.gz",
        "Eggplant_mosaic_virus__KJ690172.1.fasta.gz")
HEADER = re.compile(rb"^>lbl\|(\d+)\|(\d*)\|(\d+)\|([^/|\s]+)_(\d+)/([12])$")

needs_art = pytest.mark.skipif(not simreads.art_available(),
                               reason="art_illumina not on PATH (apt-get install art-nextgen-simulation-tools)")
needs_kraken = pytest.mark.skipif(kraken.available() is not None, reason=str(kraken.available()))


@pytest.fixture(scope="module")
def tiny_genomes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("genomes")
    for name in TINY:
        shutil.copy(GENOMES / name, d / name)
    return d


def test_score_calls_hand_example() -> None:
    truth = np.array([10, 10, 20, 20, 30])
    pred = np.array([10, -1, 20, 10, 30])  # one no-call (wrong), one wrong call
    m = cb.score_calls(truth, pred, [30, 20, 10])
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["classified"] == pytest.approx(4 / 5)
    assert m["precision"] == pytest.approx(3 / 4)
    # F1: class 10 (tp 1, fp 1, fn 1) 0.5; class 20 (tp 1, fn 1) 2/3; class 30: 1
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    with pytest.raises(ValueError):
        cb.score_calls(np.array([11]), np.array([11]), [10])


def test_kraken_output_parsed_and_mapped_to_classes() -> None:
    text = ("C\tr1/1\t9606\t150\t9606:116\n"
            "U\tr2/1\t0\t150\t0:116\n"
            "C\tr3/1\t1\t150\t1:50 9606:3\n"      # at the root: no species call
            "C\tr4/1\t777\t150\t777:116\n")      # a tax id outside the table
    ids, taxids = kraken.parse_output(text)
    assert ids == ["r1/1", "r2/1", "r3/1", "r4/1"]
    assert taxids.tolist() == [9606, 0, 1, 777]
    pred = np.where(taxids > 0, cb._lookup(taxids, {9606: 17, 10710: 106}), -1)
    assert pred.tolist() == [17, -1, -1, -1]
    m = cb.score_calls(np.array([17, 17, 106, 106]), pred, [17, 106])
    assert m["accuracy"] == 0.25 and m["classified"] == 0.25 and m["precision"] == 1.0


def test_table_and_targets() -> None:
    def row(method: str, group: str, acc: float) -> dict:
        return {"method": method, "group": group, "accuracy": acc, "macro_f1": acc, "classified": 1.0,
                "precision": acc, "reads_per_s": 1234.5, "build_s": 61.0}

    rows = [row("readshard model, per read", "model", 0.93), row("readshard model, per pair", "model", 0.98),
            row("Kraken2 ... paired", "kraken_genomes_paired", 0.974),
            row("Kraken2 ... single-end", "kraken_train_reads_single", 0.889)]
    table = cb.markdown_table(rows).splitlines()
    assert len(table) == 2 + len(rows)
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert cells == ["readshard model, per read", "93.0%", "93.0%", "100.0%", "93.0%", "1,234", "61.0 s"]
    targets = {t["target"]: t["holds"] for t in cb.check_targets(rows)}
    assert list(targets.values()) == [True, True]


@needs_art
def test_art_paired_reads_split_by_fragment(tiny_genomes: Path, tmp_path: Path) -> None:
    sim = simreads.simulate_reads(tmp_path, genomes_dir=tiny_genomes, reads_per_genome=60, seed=3)
    assert sim.simulator == "art" and sum(sim.reads.values()) == 3 * 60
    mapping = sim.mapping.read_text().splitlines()
    assert mapping[0] == "class_id\ttax_id\tspecies" and len(mapping) == 4
    seen: dict[bytes, str] = {}
    for split, path in sim.files.items():
        lines = path.read_bytes().split(b"\n")
        heads, seqs = lines[0:-1:2], lines[1::2]
        assert len(heads) == sim.reads[split] and len(seqs) == len(heads)
        parsed = [HEADER.match(h) for h in heads]
        assert all(parsed), [h for h, p in zip(heads, parsed) if not p][:2]
        for a, b in zip(parsed[0::2], parsed[1::2]):  # mates adjacent: /1 then /2 of one fragment
            assert (a[6], b[6]) == (b"1", b"2") and a[4] + a[5] == b[4] + b[5] and a[1] == b[1]
            assert seen.setdefault(a[4] + b"_" + a[5], split) == split  # a fragment lives in one split
        assert all(len(s) == 150 and int(p[3]) == 150 for s, p in zip(seqs, parsed))
        assert set(b"".join(seqs)) <= set(b"ACGTN")
    assert len(seen) == 3 * 30


@needs_kraken
def test_kraken_classifies_reads_of_its_own_genomes(tiny_genomes: Path, tmp_path: Path) -> None:
    sim = simreads.simulate_reads(tmp_path / "reads", simulator="builtin", genomes_dir=tiny_genomes,
                                  reads_per_genome=100, seed=5)
    taxids = simreads.kraken_taxids(sim.genomes)
    assert len(set(taxids.values())) == 3 and 1 not in taxids.values()
    lib = tmp_path / "lib.fa"
    kraken.write_library(lib, ((taxids[g.class_id], r) for g in sim.genomes for r in g.records))
    db = tmp_path / "db"
    assert kraken.build(db, lib, {taxids[g.class_id]: g.species for g in sim.genomes}) > 0
    truth = cb._truth(sim.files["train"])
    calls = kraken.classify(db, [sim.files["train"]], tmp_path / "out.txt")
    heads = sim.files["train"].read_text().splitlines()[0::2]
    assert calls.ids == [h[1:] for h in heads]  # one line per read, in input order
    pred = np.where(calls.taxids > 0, cb._lookup(calls.taxids, {t: c for c, t in taxids.items()}), -1)
    m = cb.score_calls(truth, pred, list(taxids))
    assert m["accuracy"] > 0.9 and m["precision"] > 0.99
    r1, r2 = tmp_path / "r1.fa", tmp_path / "r2.fa"
    assert kraken.split_mates(sim.files["train"], r1, r2) == len(truth) // 2
    paired = kraken.classify(db, [r1, r2], tmp_path / "paired.txt", paired=True)
    assert len(paired.taxids) == len(truth) // 2
    assert paired.ids == [h[1:].rsplit("/", 1)[0] for h in heads[0::2]]


@pytest.mark.slow
@needs_kraken
def test_tiny_bench_end_to_end(tiny_genomes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench"
    rc = cb.main(["--genomes", str(tiny_genomes), "--minutes", "0.1", "--reads-per-genome", "400",
                  "--out", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err[-2000:]
    result = json.loads((out / "results.json").read_text())
    groups = [r["group"] for r in result["rows"]]
    assert groups[0] == "model"
    assert "baseline" in groups and sum(g.startswith("kraken_") for g in groups) == 4
    assert sum(g == "model" for g in groups) == 2  # per read and per pair
    table = (out / "results.md").read_text()
    body = [line for line in table.splitlines() if line.startswith("| ") and "method" not in line]
    assert len(body) == len(result["rows"]) >= 7, table  # never an empty table
    assert table.strip() in captured.out.strip() or body[0] in captured.out
    for r in result["rows"]:
        assert 0 <= r["accuracy"] <= 1 and r["reads_per_s"] > 0
    # --out is refused when it holds results, replaced with --overwrite (only the bench's own files)
    (out / "mine.txt").write_text("keep")
    assert cb.main(["--genomes", str(tiny_genomes), "--out", str(out), "--no-kraken"]) == 2
    assert (out / "mine.txt").read_text() == "keep"
