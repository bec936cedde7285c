"""collate_batch with real DataLoaders (0 and 2 workers, fork and spawn) and the HF Trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from _loader_helpers import tiny_trainer
from loaders import ShuffleBatchSampler, ShuffleSampler, collate_batch


def _check(out, four_shards, idx):
    a = four_shards.arrays
    width = int(a["lengths"][idx].max())
    assert out["input_ids"].dtype == out["attention_mask"].dtype == out["labels"].dtype == torch.int64
    assert out["input_ids"].shape == out["attention_mask"].shape == (len(idx), width)
    np.testing.assert_array_equal(out["input_ids"].numpy(), a["input_ids"][idx, :width])
    np.testing.assert_array_equal(out["attention_mask"].sum(1).numpy(), a["lengths"][idx])
    np.testing.assert_array_equal(out["labels"].numpy(), a["labels"][idx])


def test_both_forms_agree_and_trim(four_ds, four_shards):
    idx = np.array([5, 400, 799, 0, 300])
    from_batch = collate_batch(four_ds.__getitems__(idx))
    from_items = collate_batch([four_ds[int(i)] for i in idx])
    _check(from_batch, four_shards, idx)
    for k in from_batch:
        assert torch.equal(from_batch[k], from_items[k])
    assert from_batch["input_ids"].shape[1] < four_shards.max_length or four_shards.arrays["lengths"][idx].max() == four_shards.max_length


def test_items_as_tensors_and_index_passthrough(four_ds, four_shards):
    items = [{k: (torch.as_tensor(v) if k != "labels" else v) for k, v in four_ds[i].items()} for i in (1, 2)]
    _check(collate_batch(items), four_shards, np.array([1, 2]))
    batch = dict(four_ds.__getitems__([7, 8]), index=np.array([7, 8]))
    assert collate_batch(batch)["index"].tolist() == [7, 8]


@pytest.mark.parametrize("bad", [["input_ids", "lengths", "labels"], []])
def test_helpful_error_for_split_batch(bad):
    with pytest.raises(TypeError, match="remove_unused_columns=False"):
        collate_batch(bad)


LOADERS = [
    pytest.param(0, None, id="0-workers"),
    pytest.param(2, "fork", id="2-fork"),
    pytest.param(2, "spawn", id="2-spawn", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("workers, context", LOADERS)
def test_batch_sampler_loader(four_ds, four_shards, workers, context):
    four_ds[0]  # touched in the parent first: workers must open their own maps
    sampler = ShuffleBatchSampler(len(four_ds), 64, seed=1)
    expect = [b.copy() for b in sampler]
    loader = DataLoader(four_ds, batch_sampler=sampler, collate_fn=collate_batch, num_workers=workers,
                        multiprocessing_context=context)
    got = list(loader)
    assert len(got) == len(expect) == -(-len(four_ds) // 64)
    for out, idx in zip(got, expect):
        _check(out, four_shards, idx)
    assert np.array_equal(np.sort(np.concatenate(expect)), np.arange(len(four_ds)))


@pytest.mark.parametrize("workers, context", LOADERS[:2])
def test_item_sampler_loader(four_ds, four_shards, workers, context):
    sampler = ShuffleSampler(len(four_ds), seed=2)
    order = np.array(list(sampler))
    loader = DataLoader(four_ds, batch_size=50, sampler=sampler, collate_fn=collate_batch, num_workers=workers,
                        multiprocessing_context=context)
    seen = 0
    for k, out in enumerate(loader):
        idx = order[k * 50 : (k + 1) * 50]
        _check(out, four_shards, idx)
        seen += len(idx)
    assert seen == len(four_ds)


def test_persistent_workers_across_epochs(four_ds, four_shards):
    sampler = ShuffleBatchSampler(len(four_ds), 100, seed=3)
    loader = DataLoader(four_ds, batch_sampler=sampler, collate_fn=collate_batch, num_workers=2,
                        multiprocessing_context="fork", persistent_workers=True, pin_memory=False)
    epochs = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        expect = [b.copy() for b in ShuffleBatchSampler(len(four_ds), 100, seed=3)] if epoch == 0 else None
        labels = []
        for k, out in enumerate(loader):
            if expect is not None:
                _check(out, four_shards, expect[k])
            labels.append(out["labels"])
        epochs.append(torch.cat(labels))
    for lab in epochs:
        assert np.array_equal(np.sort(lab.numpy()), np.sort(four_shards.arrays["labels"]))
    assert not torch.equal(epochs[0], epochs[1])


def test_hf_trainer(four_ds, tmp_path):
    pytest.importorskip("transformers")
    trainer = tiny_trainer(four_ds, tmp_path / "out", collate_batch, remove_unused_columns=False)
    result = trainer.train()
    assert result.global_step == 3 and np.isfinite(result.training_loss)
