"""The exact fast BPE (convert/bpe.py) against Hugging Face ``tokenizers``, the oracle.

Real tokenizer files (METAGENE-1, DNABERT-2), random, genome-window and adversarial reads,
truncation, reads it must hand back to Hugging Face, out-of-scope files, and numba missing.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer

from convert import bpe
from convert.bpe import build_fast_bpe
from convert.tokenizers import ASSETS, BpeTokenizer
from conftest import REPO

FILES = {
    "metagene-1": ASSETS / "metagene-1" / "tokenizer.json",
    "dnabert-2": ASSETS / "dnabert-2-117m" / "tokenizer.json",
}
GENOMES = sorted((REPO / "sample" / "genomes").glob("*.fasta.gz"))


def _blob(reads: list[str]) -> tuple[bytes, np.ndarray]:
    return "".join(reads).encode(), np.concatenate([[0], np.cumsum([len(r) for r in reads])]).astype(np.int64)


def _random_reads(rng: np.random.Generator, n: int, alphabet: str) -> list[str]:
    return ["".join(rng.choice(list(alphabet), size=int(rng.integers(0, 152)))) for _ in range(n)]


def _genome_windows(rng: np.random.Generator, n: int) -> list[str]:
    table = bytes.maketrans(b"acgtnRYSWKMBDHVU", b"ACGTNNNNNNNNNNNN")
    out = []
    for path in GENOMES[:6]:
        text = gzip.decompress(path.read_bytes()).split(b"\n")
        seq = b"".join(line for line in text if not line.startswith(b">")).translate(table)
        for _ in range(n // 6):
            k = int(rng.integers(0, 152))
            s = int(rng.integers(0, max(1, len(seq) - k)))
            out.append(seq[s : s + k].decode())
    return out


def _adversarial() -> list[str]:
    reads = [""]
    for base in "ACGTN":
        reads += [base * k for k in range(152)]
    for pattern in ("AC", "ACG", "ACGT", "TTAGGG", "NA", "ANNA", "GATTACA", "CCGG"):
        reads += [(pattern * 80)[:k] for k in (1, 2, 3, 5, 8, 13, 50, 99, 150, 151)]
    reads += ["A" * 75 + "N" + "A" * 75, "N" * 75 + "ACGT" * 19, "ACGT" * 19 + "N" * 75]
    return reads


@functools.lru_cache(maxsize=None)
def _reads(kind: str) -> tuple[str, ...]:
    """The reads of ``kind`` (built once: the 80 oracle comparisons share them)."""
    return tuple(_make_reads(kind))


def _make_reads(kind: str) -> list[str]:
    rng = np.random.default_rng(12)
    if kind == "random":
        return _random_reads(rng, 3000, "ACGT")
    if kind == "random_n":
        return _random_reads(rng, 3000, "ACGTN") + _random_reads(rng, 1000, "AAAAACN")
    if kind == "genome":
        return _genome_windows(rng, 3000)
    return _adversarial()


# Both tokenizers fit the dense pair tables (convert.bpe.DENSE_MAX_TOKENS); "hash" builds
# them with the pair hash and per-pair decisions a larger vocabulary gets.
@pytest.fixture(scope="module", params=[(name, tables) for name in sorted(FILES) for tables in ("dense", "hash")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def pair(request: pytest.FixtureRequest) -> tuple[str, BpeTokenizer, BpeTokenizer, Tokenizer]:
    name, tables = request.param
    path = FILES[name]
    fast = BpeTokenizer(name, path, fast_min_reads=0)
    with pytest.MonkeyPatch.context() as mp:
        if tables == "hash":
            mp.setattr(bpe, "DENSE_MAX_TOKENS", 0)
        assert fast.encoder == "fast-bpe", fast.encoder_note
    return name, fast, BpeTokenizer(name, path, engine="hf"), Tokenizer.from_file(str(path))


@pytest.mark.parametrize("name", sorted(FILES))
@pytest.mark.parametrize("limit, dense", [(bpe.DENSE_MAX_TOKENS, True), (0, False)])
def test_dense_tables_up_to_the_limit(name: str, limit: int, dense: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    tok = Tokenizer.from_file(str(FILES[name]))
    monkeypatch.setattr(bpe, "DENSE_MAX_TOKENS", limit)
    fast = build_fast_bpe(json.loads(FILES[name].read_text()), tok.get_vocab(with_added_tokens=True))
    assert fast.dense is dense


_ORACLE: dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]] = {}


def _oracle(hf: BpeTokenizer, name: str, kind: str, max_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Hugging Face's rows of ``kind`` reads: the same for the dense and the hash fast tables, so
    computed once per tokenizer."""
    key = (name, kind, max_length)
    if key not in _ORACLE:
        _ORACLE[key] = hf.encode(*_blob(list(_reads(kind))), max_length)
    return _ORACLE[key]


@pytest.mark.parametrize("kind", ["random", "random_n", "genome", "adversarial"])
@pytest.mark.parametrize("max_length", [1, 2, 8, 40, 160])
def test_equals_hugging_face(pair, kind: str, max_length: int) -> None:
    """Same rows and full lengths as the Hugging Face path, truncated or not."""
    name, fast, hf, _ = pair
    blob = _blob(list(_reads(kind)))
    ids_f, full_f = fast.encode(*blob, max_length)
    ids_h, full_h = _oracle(hf, name, kind, max_length)
    assert np.array_equal(full_f, full_h)
    assert np.array_equal(ids_f, ids_h)


def test_ids_equal_tokenizer_encode(pair) -> None:
    """Directly against ``Tokenizer.encode`` (specials included, no truncation)."""
    _, fast, _, ref = pair
    reads = [*_reads("genome")[:1000], *_reads("adversarial")]
    ids, full = fast.encode(*_blob(reads), 160)
    for i, r in enumerate(reads):
        want = ref.encode(r).ids
        assert ids[i, : full[i]].tolist() == want, r


@pytest.mark.parametrize("read", ["acgt", "AC-GT", "ACG TTT", "ACGTRYN", "a", "NNNNx", "[UNK]", "AC\tGT"])
def test_other_bytes_go_to_hugging_face(pair, read: str) -> None:
    """Lowercase, punctuation, whitespace: Hugging Face's own [UNK]/split rules, exactly."""
    _, fast, _, ref = pair
    reads = ["ACGTACGT", read, "GGGCCC"]
    ids, full = fast.encode(*_blob(reads), 64)
    for i, r in enumerate(reads):
        assert ids[i, : full[i]].tolist() == ref.encode(r).ids


def test_no_reads(pair) -> None:
    _, fast, _, _ = pair
    ids, full = fast.encode(b"", np.zeros(1, dtype=np.int64), 8)
    assert ids.shape == (0, 8) and full.shape == (0,)


@pytest.mark.slow
def test_every_token_pair_metagene() -> None:
    """All 992,016 pairs of METAGENE-1 tokens over ACGTN, concatenated: fast == Hugging Face."""
    path = FILES["metagene-1"]
    ref = Tokenizer.from_file(str(path))
    fast = BpeTokenizer("metagene-1", path, fast_min_reads=0)
    tokens = [t for t in ref.get_vocab() if t and set(t) <= set("ACGTN")]
    reads = [a + b for a in tokens for b in tokens]
    assert len(reads) == 996 * 996  # every token over ACGTN
    ids, full = fast.encode(*_blob(reads), 112)
    want = ref.encode_batch(reads)
    for i in range(0, len(reads), 200_000):
        chunk = want[i : i + 200_000]
        lengths = np.array([len(e.ids) for e in chunk])
        assert np.array_equal(full[i : i + len(chunk)], lengths)
        rows = np.full((len(chunk), 112), 0, dtype=np.int16)
        for j, e in enumerate(chunk):
            rows[j, : len(e.ids)] = e.ids
        bad = np.flatnonzero((ids[i : i + len(chunk)] != rows).any(axis=1))
        assert bad.size == 0, [reads[i + b] for b in bad[:5]]


def _spec(name: str) -> dict:
    return json.loads(FILES[name].read_text())


@pytest.mark.parametrize(
    "change, reason",
    [
        (lambda s: s.update(normalizer={"type": "Lowercase"}), "normalizer"),
        (lambda s: s.update(pre_tokenizer={"type": "ByteLevel"}), "pre-tokenizer"),
        (lambda s: s["model"].update(dropout=0.1), "dropout"),
        (lambda s: s["model"].update(type="WordPiece"), "not BPE"),
        (lambda s: s.update(post_processor={"type": "BertProcessing"}), "post-processor"),
        (lambda s: s.update(truncation={"max_length": 8}), "truncation"),
        (lambda s: s["added_tokens"].append({"id": 5, "content": "ACG"}), "added token"),
        (lambda s: s["model"]["merges"].insert(0, "AC GT"), "no earlier merge"),
    ],
)
def test_out_of_scope_files_keep_hugging_face(change, reason: str) -> None:
    spec = _spec("metagene-1")
    change(spec)
    vocab = spec["model"]["vocab"]
    got = build_fast_bpe(spec, vocab)
    assert isinstance(got, str) and reason in got


def test_out_of_scope_file_end_to_end(tmp_path: Path) -> None:
    """A Lowercase normalizer: the tokenizer still loads and encodes, through Hugging Face."""
    spec = _spec("metagene-1")
    spec["normalizer"] = {"type": "Lowercase"}
    path = tmp_path / "tokenizer.json"
    path.write_text(json.dumps(spec))
    tok = BpeTokenizer("x", path, fast_min_reads=0)
    assert tok.encoder == "hf" and tok.encoder_note is None
    ids, full = tok.encode(*_blob(["ACGT"]), 8)
    assert ids[0, : full[0]].tolist() == Tokenizer.from_file(str(path)).encode("ACGT").ids


def test_without_numba_falls_back_with_one_line(tmp_path: Path) -> None:
    """numba that cannot be imported: Hugging Face encodes, and the converter says so once."""
    (tmp_path / "numba.py").write_text("raise ImportError('numba is broken here')\n")
    code = (
        "from convert.tokenizers import load_tokenizer; t = load_tokenizer('metagene-1'); "
        "print(t.encoder); print(t.encoder_note)"
    )
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    encoder, note = out.strip().splitlines()
    assert encoder == "hf"
    assert "numba cannot be imported" in note and "numba is broken here" in note and "Hugging Face" in note


def test_converter_rows_equal_hugging_face_path(tmp_path: Path) -> None:
    """End to end with units big enough for the fast encoder: every stored row is what the
    Hugging Face path gives for the same read (ids, truncation, lengths)."""
    import h5py

    from conftest import write_reads
    from convert import ConvertOptions, convert
    from convert.fastx import iter_units, parse_unit

    inp, mapping = write_reads(tmp_path / "r.fa", n_per_class=2400, classes=2, seed=3)
    out = tmp_path / "out"
    opts = ConvertOptions(inputs=[str(inp)], out=str(out), mapping=str(mapping), progress=False,
                          reads_per_shard=BpeTokenizer.FAST_MIN_READS, max_length=40, jobs=2)
    report = convert(opts)
    assert report["written"] > BpeTokenizer.FAST_MIN_READS and report["truncated"] > 0
    seqs = [r.seq.decode() for u in iter_units(inp, 0, 10**6) for r in parse_unit(u) if r.problem is None]
    want, full = BpeTokenizer("metagene-1", FILES["metagene-1"], engine="hf").encode(*_blob(seqs), 40)
    manifest = json.loads((out / "manifest.json").read_text())
    rows, lengths = [], []
    for entry in manifest["shards"]:
        with h5py.File(out / entry["file"], "r") as f:
            rows.append(f["input_ids"][:])
            lengths.append(f["lengths"][:])
    assert np.array_equal(np.concatenate(rows), want)
    assert np.array_equal(np.concatenate(lengths), np.minimum(full, 40))
