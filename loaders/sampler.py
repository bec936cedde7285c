"""Samplers over the shuffle order of :mod:`loaders.orders.shuffle` (epoch, cursor, resume).

The order itself (a keyed Feistel bijection with cycle-walking, ranks interleaved, the global
cursor as the checkpointed state) is a pure function documented in :mod:`loaders.orders.shuffle`;
the classes here keep the epoch and cursor state torch's ``Sampler`` protocol needs.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
from torch.utils.data import Sampler

from loaders.orders.shuffle import (
    BLOCK,
    FEISTEL_ROUNDS,
    feistel_encrypt,
    permutation_block,
    rank_count,
    rank_indices,
    round_keys,
)

__all__ = [
    "BLOCK",
    "FEISTEL_ROUNDS",
    "round_keys",
    "feistel_encrypt",
    "permutation_block",
    "rank_count",
    "rank_indices",
    "ShuffleState",
    "ShuffleSampler",
    "ShuffleBatchSampler",
]


class ShuffleState:
    """Epoch, seed and global cursor shared by the item, batch and balanced samplers (a base class)."""

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


class ShuffleSampler(ShuffleState, Sampler[int]):
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
        ShuffleState.__init__(self, num_reads, seed, rank, world_size, drop_last)

    def __len__(self) -> int:
        return self._count_from(self._start())

    def __iter__(self) -> Iterator[int]:
        for block in self._blocks():
            for index in block.tolist():
                self._yielded += 1
                yield index


class ShuffleBatchSampler(ShuffleState, Sampler[np.ndarray]):
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
        ShuffleState.__init__(self, num_reads, seed, rank, world_size, drop_last)
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
