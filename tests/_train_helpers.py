"""Small real datasets for the training tests: synthetic labeled reads in the seed header
format, converted by the real converter (``convert.convert``, METAGENE-1 BPE by default)
into real HDF5 shards.

The reads are ``conftest.make_reads``: each class is a random "genome", reads are random
windows of it with a few substitutions, so classes are learnable but not trivially.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from conftest import make_reads
from convert import ConvertOptions, convert

__all__ = ["TINY", "TINY_1L", "TINIEST", "write_fasta", "convert_reads", "build_split"]

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
