"""The loaders on datasets written by the real converter (`python -m convert`)."""

from __future__ import annotations

import numpy as np
import pytest
from torch.utils.data import DataLoader

from conftest import convert_cli, write_reads
from loaders import ShardDataset, ShuffleBatchSampler, collate_batch


@pytest.fixture(scope="module", params=["mmap", "compressed"])
def converted(request, tmp_path_factory):
    root = tmp_path_factory.mktemp(f"conv-{request.param}")
    reads, mapping = write_reads(root / "in" / "reads.fa", n_per_class=300, classes=4, seed=2)
    out = root / "ds"
    proc = convert_cli(reads, "--mapping", mapping, "--out", out, "--layout", request.param,
                       "--reads-per-shard", "250", "--no-progress")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_converted_dataset_serves_consistent_reads(converted):
    ds = ShardDataset(converted, verify=True)
    assert len(ds) == 1200 and ds.num_shards == 5 and ds.num_classes == 4
    # header class ids map to labels exactly as the manifest says
    label_cids = np.array(ds.manifest["label_class_ids"])
    np.testing.assert_array_equal(label_cids[ds.labels], ds.class_ids)
    np.testing.assert_array_equal(ds.class_counts, [300, 300, 300, 300])
    idx = np.random.default_rng(0).permutation(len(ds))[:200]
    batch = ds.__getitems__(idx)
    for k in (0, 57, 199):
        item = ds[int(idx[k])]
        np.testing.assert_array_equal(item["input_ids"], batch["input_ids"][k])
        assert item["attention_mask"].sum() == batch["lengths"][k]
        assert item["labels"] == batch["labels"][k]
        # padding after the stored length is the tokenizer's pad id
        assert (item["input_ids"][batch["lengths"][k]:] == ds.pad_id).all()
    sub = ds.subset(per_class=10, seed=0)
    np.testing.assert_array_equal(sub.class_counts, [10, 10, 10, 10])
    np.testing.assert_array_equal(ds.labels[sub.indices], sub.labels)


def test_converted_dataset_through_loader(converted):
    ds = ShardDataset(converted)
    if ds.layout == "compressed":
        batches = list(ds.iter_chunk_shuffled(seed=0, batch_size=64, return_index=True))
        order = np.concatenate([b["index"] for b in batches])
        np.testing.assert_array_equal(np.sort(order), np.arange(len(ds)))
        np.testing.assert_array_equal(np.concatenate([b["labels"] for b in batches]), ds.labels[order])
        return
    loader = DataLoader(ds, batch_sampler=ShuffleBatchSampler(len(ds), 100, seed=1), collate_fn=collate_batch,
                        num_workers=2, multiprocessing_context="fork")
    labels = np.concatenate([b["labels"].numpy() for b in loader])
    np.testing.assert_array_equal(np.sort(labels), np.sort(ds.labels))
