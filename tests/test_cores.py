"""Idle cores lent to an encode (convert.cores): the budget, the split, and the same ids however split."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from convert import cores
from convert.tokenizers import ASSETS, BpeTokenizer


@pytest.fixture(autouse=True)
def _budget_back():
    before = cores.budget()
    yield
    cores.set_budget(before)


@pytest.mark.parametrize(
    "budget, held, want, got",
    [
        (1, 0, 4, 1),  # the default: never more than the caller's own core
        (2, 0, 4, 2),
        (4, 0, 3, 3),  # no more than asked
        (4, 3, 4, 1),  # others hold the rest: still the caller's own
        (4, 1, 8, 3),
        (2, 0, 0, 1),  # a batch too small to split
    ],
)
def test_claim_table(budget: int, held: int, want: int, got: int) -> None:
    cores.set_budget(budget)
    with cores.claim(held) if held else _nothing():
        with cores.claim(want) as n:
            assert n == got
    with cores.claim(budget) as n:  # everything given back
        assert n == budget


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize("n, parts", [(10, 1), (10, 3), (3, 8), (1, 2), (1000, 4)])
def test_run_parts_covers_every_row_once(n: int, parts: int) -> None:
    cores.set_budget(4)
    seen = np.zeros(n, dtype=np.int64)
    threads: set[str] = set()

    def fn(lo: int, hi: int) -> None:
        seen[lo:hi] += 1
        threads.add(threading.current_thread().name)

    cores.run_parts(fn, n, parts)
    assert seen.tolist() == [1] * n
    # The first part runs in the caller's thread, the others on helper threads.
    assert threading.current_thread().name in threads
    assert any(t.startswith("readshard-encode") for t in threads) == (min(parts, n) > 1)


def test_run_parts_raises_a_helpers_error_after_all_finish() -> None:
    cores.set_budget(3)
    done: list[int] = []

    def fn(lo: int, hi: int) -> None:
        if lo == 30:
            raise ValueError("part failed")
        done.append(lo)

    with pytest.raises(ValueError, match="part failed"):
        cores.run_parts(fn, 90, 3)
    assert sorted(done) == [0, 60]  # the other parts ran to the end first


@pytest.mark.parametrize("parts", [2, 3, 7])
def test_split_encode_gives_the_same_ids(parts: int) -> None:
    tok = BpeTokenizer("metagene-1", ASSETS / "metagene-1" / "tokenizer.json", fast_min_reads=0)
    fast = tok._fast_encoder()
    rng = np.random.default_rng(parts)
    reads = ["".join(rng.choice(list("ACGTN"), size=int(rng.integers(0, 152)))) for _ in range(3000)]
    reads[17] = "acgt"  # handled by Hugging Face: reported back whatever the split
    reads[2999] = "AC,GT"
    blob = "".join(reads).encode()
    offsets = np.concatenate([[0], np.cumsum([len(r) for r in reads])]).astype(np.int64)
    cores.set_budget(parts)
    one = fast.encode(blob, offsets, 40, 0, 4, 1)
    split = fast.encode(blob, offsets, 40, 0, 4, parts)
    for a, b in zip(one, split):
        np.testing.assert_array_equal(a, b)
    assert split[2].tolist() == [17, 2999]


def test_tokenizer_encode_splits_only_over_idle_cores() -> None:
    tok = BpeTokenizer("metagene-1", ASSETS / "metagene-1" / "tokenizer.json", fast_min_reads=0)
    reads = ["ACGT" * 30] * (3 * tok.PART_MIN_READS)
    blob = "".join(reads).encode()
    offsets = np.arange(len(reads) + 1, dtype=np.int64) * 120
    cores.set_budget(2)
    want = tok.encode(blob, offsets, 48)
    with cores.claim(2):  # another encode holds both cores: this one runs alone, same ids
        got = tok.encode(blob, offsets, 48)
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("fail", [False, True])
def test_convert_lends_its_jobs_and_gives_the_budget_back(reads, tmp_path, fail: bool) -> None:
    """A run's encodes may use --jobs cores; after it (even a failed one) the budget is as before."""
    from convert.pipeline import ConvertError, ConvertOptions, convert

    inp, mapping = reads
    cores.set_budget(1)
    opts = ConvertOptions(inputs=[str(inp)], out=str(tmp_path / "out"), mapping=str(mapping), progress=False,
                          jobs=3, tokenizer="metagene-1", reads_per_shard=1000 if not fail else 0)
    if fail:
        with pytest.raises(ConvertError):
            convert(opts)
    else:
        assert convert(opts)["records_in"] == 800
    assert cores.budget() == 1
