"""Small real datasets for the training tests: synthetic genomes, reads, the real METAGENE-1
BPE tokenizer, and real HDF5 shards written with ``convert.format``.

Each class is a random "genome"; reads are random windows of it with a few substitutions,
so classes are learnable but not trivially (short genomes, sequencing-like errors).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from convert.format import shard_name, write_manifest, write_shard

__all__ = ["TOKENIZER_FILE", "tokenizer_identity", "make_reads", "build_dataset", "build_split"]

ROOT = Path(__file__).resolve().parents[1]
_CANDIDATES = [
    ROOT / "convert" / "assets" / "tokenizers" / "metagene-1" / "tokenizer.json",
    ROOT.parent / "shared" / "data" / "tokenizers" / "metagene-1" / "tokenizer.json",
]
TOKENIZER_FILE = next((p for p in _CANDIDATES if p.is_file()), _CANDIDATES[0])


def tokenizer_identity() -> dict:
    """The tokenizer identity dict the manifest stores for METAGENE-1."""
    return {
        "name": "metagene-1",
        "kind": "bpe",
        "sha256": hashlib.sha256(TOKENIZER_FILE.read_bytes()).hexdigest(),
        "vocab_size": 1024,
        "pad_id": 0,
        "special_ids": {"pad": 0, "unk": 1, "sep": 2, "bos": 3, "eos": 4, "cls": None, "mask": 5},
    }


def make_reads(num_classes: int, reads_per_class: int, *, seed: int, genome_len: int = 3000,
               read_len: int = 150, error_rate: float = 0.01, genome_seed: int = 1234) -> tuple[list[str], np.ndarray]:
    """Random reads of ``num_classes`` random genomes (same genomes for every ``seed``)."""
    grng = np.random.default_rng(genome_seed)
    genomes = grng.integers(0, 4, size=(num_classes, genome_len))
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), reads_per_class)
    rng.shuffle(labels)
    starts = rng.integers(0, genome_len - read_len, size=len(labels))
    idx = starts[:, None] + np.arange(read_len)[None, :]
    reads = genomes[labels[:, None], idx]
    err = rng.random(reads.shape) < error_rate
    reads = np.where(err, (reads + rng.integers(1, 4, size=reads.shape)) % 4, reads)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)[reads]
    return [row.tobytes().decode() for row in letters], labels


def build_dataset(out: Path, reads: list[str], labels: np.ndarray, num_classes: int, *,
                  max_length: int = 48, reads_per_shard: int = 1000) -> Path:
    """Tokenize ``reads`` with METAGENE-1 and write shards + manifest into ``out``."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(TOKENIZER_FILE))
    ident = tokenizer_identity()
    enc = tok.encode_batch(reads)
    n = len(reads)
    ids = np.zeros((n, max_length), dtype=np.int16)
    lengths = np.zeros(n, dtype=np.int16)
    for i, e in enumerate(enc):
        row = e.ids[:max_length]
        ids[i, : len(row)] = row
        lengths[i] = len(row)
    out.mkdir(parents=True, exist_ok=True)
    shards = []
    for s, start in enumerate(range(0, n, reads_per_shard)):
        sl = slice(start, min(n, start + reads_per_shard))
        m = sl.stop - sl.start
        vectors = {
            "lengths": lengths[sl],
            "read_lengths": np.array([len(r) for r in reads[sl]], dtype=np.int32),
            "labels": labels[sl].astype(np.int32),
            "class_ids": (labels[sl] + 100).astype(np.int32),
            "tax_ids": np.full(m, -1, dtype=np.int32),
            "mates": np.zeros(m, dtype=np.int8),
        }
        tmp = out / (shard_name(s) + ".tmp")
        entry = write_shard(tmp, input_ids=ids[sl], vectors=vectors, num_classes=num_classes,
                            tokenizer=ident, shard_index=s)
        tmp.rename(out / shard_name(s))
        shards.append({"file": shard_name(s), **entry})
    write_manifest(out, {
        "tokenizer": ident,
        "max_length": max_length,
        "layout": "mmap",
        "compression": "none",
        "num_classes": num_classes,
        "label_names": [f"species_{c}" for c in range(num_classes)],
        "label_class_ids": [c + 100 for c in range(num_classes)],
        "label_tax_ids": [-1] * num_classes,
        "shards": shards,
        "totals": {"num_rows": n, "num_shards": len(shards), "num_tokens": int(lengths.sum())},
        "source": {"inputs": ["synthetic"], "header_regex": None, "mapping_sha256": None,
                   "reads_per_shard": reads_per_shard},
    })
    return out


def build_split(root: Path, *, num_classes: int = 4, train_per_class: int = 300, val_per_class: int = 60,
                max_length: int = 48) -> tuple[Path, Path]:
    """A train and a val dataset from the same genomes (different reads)."""
    tr_reads, tr_labels = make_reads(num_classes, train_per_class, seed=1)
    va_reads, va_labels = make_reads(num_classes, val_per_class, seed=2)
    train = build_dataset(root / "train", tr_reads, tr_labels, num_classes, max_length=max_length)
    val = build_dataset(root / "val", va_reads, va_labels, num_classes, max_length=max_length)
    return train, val
