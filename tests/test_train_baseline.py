"""The 6-mer naive Bayes baseline: stored tokens decode back to the exact reads for every
converter tokenizer, k-mer counting matches a plain count, and the classifier learns."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from _train_helpers import build_split, convert_reads, make_reads, write_fasta
from train.baseline import iter_shard_blocks, kmer_count_matrix, main, run_baseline


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


def test_naive_bayes_learns_from_tokens_and_from_fasta(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    train, val = build_split(tmp_path, num_classes=5, train_per_class=100, val_per_class=40)
    from_tokens = run_baseline(train, val)
    from_fasta = run_baseline(train, val, train_fasta=tmp_path / "reads" / "train.fa",
                              val_fasta=tmp_path / "reads" / "val.fa")
    assert from_tokens["val_accuracy"] > 0.9 and from_tokens["val_reads"] == 200
    assert from_tokens["confusion"] == from_fasta["confusion"]  # same reads either way
    assert main(["--train", str(train), "--val", str(val), "--out", str(tmp_path / "b")]) == 0
    assert "val accuracy" in capsys.readouterr().out and (tmp_path / "b" / "baseline.json").is_file()
    assert main(["--train", str(tmp_path), "--val", str(val)]) == 2  # not a dataset: clear error
