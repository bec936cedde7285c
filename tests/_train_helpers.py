"""Small real datasets for the training tests: synthetic labeled reads in the seed header
format, converted by the real converter (``convert.convert``, METAGENE-1 BPE by default)
into real HDF5 shards.

The reads are ``conftest.make_reads``: each class is a random "genome", reads are random
windows of it with a few substitutions, so classes are learnable but not trivially.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from conftest import make_reads
from convert import ConvertOptions, convert

__all__ = ["TINY", "TINY_1L", "TINIEST", "write_fasta", "convert_reads", "build_split", "tiny_run_config"]

# Tiny model configs (``model.config``) the training tests run: a few ms per step on CPU.
TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
TINY_1L = {**TINY, "num_hidden_layers": 1}
TINIEST = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}


def write_fasta(path: Path, reads: list[str], labels: np.ndarray, num_classes: int) -> Path:
    """Write reads in the seed header format (class id = 100 + label) and ``mapping.tsv`` beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for i, (seq, lab) in enumerate(zip(reads, labels.tolist())):
            f.write(f">lbl|{100 + lab}|{5000 + lab}|{len(seq)}|r{i}/1\n{seq}\n")
    rows = ["class_id\ttax_id\tspecies"] + [f"{100 + c}\t{5000 + c}\tspecies_{c}" for c in range(num_classes)]
    (path.parent / "mapping.tsv").write_text("\n".join(rows) + "\n")
    return path


def convert_reads(fasta: Path, out: Path, *, tokenizer: str = "metagene-1", max_length: int = 48,
                  reads_per_shard: int = 500) -> Path:
    """Run the real converter on ``fasta`` (mapping.tsv beside it) into ``out``."""
    convert(ConvertOptions(inputs=[str(fasta)], out=str(out), mapping=str(fasta.parent / "mapping.tsv"),
                           tokenizer=tokenizer, max_length=max_length, reads_per_shard=reads_per_shard,
                           jobs=1, progress=False))
    return out


def build_split(root: Path, *, num_classes: int = 4, train_per_class: int = 300, val_per_class: int = 60,
                max_length: int = 48, tokenizer: str = "metagene-1") -> tuple[Path, Path]:
    """A converted train and val dataset from the same genomes (different reads)."""
    out = []
    for split, per_class, seed in (("train", train_per_class, 1), ("val", val_per_class, 2)):
        reads, labels = make_reads(num_classes, per_class, seed=seed)
        fa = write_fasta(root / "reads" / f"{split}.fa", reads, labels, num_classes)
        out.append(convert_reads(fa, root / split, tokenizer=tokenizer, max_length=max_length))
    return out[0], out[1]


def tiny_run_config(train: Path, val: Path, out: Path, *, arch: str = "llama", steps: int = 30, lr: float = 5e-3,
                    **model: object) -> Any:
    """A ``TrainConfig`` of a 1-layer model (``TINY_1L``) trained ``steps`` steps of 32 reads on one
    thread, no DataLoader worker, evaluated once at the end (calibration and ``eval/val``), no baseline."""
    from train.config import config_from_dict

    return config_from_dict({
        "data": {"train": str(train), "val": str(val), "num_workers": 0},
        "model": {"arch": arch, "config": TINY_1L, **model},
        "optim": {"lr": lr, "warmup_steps": 5},
        "train": {"batch_size": 32, "max_steps": steps, "eval_every": 0, "progress": False, "baseline": False,
                  "threads": 1},
        "out": str(out),
    })
