"""The 6-mer naive Bayes baseline: stored tokens decode back to the exact reads for every
converter tokenizer, k-mer counting matches a plain count, and the classifier learns."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from _train_helpers import convert_reads, write_fasta
from conftest import make_reads
from train.baseline import iter_shard_blocks, kmer_count_matrix, main, run_baseline, sample_rows


@pytest.mark.parametrize("tokenizer, max_length", [("metagene-1", 64), ("dnabert-6mer", 160), ("char", 160),
                                                   ("dnabert-2", 64)])
def test_tokens_decode_to_the_source_reads(tokenizer: str, max_length: int, tmp_path: Path) -> None:
    reads, labels = make_reads(3, 30, seed=4)
    reads[0] = reads[0][:70] + "N" + reads[0][71:]  # a non-ACGT base decodes to a k-mer break
    ds = convert_reads(write_fasta(tmp_path / "r.fa", reads, labels, 3), tmp_path / "ds", tokenizer=tokenizer,
                       max_length=max_length, reads_per_shard=40)
    got, got_labels = [], []
    for bases, offsets, lab in iter_shard_blocks(ds, block=32):
        got += ["".join("ACGTN"[b] for b in bases[offsets[i] : offsets[i + 1]]) for i in range(len(lab))]
        got_labels += lab.tolist()
    if tokenizer == "dnabert-6mer":
        # The 6 k-mers that contain the N are [UNK]: each decodes to one N, the length is kept.
        assert got[0] == reads[0][:70] + "N" * 6 + reads[0][76:]
        got, reads = got[1:], reads[1:]
    assert got == reads
    assert got_labels == labels.tolist()


def test_kmer_counts_match_a_plain_count() -> None:
    seqs = ["ACGTACGTAA", "GGGNGGGGGGT", "ACG"]
    code = {c: i for i, c in enumerate("ACGTN")}
    bases = np.array([code[c] for c in "".join(seqs)], dtype=np.uint8)
    offsets = np.cumsum([0] + [len(s) for s in seqs])
    k = 3
    m = kmer_count_matrix(bases, offsets, k)
    for row, s in enumerate(seqs):
        want = Counter(s[i : i + k] for i in range(len(s) - k + 1) if "N" not in s[i : i + k])
        got = {"".join("ACGT"[(c >> (2 * (k - 1 - j))) & 3] for j in range(k)): int(v)
               for c, v in enumerate(m[row]) if v}
        assert got == dict(want), s


def test_naive_bayes_learns_from_tokens_and_from_fasta(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                       make_split: Callable[..., tuple[Path, Path]]) -> None:
    train, val = make_split(num_classes=5, train_per_class=100, val_per_class=40)
    from_tokens = run_baseline(train, val)
    reads = train.parent / "reads"  # build_split's FASTA of the same reads
    from_fasta = run_baseline(train, val, train_fasta=reads / "train.fa", val_fasta=reads / "val.fa")
    assert from_tokens["val_accuracy"] > 0.9 and from_tokens["val_reads"] == 200
    assert from_tokens["confusion"] == from_fasta["confusion"]  # same reads either way
    assert main(["--train", str(train), "--val", str(val), "--out", str(tmp_path / "b")]) == 0
    assert "val accuracy" in capsys.readouterr().out and (tmp_path / "b" / "baseline.json").is_file()
    assert main(["--train", str(tmp_path), "--val", str(val)]) == 2  # not a dataset: clear error


@pytest.mark.parametrize("layout", ["mmap", "compressed"])
def test_sampled_rows_decode_to_the_same_reads_across_shards(layout: str, tmp_path: Path) -> None:
    from convert import ConvertOptions, convert

    reads, labels = make_reads(3, 40, seed=6)
    fa = write_fasta(tmp_path / "r.fa", reads, labels, 3)
    ds = tmp_path / "ds"
    convert(ConvertOptions(inputs=[str(fa)], out=str(ds), mapping=str(tmp_path / "mapping.tsv"), tokenizer="char",
                           max_length=160, reads_per_shard=25, layout=layout, jobs=1, progress=False))
    rows = sample_rows(120, 30, seed=3)
    assert rows is not None and rows.size == 30 and np.all(np.diff(rows) > 0)
    assert sample_rows(120, 120) is None and sample_rows(120, None) is None  # no cap: every row
    got = []
    for bases, offsets, lab in iter_shard_blocks(ds, rows=rows, block=7):
        got += [("".join("ACGTN"[b] for b in bases[offsets[i] : offsets[i + 1]]), int(lab[i])) for i in range(len(lab))]
    assert got == [(reads[r], int(labels[r])) for r in rows]  # rows from all 5 shards, in order
    assert len({int(r) // 25 for r in rows}) > 1


def test_baseline_is_capped_and_says_how_many_reads_it_used(capsys: pytest.CaptureFixture,
                                                            make_split: Callable[..., tuple[Path, Path]]) -> None:
    train, val = make_split(num_classes=3, train_per_class=100, val_per_class=40)
    res = run_baseline(train, val, max_reads=50, seed=1)
    assert (res["train_reads"], res["train_reads_total"], res["val_reads"], res["val_reads_total"]) == (50, 300, 50, 120)
    assert "uniform sample of at most 50" in res["sampling"]
    assert run_baseline(train, val, max_reads=50, seed=1)["confusion"] == res["confusion"]  # seeded
    fasta = run_baseline(train, val, max_reads=50, train_fasta=train.parent / "reads" / "train.fa",
                         val_fasta=train.parent / "reads" / "val.fa")
    assert (fasta["train_reads"], fasta["val_reads"]) == (50, 50) and "first 50" in fasta["sampling"]
    assert main(["--train", str(train), "--val", str(val), "--max-reads", "60"]) == 0
    assert "60 train reads, 60 val reads (a uniform sample of at most 60 reads" in capsys.readouterr().out


@pytest.mark.parametrize("swap", ["symlink", "other_dataset"])
def test_baseline_reads_through_the_checked_reader(swap: str, tmp_path: Path) -> None:
    """A shard that is a symlink, or another dataset's shard, is refused (the reader's checks)."""
    from shards import FormatError

    reads, labels = make_reads(3, 30, seed=4)
    fa = write_fasta(tmp_path / "r.fa", reads, labels, 3)
    ds = convert_reads(fa, tmp_path / "ds", tokenizer="char", max_length=160, reads_per_shard=40)
    other = None
    if swap == "other_dataset":  # other reads, same shard sizes
        o_reads, o_labels = make_reads(3, 30, seed=5)
        other = convert_reads(write_fasta(tmp_path / "o" / "r.fa", o_reads, o_labels, 3), tmp_path / "other",
                              tokenizer="char", max_length=160, reads_per_shard=40)
    shard = sorted(Path(ds).glob("shard-*.h5"))[0]
    if swap == "symlink":
        real = tmp_path / "elsewhere.h5"
        shard.rename(real)
        shard.symlink_to(real)
        match = "symlink"
    else:
        shard.write_bytes((Path(other) / shard.name).read_bytes())
        match = "another dataset|changed|modified or replaced"
    with pytest.raises(FormatError, match=match):
        list(iter_shard_blocks(ds, block=32))
