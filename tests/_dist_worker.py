"""Run under ``torchrun --nproc_per_node 2``: each rank records the reads it was served.

Usage: python _dist_worker.py DATASET OUT_DIR. Per epoch, rank r writes
``OUT_DIR/rank{r}-epoch{e}.npy`` (the indices of its ShuffleBatchSampler part, as served by a
DataLoader with 2 workers, checked against the labels that came back). In epoch 2 the ranks
stop after 3 batches and rank 0 writes the sampler state to ``OUT_DIR/state.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from loaders import ShardDataset, ShuffleBatchSampler, collate_batch


def main(path: str, out_dir: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    out = Path(out_dir)
    ds = ShardDataset(path)
    labels = ds.labels
    sampler = ShuffleBatchSampler(len(ds), 50, seed=21, rank=rank, world_size=world)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate_batch, num_workers=2,
                        multiprocessing_context="fork", persistent_workers=True)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        expect = ShuffleBatchSampler(len(ds), 50, seed=21, rank=rank, world_size=world)
        expect.set_epoch(epoch)
        seen = []
        for step, (idx, batch) in enumerate(zip(expect, loader)):
            if epoch == 2 and step == 3:
                break
            if not torch.equal(batch["labels"], torch.from_numpy(labels[idx].astype(np.int64))):
                raise RuntimeError(f"rank {rank}: batch {step} of epoch {epoch} has the wrong reads")
            seen.append(idx)
            count = torch.tensor([len(idx)])
            dist.all_reduce(count)  # the ranks stay in lockstep, as in DDP
        np.save(out / f"rank{rank}-epoch{epoch}.npy", np.concatenate(seen))
        if epoch == 2 and rank == 0:
            (out / "state.json").write_text(json.dumps(sampler.state_dict(consumed=3)))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
