"""The shuffle order (pure, no I/O): full uniform shuffling with O(1) memory: a keyed Feistel bijection with cycle-walking.

The order of an epoch is a pure function of ``(num_reads, seed, epoch)``; what one rank
sees is a pure function of ``(num_reads, seed, epoch, rank, world_size, cursor)``:

* :func:`permutation_block` evaluates the epoch's permutation at global positions
  ``start..stop-1``. Position ``p`` maps to ``E^k(p)`` where ``E`` is an 8-round Feistel
  network keyed by ``(seed, epoch)`` over ``2**bits >= num_reads`` values and ``k >= 1`` is
  the first power landing inside ``[0, num_reads)`` (cycle-walking). Cycle-walking a
  bijection of a superset gives a bijection of the subset, and since ``2**bits < 2 *
  num_reads`` the expected number of walks is below 2. Nothing of size ``num_reads`` is
  ever built.
* Ranks take interleaved global positions: from global ``cursor``, rank ``r`` of ``W``
  takes ``cursor + r, cursor + r + W, ...``. With ``drop_last=False`` positions past the
  end wrap (``p mod num_reads``) so every rank gets ``ceil((num_reads - cursor) / W)``
  indices, like :class:`torch.utils.data.DistributedSampler`; with ``drop_last=True`` each
  rank gets ``floor(...)`` and the tail is skipped.
* The checkpointed state is the *global* cursor (positions consumed by all ranks), so a
  run resumed with another world size continues the same global order.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FEISTEL_ROUNDS", "BLOCK", "round_keys", "feistel_encrypt", "permutation_block", "rank_count", "rank_indices", "keyed_rng"]

FEISTEL_ROUNDS = 8
# Indices are produced this many local steps at a time: bounded memory, amortised numpy calls.
BLOCK = 1 << 16

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def _u64(value: int) -> int:
    return int(value) % (1 << 64)


def round_keys(seed: int, epoch: int, rounds: int = FEISTEL_ROUNDS) -> np.ndarray:
    """Feistel round keys for ``(seed, epoch)`` (uint64), via numpy's SeedSequence."""
    return np.random.SeedSequence([_u64(seed), _u64(epoch), 0x5EED]).generate_state(rounds, np.uint64)


def _mix(x: np.ndarray, key: np.uint64) -> np.ndarray:
    # splitmix64 finaliser of (x ^ key): a cheap, well-mixing round function.
    z = x ^ key
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def _bits_for(n: int) -> int:
    return max(2, (int(n) - 1).bit_length())


def feistel_encrypt(x: np.ndarray, bits: int, keys: np.ndarray) -> np.ndarray:
    """Apply the keyed Feistel bijection of ``[0, 2**bits)`` to ``x`` (uint64 array).

    Unbalanced halves are allowed (odd ``bits``): each round XORs the high part with a
    keyed hash of the low part, then swaps the parts, so the split alternates.
    """
    x = np.asarray(x, dtype=np.uint64).copy()
    hi_bits, lo_bits = bits // 2, bits - bits // 2
    for key in keys:
        lo = x & np.uint64((1 << lo_bits) - 1)
        hi = x >> np.uint64(lo_bits)
        hi ^= _mix(lo, key) & np.uint64((1 << hi_bits) - 1)
        x = (lo << np.uint64(hi_bits)) | hi
        hi_bits, lo_bits = lo_bits, hi_bits
    return x


def _permute_positions(n: int, keys: np.ndarray, positions: np.ndarray) -> np.ndarray:
    bits = _bits_for(n)
    y = feistel_encrypt(positions, bits, keys)
    nn = np.uint64(n)
    bad = np.flatnonzero(y >= nn)
    while bad.size:  # cycle-walking: re-encrypt only what fell outside [0, n)
        walked = feistel_encrypt(y[bad], bits, keys)
        y[bad] = walked
        bad = bad[walked >= nn]
    return y.astype(np.int64)


def permutation_block(n: int, seed: int, epoch: int, start: int, stop: int) -> np.ndarray:
    """Entries ``start..stop-1`` of the epoch's permutation of ``range(n)``.

    Args:
        n: number of reads.
        seed: shuffle seed.
        epoch: epoch number (each epoch has its own independent permutation).
        start: first global position (0 <= start <= stop <= n).
        stop: one past the last position.

    Returns:
        int64 array of dataset indices, ``stop - start`` long.
    """
    if not 0 <= start <= stop <= n:
        raise ValueError(f"need 0 <= start <= stop <= n, got start={start} stop={stop} n={n}")
    if start == stop:
        return np.empty(0, dtype=np.int64)
    return _permute_positions(n, round_keys(seed, epoch), np.arange(start, stop, dtype=np.uint64))


def rank_count(n: int, world_size: int, cursor: int = 0, drop_last: bool = False) -> int:
    """How many indices each rank takes from global position ``cursor`` to the epoch's end."""
    remaining = max(0, int(n) - int(cursor))
    if drop_last:
        return remaining // world_size
    return -(-remaining // world_size)


def rank_indices(
    n: int, seed: int, epoch: int, rank: int, world_size: int, cursor: int, count: int
) -> np.ndarray:
    """The dataset indices rank ``rank`` takes for local steps ``0..count-1`` from ``cursor``.

    Local step ``j`` is global position ``cursor + rank + j * world_size``; positions at or
    past ``n`` wrap modulo ``n`` (padding so all ranks get the same count).

    Returns:
        int64 array of ``count`` dataset indices.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside 0..{world_size - 1}")
    if count <= 0 or n <= 0:
        return np.empty(0, dtype=np.int64)
    pos = (int(cursor) + int(rank) + int(world_size) * np.arange(count, dtype=np.int64)) % int(n)
    return _permute_positions(n, round_keys(seed, epoch), pos.astype(np.uint64))


def keyed_rng(*key: int) -> np.random.Generator:
    """A PCG64 generator that is a pure function of the integer ``key`` (each taken mod 2**64)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(k) % (1 << 64) for k in key])))
