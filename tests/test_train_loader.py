"""The training loop reads through the documented fast path: ``loaders.ReadLoader`` (numpy
batches from real DataLoader workers, tensors made in the main process), giving exactly
``collate_batch`` of the sampler's batches, in the sampler's order."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from loaders import ReadLoader, ShardDataset, ShuffleBatchSampler, collate_batch
from train.loop import train_loader


@pytest.mark.parametrize("num_workers", [0, 2])
def test_training_batches_come_from_read_loader(split: tuple[Path, Path], num_workers: int) -> None:
    train, _ = split  # conftest's TINY_SPLIT: 120 train reads, 7 full batches of 16
    ds = ShardDataset(train)
    sampler = ShuffleBatchSampler(len(ds), 16, seed=3, drop_last=True)
    loader = train_loader(ds, sampler, num_workers=num_workers, seed=0, pin_memory=False)
    assert isinstance(loader, ReadLoader)
    got = list(loader)
    want = [collate_batch(ds.__getitems__(b)) for b in sampler]
    assert len(got) == len(want) == len(ds) // 16
    for g, w in zip(got, want):
        assert g.keys() == w.keys()
        for k in w:
            assert g[k].dtype == w[k].dtype and torch.equal(g[k], w[k]), k
