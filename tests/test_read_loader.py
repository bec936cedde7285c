"""ReadLoader: numpy in the workers, tensors in the main process; same batches as collate_batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from _loader_helpers import build_dataset
from loaders import ReadLoader, ShardDataset, ShuffleBatchSampler, collate_batch, to_tensors, trim_batch


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    built = build_dataset(tmp_path_factory.mktemp("rl") / "ds", shard_sizes=(300, 0, 411, 89), seed=21)
    return ShardDataset(built.path)


def test_halves_compose_to_collate_batch(ds):
    batch = ds.__getitems__(np.array([3, 500, 12, 799]))
    trimmed = trim_batch(batch)
    assert trimmed["input_ids"].dtype == np.int16  # widened late, in the main process
    a, b = to_tensors(trimmed), collate_batch(batch)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("workers, context", [(0, None), (2, "fork"), pytest.param(2, "spawn", marks=pytest.mark.slow)])
def test_same_batches_as_plain_loader(ds, workers, context):
    ds[0]  # touched in the parent first: workers must open their own maps
    sampler = ShuffleBatchSampler(len(ds), 64, seed=5)
    expect = [collate_batch(ds.__getitems__(idx)) for idx in ShuffleBatchSampler(len(ds), 64, seed=5)]
    loader = ReadLoader(ds, sampler, num_workers=workers, multiprocessing_context=context)
    got = list(loader)
    assert len(got) == len(expect) == len(loader)
    for g, e in zip(got, expect):
        assert g["input_ids"].dtype == torch.int64
        assert all(torch.equal(g[k], e[k]) for k in e)


def test_epochs_through_batch_sampler(ds):
    sampler = ShuffleBatchSampler(len(ds), 100, seed=6)
    loader = ReadLoader(ds, sampler, num_workers=2, multiprocessing_context="fork", persistent_workers=True)
    firsts = []
    for epoch in range(2):
        loader.batch_sampler.set_epoch(epoch)
        labels = torch.cat([b["labels"] for b in loader])
        assert labels.numel() == len(ds)
        firsts.append(labels)
    assert not torch.equal(firsts[0], firsts[1])
