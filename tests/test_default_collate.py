"""Plain PyTorch and Hugging Face defaults give correct batches (no collate_fn given).

``__getitems__`` returns a ReadBatch: item dicts by position (torch's contract), the
gathered arrays by key (the fast path). Before, it returned a dict and torch's
default_collate failed with ``KeyError: 0``.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from _loader_helpers import tiny_trainer
from loaders import ReadBatch, collate_batch


def _row_key(ids: np.ndarray) -> bytes:
    return np.asarray(ids, dtype=np.int64).tobytes()


def _check_batch(out: dict, four_shards) -> None:
    """Every row is a dataset row (full width, int64) with its own mask and label."""
    a = four_shards.arrays
    by_row = {_row_key(r): k for k, r in enumerate(a["input_ids"])}
    assert set(out) == {"input_ids", "attention_mask", "labels"}
    for key in out:
        assert out[key].dtype == torch.int64, key
    assert out["input_ids"].shape[1] == out["attention_mask"].shape[1] == four_shards.max_length
    for row, mask, label in zip(out["input_ids"].numpy(), out["attention_mask"].numpy(), out["labels"].numpy()):
        k = by_row[_row_key(row)]
        assert int(mask.sum()) == int(a["lengths"][k]) and mask[: a["lengths"][k]].all()
        assert label == a["labels"][k]


@pytest.mark.parametrize("workers, context", [(0, None), (2, "fork"), pytest.param(2, "spawn", marks=pytest.mark.slow)])
def test_plain_dataloader_default_collate(four_ds, four_shards, workers, context) -> None:
    loader = DataLoader(four_ds, batch_size=256, shuffle=True, num_workers=workers, multiprocessing_context=context)
    seen = []
    for out in loader:
        _check_batch(out, four_shards)
        seen.append(out["labels"].numpy())
    labels = np.concatenate(seen)
    assert labels.size == len(four_ds)
    np.testing.assert_array_equal(np.sort(labels), np.sort(four_shards.arrays["labels"]))


def test_plain_dataloader_in_order(four_ds, four_shards) -> None:
    out = next(iter(DataLoader(four_ds, batch_size=64)))
    a = four_shards.arrays
    np.testing.assert_array_equal(out["input_ids"].numpy(), a["input_ids"][:64])
    np.testing.assert_array_equal(out["attention_mask"].numpy().sum(1), a["lengths"][:64])
    np.testing.assert_array_equal(out["labels"].numpy(), a["labels"][:64])


def test_read_batch_is_a_list_of_items_and_a_dict_of_arrays(four_ds, four_shards) -> None:
    idx = np.array([3, 700, 799, 0])
    batch = four_ds.__getitems__(idx)
    assert isinstance(batch, ReadBatch) and len(batch) == 4
    assert batch["input_ids"].dtype == np.int16 and set(dict(batch)) == {"input_ids", "lengths", "labels"}
    for k, item in enumerate(batch):
        want = four_ds[int(idx[k])]
        assert item.keys() == want.keys()
        np.testing.assert_array_equal(item["input_ids"], want["input_ids"])
        np.testing.assert_array_equal(item["attention_mask"], want["attention_mask"])
        assert item["labels"] == want["labels"] == batch[k]["labels"]
    assert batch[-1]["labels"] == four_ds[0]["labels"]
    with pytest.raises(IndexError):
        batch[4]
    with pytest.raises(TypeError):
        batch[True]
    again = pickle.loads(pickle.dumps(batch))
    assert all(np.array_equal(again[k], batch[k]) for k in batch.keys())
    # the fast collate and the per-item one agree
    fast, slow = collate_batch(batch), collate_batch(list(batch))
    assert all(torch.equal(fast[k], slow[k]) for k in fast)


def test_hf_trainer_default_collator(four_ds, four_shards, tmp_path) -> None:
    pytest.importorskip("transformers")
    trainer = tiny_trainer(four_ds, tmp_path / "out")  # every default
    batch = next(iter(trainer.get_train_dataloader()))
    _check_batch({k: batch[k] for k in ("input_ids", "attention_mask", "labels")}, four_shards)
    result = trainer.train()
    assert result.global_step == 3 and np.isfinite(result.training_loss)
