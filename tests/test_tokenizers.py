"""Tokenizer registry: exact METAGENE-1 ids, round trips, int16 and pad rules, auto length."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from convert.tokenizers import TokenizerError, choose_max_length, load_tokenizer


def _reads(n: int = 400, seed: int = 0, alphabet: str = "ACGT") -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(list(alphabet), size=int(rng.integers(100, 151)))) for _ in range(n)]


def _blob(seqs: list[str]) -> tuple[bytes, np.ndarray]:
    return "".join(seqs).encode(), np.concatenate([[0], np.cumsum([len(s) for s in seqs])]).astype(np.int64)


def test_metagene_ids_equal_reference(metagene_tokenizer_path: Path) -> None:
    ref = Tokenizer.from_file(str(metagene_tokenizer_path))
    seqs = _reads(alphabet="ACGTN")
    tok = load_tokenizer("metagene-1")
    ids, full = tok.encode(*_blob(seqs), 64)
    for i, s in enumerate(seqs):
        want = ref.encode(s).ids
        assert full[i] == len(want)
        row = ids[i, : min(len(want), 64)].tolist()
        assert row == (want if len(want) <= 64 else want[:63] + [want[-1]])
        assert (ids[i, len(want):] == tok.info["pad_id"]).all()
    assert tok.info["special_ids"]["bos"] == 3 and tok.info["special_ids"]["eos"] == 4
    assert tok.info["pad_id"] == 0 and tok.info["vocab_size"] == 1024


@pytest.mark.parametrize("name", ["metagene-1", "dnabert-6mer", "char", "dnabert-2"])
def test_round_trip(name: str) -> None:
    seqs = _reads(200, seed=1)
    tok = load_tokenizer(name)
    ids, full = tok.encode(*_blob(seqs), 512)
    for i, s in enumerate(seqs):
        assert tok.decode(ids[i, : full[i]]) == s


@pytest.mark.parametrize("name", ["metagene-1", "char"])
def test_round_trip_with_n(name: str) -> None:
    seqs = _reads(100, seed=2, alphabet="ACGTN")
    tok = load_tokenizer(name)
    ids, full = tok.encode(*_blob(seqs), 512)
    assert all(tok.decode(ids[i, : full[i]]) == s for i, s in enumerate(seqs))


def test_kmer_layout_and_unknown() -> None:
    tok = load_tokenizer("dnabert-6mer")
    vocab = (Path(__file__).resolve().parents[1] / "convert/assets/tokenizers/dnabert-6mer/vocab.txt").read_text().split()
    ids, full = tok.encode(*_blob(["ACGTACGT", "ACGTNACGTA"]), 16)
    assert full.tolist() == [3 + 2, 5 + 2]
    assert [vocab[i] for i in ids[0, :5]] == ["[CLS]", "ACGTAC", "CGTACG", "GTACGT", "[SEP]"]
    assert [vocab[i] for i in ids[1, 1:6]] == ["[UNK]"] * 5  # every 6-mer over the N


def test_truncation_keeps_closing_token() -> None:
    tok = load_tokenizer("dnabert-6mer")
    ids, full = tok.encode(*_blob(["ACGT" * 40]), 16)
    assert full[0] == 160 - 6 + 1 + 2
    assert ids[0, -1] == tok.info["special_ids"]["sep"]
    assert ids[0, 0] == tok.info["special_ids"]["cls"]


def test_pad_is_never_a_sequence_token() -> None:
    for name in ("metagene-1", "dnabert-6mer", "char", "dnabert-2"):
        tok = load_tokenizer(name)
        ids, full = tok.encode(*_blob(_reads(50, alphabet="ACGTN")), 512)
        for i in range(len(full)):
            assert tok.info["pad_id"] not in ids[i, : full[i]].tolist()


def test_refuses_vocab_over_int16(tmp_path: Path, metagene_tokenizer_path: Path) -> None:
    spec = json.loads(metagene_tokenizer_path.read_text())
    vocab = spec["model"]["vocab"]
    for i in range(40000):
        vocab[f"X{i}"] = len(vocab)
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(TokenizerError, match="int16"):
        load_tokenizer(str(path))


def test_path_and_directory_specs(tmp_path: Path, metagene_tokenizer_path: Path) -> None:
    by_file = load_tokenizer(str(metagene_tokenizer_path))
    by_dir = load_tokenizer(str(metagene_tokenizer_path.parent))
    assert by_file.info["sha256"] == by_dir.info["sha256"] == load_tokenizer("metagene-1").info["sha256"]


@pytest.mark.parametrize("spec", ["no-such-tokenizer", "/nonexistent/tokenizer.json"])
def test_unknown_spec(spec: str) -> None:
    with pytest.raises(TokenizerError, match="unknown tokenizer"):
        load_tokenizer(spec)


def test_not_a_tokenizer_file(tmp_path: Path) -> None:
    bad = tmp_path / "tokenizer.json"
    bad.write_text("{not json")
    with pytest.raises(TokenizerError, match="not a Hugging Face tokenizer.json"):
        load_tokenizer(str(bad))


@pytest.mark.parametrize(
    "lengths, want",
    [([39] * 9999 + [100], 40), ([40] * 100, 40), ([41] * 100, 48), ([1], 8), ([], 8)],
)
def test_choose_max_length(lengths: list[int], want: int) -> None:
    assert choose_max_length(np.asarray(lengths)) == want
