"""ShuffleSampler / ShuffleBatchSampler: the order is a pure, tested function."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loaders import ShuffleBatchSampler, ShuffleSampler, permutation_block, rank_indices
from loaders.sampler import feistel_encrypt, rank_count, round_keys

sizes = st.integers(min_value=0, max_value=5000)
seeds = st.integers(min_value=0, max_value=2**63)
epochs = st.integers(min_value=0, max_value=1000)
FAST = settings(max_examples=60, deadline=None)


@FAST
@given(n=sizes, seed=seeds, epoch=epochs)
def test_is_a_permutation(n, seed, epoch):
    perm = permutation_block(n, seed, epoch, 0, n)
    assert perm.dtype == np.int64
    np.testing.assert_array_equal(np.sort(perm), np.arange(n))


@FAST
@given(bits=st.integers(2, 40), seed=seeds)
def test_feistel_is_a_bijection(bits, seed):
    keys = round_keys(seed, 0)
    if bits <= 14:
        x = np.arange(1 << bits, dtype=np.uint64)
        y = feistel_encrypt(x, bits, keys)
        np.testing.assert_array_equal(np.sort(y), x)
    else:  # no collisions on a sample, and values stay in range
        x = np.random.default_rng(seed % 2**32).choice(1 << bits, 4000, replace=False).astype(np.uint64)
        y = feistel_encrypt(x, bits, keys)
        assert np.unique(y).size == x.size and int(y.max()) < (1 << bits)


@FAST
@given(n=st.integers(1, 5000), seed=seeds, epoch=epochs, data=st.data())
def test_deterministic_and_blocks_agree(n, seed, epoch, data):
    a = data.draw(st.integers(0, n))
    b = data.draw(st.integers(a, n))
    full = permutation_block(n, seed, epoch, 0, n)
    np.testing.assert_array_equal(permutation_block(n, seed, epoch, a, b), full[a:b])
    np.testing.assert_array_equal(permutation_block(n, seed, epoch, 0, n), full)


@FAST
@given(n=st.integers(200, 5000), seed=seeds, epoch=epochs)
def test_different_per_epoch_and_seed(n, seed, epoch):
    p = permutation_block(n, seed, epoch, 0, n)
    assert not np.array_equal(p, permutation_block(n, seed, epoch + 1, 0, n))
    assert not np.array_equal(p, permutation_block(n, seed + 1, epoch, 0, n))
    assert not np.array_equal(p, np.arange(n))


def test_uniformity_of_positions():
    """Where read 0 lands over many epochs is close to uniform (chi-square)."""
    n, trials = 64, 6400
    where = np.array([int(np.flatnonzero(permutation_block(n, 7, e, 0, n) == 0)[0]) for e in range(trials)])
    counts = np.bincount(where, minlength=n)
    chi2 = float(((counts - trials / n) ** 2 / (trials / n)).sum())
    assert chi2 < 120, chi2  # 63 dof: p ~ 1e-5 at 120


def _ranks(n, world, seed, epoch, drop_last, cursor=0):
    out = []
    for r in range(world):
        s = ShuffleSampler(n, seed, rank=r, world_size=world, drop_last=drop_last)
        s.set_epoch(epoch)
        if cursor:
            s.load_state_dict({"epoch": epoch, "seed": seed, "cursor": cursor, "num_reads": n})
        out.append(np.array(list(s), dtype=np.int64))
    return out


@FAST
@given(n=st.integers(1, 3000), world=st.integers(1, 9), seed=seeds, epoch=epochs, drop_last=st.booleans())
def test_ranks_disjoint_and_complete(n, world, seed, epoch, drop_last):
    parts = _ranks(n, world, seed, epoch, drop_last)
    assert len({p.size for p in parts}) == 1  # equal counts: no DDP hang
    allidx = np.concatenate(parts)
    perm = permutation_block(n, seed, epoch, 0, n)
    if drop_last:
        assert allidx.size == (n // world) * world
        assert np.unique(allidx).size == allidx.size
    else:
        assert parts[0].size == -(-n // world)
        np.testing.assert_array_equal(np.unique(allidx), np.arange(n))
        # interleaving the ranks gives back the global order, padded by wrapping
        inter = np.stack(parts, axis=1).reshape(-1)
        np.testing.assert_array_equal(inter[:n], perm)
        np.testing.assert_array_equal(inter[n:], perm[np.arange(inter.size - n) % n])


@FAST
@given(n=st.integers(1, 3000), seed=seeds, epoch=epochs, data=st.data())
def test_resume_at_k_equals_suffix(n, seed, epoch, data):
    s = ShuffleSampler(n, seed)
    s.set_epoch(epoch)
    full = list(s)
    k = data.draw(st.integers(0, n))
    s2 = ShuffleSampler(n, seed)
    s2.set_epoch(epoch)
    it = iter(s2)
    head = [next(it) for _ in range(k)]
    state = s2.state_dict()
    assert state["cursor"] == k and state["epoch"] == epoch and state["seed"] == seed
    s3 = ShuffleSampler(n, 12345)  # seed comes from the state
    s3.load_state_dict(state)
    s3.set_epoch(epoch)  # a resume loop calling set_epoch again must not reset the cursor
    assert len(s3) == n - k
    assert head + list(s3) == full


@FAST
@given(n=st.integers(1, 3000), w1=st.integers(1, 6), w2=st.integers(1, 6), seed=seeds, data=st.data())
def test_elastic_world_size_change(n, w1, w2, seed, data):
    """Stop after k steps per rank at world size w1; resume at w2: the global order continues."""
    k = data.draw(st.integers(0, rank_count(n, w1)))
    states, seen = [], []
    for r in range(w1):
        s = ShuffleSampler(n, seed, rank=r, world_size=w1)
        it = iter(s)
        seen.extend(next(it) for _ in range(k))
        states.append(s.state_dict())
    assert len({st_["cursor"] for st_ in states}) == 1
    cursor = states[0]["cursor"]
    rest = []
    for r in range(w2):
        s = ShuffleSampler(n, seed, rank=r, world_size=w2)
        s.load_state_dict(states[0])
        rest.append(np.array(list(s), dtype=np.int64))
    perm = permutation_block(n, seed, 0, 0, n)
    if cursor < n:
        inter = np.stack(rest, axis=1).reshape(-1)
        np.testing.assert_array_equal(inter[: n - cursor], perm[cursor:])
        assert set(seen) | set(inter.tolist()) == set(range(n))


def test_state_dict_consumed_accounts_for_prefetch():
    s = ShuffleSampler(100, 3, rank=1, world_size=2)
    it = iter(s)
    taken = [next(it) for _ in range(10)]  # handed out (e.g. prefetched)
    assert s.state_dict()["cursor"] == 20
    state = s.state_dict(consumed=4)  # only 4 trained on
    assert state["cursor"] == 8
    s2 = ShuffleSampler(100, 3, rank=1, world_size=2)
    s2.load_state_dict(state)
    assert list(s2)[:6] == taken[4:]


def test_epoch_end_and_reiteration():
    s = ShuffleSampler(10, 0)
    first = list(s)
    assert s.state_dict()["cursor"] == 10
    assert list(s) == first  # re-iterating a finished epoch replays it, like torch samplers
    s.load_state_dict(s.state_dict())
    assert list(s) == []  # resuming a finished epoch yields nothing...
    s.set_epoch(1)
    assert sorted(list(s)) == list(range(10)) and list(s) != first  # ...until the next epoch


@FAST
@given(n=st.integers(0, 2000), bs=st.integers(1, 70), world=st.integers(1, 4), seed=seeds,
       drop_last=st.booleans(), epoch=epochs)
def test_batch_sampler_matches_item_sampler(n, bs, world, seed, drop_last, epoch):
    for r in range(world):
        items = ShuffleSampler(n, seed, rank=r, world_size=world, drop_last=drop_last)
        batches = ShuffleBatchSampler(n, bs, seed, rank=r, world_size=world, drop_last=drop_last)
        items.set_epoch(epoch)
        batches.set_epoch(epoch)
        got = list(batches)
        assert len(got) == len(batches)
        flat = np.concatenate(got) if got else np.empty(0, np.int64)
        expect = np.array(list(items), dtype=np.int64)
        if drop_last:
            expect = expect[: (expect.size // bs) * bs]
            assert all(b.size == bs for b in got)
        np.testing.assert_array_equal(flat, expect)


@FAST
@given(n=st.integers(1, 2000), bs=st.integers(1, 50), seed=seeds, data=st.data())
def test_batch_sampler_resume(n, bs, seed, data):
    full = [b.tolist() for b in ShuffleBatchSampler(n, bs, seed, rank=0, world_size=2)]
    k = data.draw(st.integers(0, len(full)))
    s = ShuffleBatchSampler(n, bs, seed, rank=0, world_size=2)
    it = iter(s)
    for _ in range(k + 1 if k < len(full) else k):
        next(it)  # one extra batch prefetched
    state = s.state_dict(consumed=k)
    s2 = ShuffleBatchSampler(n, bs, seed, rank=0, world_size=2)
    s2.load_state_dict(state)
    assert [b.tolist() for b in s2] == full[k:]


def test_rank_indices_is_pure_and_strided():
    n, seed, epoch = 1000, 11, 2
    perm = permutation_block(n, seed, epoch, 0, n)
    got = rank_indices(n, seed, epoch, rank=2, world_size=3, cursor=30, count=50)
    np.testing.assert_array_equal(got, perm[(30 + 2 + 3 * np.arange(50)) % n])


def test_memory_does_not_grow_with_reads():
    """2**40 reads: the sampler works and holds no per-read state."""
    import pickle

    s = ShuffleSampler(2**40, 1, rank=3, world_size=8)
    assert len(s) == 2**37
    it = iter(s)
    head = [next(it) for _ in range(1000)]
    assert all(0 <= x < 2**40 for x in head) and len(set(head)) == 1000
    assert len(pickle.dumps(s)) < 2000
    assert permutation_block(2**40, 1, 0, 2**40 - 5, 2**40).size == 5


@pytest.mark.parametrize("args", [
    dict(num_reads=-1), dict(num_reads=5, rank=2, world_size=2), dict(num_reads=5, world_size=0),
])
def test_invalid_arguments(args):
    with pytest.raises(ValueError):
        ShuffleSampler(**args)


def test_load_state_for_other_dataset_refused():
    s = ShuffleSampler(10, 0)
    with pytest.raises(ValueError, match="same dataset"):
        s.load_state_dict({"epoch": 0, "seed": 0, "cursor": 3, "num_reads": 11})
