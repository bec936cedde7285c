"""Class-balanced sampling past 2**24 reads: draw a class, then a uniform read of it.

``torch.multinomial`` refuses more than 2**24 categories, and weights per read would cost
memory per read. Two stages avoid both: the class is drawn from C weights, the read from
the class's stored CSR index (``class_offsets``/``class_rows`` of each shard). Draws are
with replacement. Global position ``p`` of an epoch is drawn from a random stream keyed by
``(seed, epoch, p // 65536)``, so the sample is a pure function of (seed, epoch, position)
and ranks (positions ``r, r+W, ...``) and resumes (global cursor) work as in
:class:`loaders.ShuffleSampler`.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from loaders.dataset import ShardDataset, ShardSubset
from loaders.orders.balanced import balanced_draws
from loaders.sampler import ShuffleState

__all__ = ["BalancedSampler", "balanced_draws"]


class BalancedSampler(ShuffleState, Sampler[int]):
    """Two-stage class-balanced sampler (with replacement), deterministic per (seed, epoch).

    Args:
        ds_or_class_counts: a :class:`ShardDataset` or :class:`ShardSubset` (indices refer
            to it), or (C,) class counts, in which case indices refer to a label-sorted
            layout where class ``c`` holds ``[sum(counts[:c]), sum(counts[:c+1]))``.
        num_samples: draws per epoch over all ranks (each rank takes ``ceil(num_samples / W)``).
        seed: sampler seed (same on every rank).
        class_weights: (C,) relative class weights; default uniform over non-empty classes.
            Empty classes never get drawn.
        rank: this process's rank.
        world_size: number of ranks.
    """

    def __init__(
        self,
        ds_or_class_counts: ShardDataset | ShardSubset | Sequence[int] | np.ndarray,
        num_samples: int,
        seed: int = 0,
        class_weights: Sequence[float] | np.ndarray | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        ShuffleState.__init__(self, num_samples, seed, rank, world_size, drop_last=False)
        self._ds: ShardDataset | None = None
        self._subset_order: np.ndarray | None = None
        source = ds_or_class_counts
        if isinstance(source, ShardDataset):
            self._ds = source
            counts = source.class_counts
        elif isinstance(source, ShardSubset):
            counts = source.class_counts
            self._subset_order = np.argsort(source.labels, kind="stable")
        else:
            counts = np.asarray(source, dtype=np.int64)
            if counts.ndim != 1 or (counts < 0).any():
                raise ValueError("class counts must be a 1-D array of non-negative integers")
        self.class_counts = np.asarray(counts, dtype=np.int64)
        self._class_start = np.r_[0, np.cumsum(self.class_counts)[:-1]].astype(np.int64)
        C = self.class_counts.size
        if class_weights is None:
            w = (self.class_counts > 0).astype(np.float64)
        else:
            w = np.asarray(class_weights, dtype=np.float64)
            if w.shape != (C,) or not np.isfinite(w).all() or (w < 0).any():
                raise ValueError(f"class_weights must be {C} finite non-negative numbers")
            w = np.where(self.class_counts > 0, w, 0.0)
        if not w.sum() > 0:
            raise ValueError("no class with reads has a positive weight: nothing to sample")
        self.class_probs = w / w.sum()
        self._cdf = np.cumsum(self.class_probs)
        self._cdf[-1] = 1.0

    def __len__(self) -> int:
        return self._count_from(self._start())

    def _indices(self, cursor: int, count: int) -> np.ndarray:
        pos = cursor + self.rank + self.world_size * np.arange(count, dtype=np.int64)
        cls, within = balanced_draws(self.class_counts, self._cdf, self.seed, self.epoch, pos)
        if self._ds is not None:
            return self._ds.class_positions_to_indices(cls, within)
        flat = self._class_start[cls] + within
        return flat if self._subset_order is None else self._subset_order[flat]

    def __iter__(self) -> Iterator[int]:
        for block in self._blocks():
            for index in block.tolist():
                self._yielded += 1
                yield index

    def state_dict(self, consumed: int | None = None) -> dict[str, Any]:
        """Like :meth:`ShuffleSampler.state_dict` (``num_reads`` holds ``num_samples``)."""
        return super().state_dict(consumed)
