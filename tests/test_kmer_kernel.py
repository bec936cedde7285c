"""The compiled DNABERT k-mer kernel (convert.kmer) gives the numpy path's ids and lengths to the byte:
short reads, non-ACGT bases, reads that fill or overflow the row, every row width."""

from __future__ import annotations

import numpy as np
import pytest

from convert import kmer
from convert.tokenizers import load_tokenizer

pytestmark = pytest.mark.skipif(not kmer.AVAILABLE, reason="numba is not installed: the numpy path is the only one")


def _batch(reads: list[bytes]) -> tuple[bytes, np.ndarray]:
    offsets = np.zeros(len(reads) + 1, dtype=np.int64)
    np.cumsum([len(r) for r in reads], out=offsets[1:])
    return b"".join(reads), offsets


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("dnabert-6mer")


@pytest.mark.parametrize("read", [b"", b"A", b"ACGTA", b"ACGTAC", b"ACGTACG", b"NNNNNN", b"ACGTNACGTACGT",
                                  b"acgtacgt", b"ACGTACGTAN", b"NACGTACGTA", b"A" * 150, b"ACGT" * 40])
@pytest.mark.parametrize("width", [1, 2, 8, 147, 152])
def test_one_read(tok, read: bytes, width: int) -> None:
    fast = tok.encode(*_batch([read] * tok.KERNEL_MIN_READS), width)
    slow = tok.encode_numpy(*_batch([read] * tok.KERNEL_MIN_READS), width)
    assert fast[0].dtype == slow[0].dtype == np.int16 and fast[1].dtype == slow[1].dtype
    assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])


def test_random_batch(tok) -> None:
    rng = np.random.default_rng(3)
    alphabet = np.frombuffer(b"ACGTNacgX", dtype=np.uint8)
    p = [0.245, 0.245, 0.245, 0.245, 0.005, 0.005, 0.004, 0.004, 0.002]
    reads = [rng.choice(alphabet, p=p, size=int(n)).tobytes() for n in rng.integers(0, 220, 5000)]
    seqs, offsets = _batch(reads)
    for width in (152, 64):
        fast, slow = tok.encode(seqs, offsets, width), tok.encode_numpy(seqs, offsets, width)
        assert np.array_equal(fast[0], slow[0]) and np.array_equal(fast[1], slow[1])


def test_small_batches_stay_in_numpy(tok, monkeypatch: pytest.MonkeyPatch) -> None:
    """Below KERNEL_MIN_READS the kernel is not used (importing numba would cost more)."""
    monkeypatch.setattr(kmer, "kmer_rows", lambda *a, **k: pytest.fail("kernel used for a small batch"))
    seqs, offsets = _batch([b"ACGTACGTAC"] * 10)
    assert tok.encode(seqs, offsets, 16)[0].shape == (10, 16)
