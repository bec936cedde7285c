"""collate_batch with real DataLoaders (0 and 2 workers, fork and spawn) and the HF Trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from _loader_helpers import build_dataset
from loaders import ShardDataset, ShuffleBatchSampler, ShuffleSampler, collate_batch


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return build_dataset(tmp_path_factory.mktemp("dl") / "ds", shard_sizes=(300, 0, 411, 89), seed=13)


@pytest.fixture(scope="module")
def ds(built):
    return ShardDataset(built.path)


def _check(out, built, idx):
    a = built.arrays
    width = int(a["lengths"][idx].max())
    assert out["input_ids"].dtype == out["attention_mask"].dtype == out["labels"].dtype == torch.int64
    assert out["input_ids"].shape == out["attention_mask"].shape == (len(idx), width)
    np.testing.assert_array_equal(out["input_ids"].numpy(), a["input_ids"][idx, :width])
    np.testing.assert_array_equal(out["attention_mask"].sum(1).numpy(), a["lengths"][idx])
    np.testing.assert_array_equal(out["labels"].numpy(), a["labels"][idx])


def test_both_forms_agree_and_trim(ds, built):
    idx = np.array([5, 400, 799, 0, 300])
    from_batch = collate_batch(ds.__getitems__(idx))
    from_items = collate_batch([ds[int(i)] for i in idx])
    _check(from_batch, built, idx)
    for k in from_batch:
        assert torch.equal(from_batch[k], from_items[k])
    assert from_batch["input_ids"].shape[1] < built.max_length or built.arrays["lengths"][idx].max() == built.max_length


def test_items_as_tensors_and_index_passthrough(ds, built):
    items = [{k: (torch.as_tensor(v) if k != "labels" else v) for k, v in ds[i].items()} for i in (1, 2)]
    _check(collate_batch(items), built, np.array([1, 2]))
    batch = dict(ds.__getitems__([7, 8]), index=np.array([7, 8]))
    assert collate_batch(batch)["index"].tolist() == [7, 8]


@pytest.mark.parametrize("bad", [["input_ids", "lengths", "labels"], []])
def test_helpful_error_for_split_batch(bad):
    with pytest.raises(TypeError, match="remove_unused_columns=False"):
        collate_batch(bad)


LOADERS = [
    pytest.param(0, None, id="0-workers"),
    pytest.param(2, "fork", id="2-fork"),
    pytest.param(2, "spawn", id="2-spawn"),
]


@pytest.mark.parametrize("workers, context", LOADERS)
def test_batch_sampler_loader(ds, built, workers, context):
    ds[0]  # touched in the parent first: workers must open their own maps
    sampler = ShuffleBatchSampler(len(ds), 64, seed=1)
    expect = [b.copy() for b in sampler]
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate_batch, num_workers=workers,
                        multiprocessing_context=context)
    got = list(loader)
    assert len(got) == len(expect) == -(-len(ds) // 64)
    for out, idx in zip(got, expect):
        _check(out, built, idx)
    assert np.array_equal(np.sort(np.concatenate(expect)), np.arange(len(ds)))


@pytest.mark.parametrize("workers, context", LOADERS[:2])
def test_item_sampler_loader(ds, built, workers, context):
    sampler = ShuffleSampler(len(ds), seed=2)
    order = np.array(list(sampler))
    loader = DataLoader(ds, batch_size=50, sampler=sampler, collate_fn=collate_batch, num_workers=workers,
                        multiprocessing_context=context)
    seen = 0
    for k, out in enumerate(loader):
        idx = order[k * 50 : (k + 1) * 50]
        _check(out, built, idx)
        seen += len(idx)
    assert seen == len(ds)


def test_persistent_workers_across_epochs(ds, built):
    sampler = ShuffleBatchSampler(len(ds), 100, seed=3)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate_batch, num_workers=2,
                        multiprocessing_context="fork", persistent_workers=True, pin_memory=False)
    epochs = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        expect = [b.copy() for b in ShuffleBatchSampler(len(ds), 100, seed=3)] if epoch == 0 else None
        labels = []
        for k, out in enumerate(loader):
            if expect is not None:
                _check(out, built, expect[k])
            labels.append(out["labels"])
        epochs.append(torch.cat(labels))
    for lab in epochs:
        assert np.array_equal(np.sort(lab.numpy()), np.sort(built.arrays["labels"]))
    assert not torch.equal(epochs[0], epochs[1])


def test_hf_trainer(ds, tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=1024, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=64, num_labels=ds.num_classes,
                                     pad_token_id=ds.pad_id)
    model = transformers.BertForSequenceClassification(config)
    args = transformers.TrainingArguments(output_dir=str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=16,
                                          remove_unused_columns=False, report_to=[], use_cpu=True,
                                          dataloader_num_workers=0, save_strategy="no", logging_steps=1)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=ds, data_collator=collate_batch)
    result = trainer.train()
    assert result.global_step == 3 and np.isfinite(result.training_loss)
