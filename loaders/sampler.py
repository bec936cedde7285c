"""Full uniform shuffling with O(1) memory: a keyed Feistel bijection with cycle-walking.

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

from typing import Any, Iterator

import numpy as np
from torch.utils.data import Sampler

__all__ = [
    "FEISTEL_ROUNDS",
    "round_keys",
    "feistel_encrypt",
    "permutation_block",
    "rank_count",
    "rank_indices",
    "ShuffleSampler",
    "ShuffleBatchSampler",
]

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


class _ShuffleState:
    """Epoch, seed and global cursor shared by the item and batch samplers."""

    def __init__(self, num_reads: int, seed: int, rank: int, world_size: int, drop_last: bool) -> None:
        if num_reads < 0:
            raise ValueError(f"num_reads must be >= 0, got {num_reads}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} / world_size {world_size} is not a valid placement")
        self.num_reads = int(num_reads)
        self.seed = int(seed)
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        self._cursor = 0  # global position where the next iteration starts
        self._iter_start = 0
        self._yielded = 0  # local steps handed out by the running iteration
        self._resumed = False

    # -- state ---------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's permutation; a new epoch starts at cursor 0.

        Calling it again with the current epoch (as resume loops do) keeps the cursor.
        """
        if int(epoch) != self.epoch:
            self.epoch = int(epoch)
            self._cursor = 0
            self._iter_start = 0
            self._yielded = 0
            self._resumed = False

    @property
    def cursor(self) -> int:
        """Global position reached by the running (or last) iteration."""
        return self._iter_start + self._yielded * self.world_size

    def _start(self) -> int:
        # A finished epoch iterated again replays it (torch samplers are re-iterable),
        # except right after load_state_dict, where the resumed position wins.
        if self._count_from(self._cursor) == 0 and not self._resumed:
            return 0
        return self._cursor

    def _local_steps(self, consumed: int | None) -> int:
        return self._yielded if consumed is None else int(consumed)

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        """Checkpointable state.

        Args:
            consumed: local steps (items; batches for the batch sampler) of the running
                iteration that the training loop actually consumed. A DataLoader prefetches,
                so the sampler has usually handed out more than was trained on; pass the
                loop's own count for an exact resume. Default: what was handed out.

        Returns:
            ``{"epoch", "seed", "cursor", "num_reads", "world_size", "drop_last"}``;
            ``cursor`` is the global position in the epoch's permutation.
        """
        steps = self._local_steps(consumed)
        cursor = self._iter_start + steps * self.world_size
        return {
            "epoch": self.epoch,
            "seed": self.seed,
            "cursor": int(cursor),
            "num_reads": self.num_reads,
            "world_size": self.world_size,
            "drop_last": self.drop_last,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at ``state``'s epoch and global cursor (any world size: elastic)."""
        if int(state["num_reads"]) != self.num_reads:
            raise ValueError(
                f"sampler state is for {state['num_reads']} reads, this dataset has {self.num_reads}; "
                "resume on the same dataset or start a new run"
            )
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self._cursor = int(state["cursor"])
        self._iter_start = self._cursor
        self._yielded = 0
        self._resumed = True

    # -- iteration -----------------------------------------------------------------------
    def _count_from(self, start: int) -> int:
        return rank_count(self.num_reads, self.world_size, start, self.drop_last)

    def _indices(self, cursor: int, count: int) -> np.ndarray:
        return rank_indices(self.num_reads, self.seed, self.epoch, self.rank, self.world_size, cursor, count)

    def _blocks(self) -> Iterator[np.ndarray]:
        start = self._start()
        self._resumed = False
        self._iter_start = start
        self._yielded = 0
        self._cursor = start
        total = self._count_from(start)
        done = 0
        while done < total:
            count = min(BLOCK, total - done)
            cur = start + done * self.world_size
            yield self._indices(cur, count)
            done += count
        self._cursor = start + total * self.world_size


class ShuffleSampler(_ShuffleState, Sampler[int]):
    """A full uniform shuffle of ``range(num_reads)`` per (seed, epoch), sharded over ranks.

    Memory does not grow with ``num_reads`` (indices are computed 65,536 at a time by a
    keyed Feistel bijection). Rank ``r`` of ``W`` takes global positions ``r, r+W, ...``;
    ``state_dict()`` holds the global cursor, so ``load_state_dict`` resumes exactly, in
    O(1), with the same or another world size.

    Args:
        num_reads: dataset length.
        seed: shuffle seed (same on every rank).
        rank: this process's rank.
        world_size: number of ranks.
        drop_last: skip the tail so ranks get ``floor`` instead of padding to ``ceil``.
    """

    def __init__(
        self, num_reads: int, seed: int = 0, rank: int = 0, world_size: int = 1, drop_last: bool = False
    ) -> None:
        _ShuffleState.__init__(self, num_reads, seed, rank, world_size, drop_last)

    def __len__(self) -> int:
        return self._count_from(self._start())

    def __iter__(self) -> Iterator[int]:
        for block in self._blocks():
            for index in block.tolist():
                self._yielded += 1
                yield index


class ShuffleBatchSampler(_ShuffleState, Sampler[np.ndarray]):
    """Batches of :class:`ShuffleSampler`'s order: yields int64 index arrays.

    Use with ``DataLoader(ds, batch_sampler=..., collate_fn=collate_batch)`` so each batch is
    one ``ds.__getitems__`` call. ``drop_last`` both skips the rank tail and drops a final
    partial batch. ``state_dict(consumed=...)`` counts batches.

    Args:
        num_reads: dataset length.
        batch_size: indices per batch (per rank).
        seed: shuffle seed.
        rank: this process's rank.
        world_size: number of ranks.
        drop_last: see above.
    """

    def __init__(
        self,
        num_reads: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        _ShuffleState.__init__(self, num_reads, seed, rank, world_size, drop_last)
        self.batch_size = int(batch_size)

    def _local_steps(self, consumed: int | None) -> int:
        if consumed is None:
            return self._yielded
        total = self._count_from(self._iter_start)
        return min(int(consumed) * self.batch_size, total)

    def __len__(self) -> int:
        count = self._count_from(self._start())
        if self.drop_last:
            return count // self.batch_size
        return -(-count // self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        bs = self.batch_size
        carry = np.empty(0, dtype=np.int64)
        for block in self._blocks():
            buf = np.concatenate([carry, block]) if carry.size else block
            full = (buf.size // bs) * bs
            for a in range(0, full, bs):
                self._yielded += bs
                yield buf[a : a + bs]
            carry = buf[full:]
        if carry.size and not self.drop_last:
            self._yielded += carry.size
            yield carry
        elif carry.size:
            # the dropped partial batch still counts as consumed for the global cursor
            self._yielded += carry.size
