"""Build small, real readshard datasets for the loader tests.

Reads are windows of real genomes, tokenized with the real METAGENE-1 BPE tokenizer, and
written with ``shards.write_shard`` and ``write_manifest`` (real HDF5 files).
Genomes and tokenizer come from the repository's ``sample/genomes`` and ``convert/assets``,
else from the shared directory ``$READSHARD_SHARED`` (default ``<repo>/../shared``);
without either, random DNA and a fixed 4-mer table stand in so the loader tests still run
(the loaders never look at token meaning).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from conftest import REPO, SHARED, genome_texts, random_genomes, sample_reads
from shards import build_manifest, file_sha256, new_dataset_id, shard_name, write_manifest, write_shard


def default_tokenizer_path() -> Path:
    """The METAGENE-1 ``tokenizer.json``: shipped in ``convert/assets``, else the shared one."""
    shipped = REPO / "convert" / "assets" / "tokenizers" / "metagene-1" / "tokenizer.json"
    if shipped.is_file():
        return shipped
    return SHARED / "data" / "tokenizers" / "metagene-1" / "tokenizer.json"


def _reads(labels: np.ndarray, seed: int) -> list[str]:
    """Read ``k``: 40-150 bases of genome ``labels[k]`` (a random one where fewer genomes exist)."""
    num = int(labels.max()) + 1 if labels.size else 0
    genomes = list(genome_texts(num))
    genomes += random_genomes(num - len(genomes), 10_000, seed)
    return sample_reads(labels, genomes, np.random.default_rng(seed), lengths=(40, 150))


def tokenize(reads: Sequence[str], max_length: int, tokenizer_path: Path | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(input_ids (n, L) int16 padded with pad_id, lengths (n,) int16, tokenizer identity)``."""
    path = Path(tokenizer_path) if tokenizer_path is not None else default_tokenizer_path()
    ids = np.zeros((len(reads), max_length), dtype=np.int16)
    lengths = np.zeros(len(reads), dtype=np.int16)
    if path.is_file():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(path))
        pad = tok.token_to_id("[PAD]")
        ids[:] = pad
        for k, read in enumerate(reads):  # per-read encode: the converter's measured fastest path
            e = tok.encode(read).ids[:max_length]
            ids[k, : len(e)] = e
            lengths[k] = len(e)
        ident = {
            "name": "metagene-1",
            "kind": "bpe",
            "sha256": file_sha256(path),
            "vocab_size": tok.get_vocab_size(),
            "pad_id": pad,
            "special_ids": {n: tok.token_to_id(f"[{n.upper()}]") for n in ("pad", "unk", "bos", "eos", "sep", "mask")},
        }
        return ids, lengths, ident
    # Fallback without the shared data: non-overlapping 4-mers, ids 6..261, pad 0.
    table = {a + b + c + d: 6 + i for i, (a, b, c, d) in enumerate(
        (a, b, c, d) for a in "ACGT" for b in "ACGT" for c in "ACGT" for d in "ACGT")}
    for k, read in enumerate(reads):
        e = [table.get(read[i : i + 4], 1) for i in range(0, len(read) - 3, 4)][:max_length]
        ids[k, : len(e)] = e
        lengths[k] = len(e)
    ident = {"name": "kmer4-fallback", "kind": "kmer", "sha256": "0" * 64, "vocab_size": 262, "pad_id": 0,
             "special_ids": {"pad": 0, "unk": 1}}
    return ids, lengths, ident


@dataclass
class Built:
    """A dataset written to disk and the arrays it holds (concatenated in shard order)."""

    path: Path
    shard_sizes: tuple[int, ...]
    num_classes: int
    max_length: int
    layout: str
    tokenizer: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(sum(self.shard_sizes))


def build_dataset(
    directory: str | os.PathLike[str],
    shard_sizes: Sequence[int] = (700, 0, 1300, 513),
    *,
    num_classes: int = 5,
    max_length: int = 48,
    layout: str = "mmap",
    compression: str = "gzip",
    seed: int = 0,
    grouped: bool = False,
    class_probs: Sequence[float] | None = None,
    tokenizer_path: Path | None = None,
    manifest_overrides: dict[str, Any] | None = None,
    ids_hook: Callable[[np.ndarray, np.ndarray], None] | None = None,
    dataset_id: str | None = "random",
) -> Built:
    """Write a dataset of ``len(shard_sizes)`` shards to ``directory`` and return its contents.

    Args:
        directory: output directory (created).
        shard_sizes: reads per shard (0 makes an empty shard).
        num_classes: C.
        max_length: L.
        layout: ``"mmap"`` or ``"compressed"``.
        compression: codec for the compressed layout.
        seed: randomness of labels and reads.
        grouped: labels sorted (reads grouped by species, like a FASTA per genome).
        class_probs: label distribution (default uniform).
        tokenizer_path: METAGENE-1 ``tokenizer.json`` (default: the shared one).
        manifest_overrides: keys replaced in the manifest (e.g. a wrong version).
        ids_hook: ``hook(input_ids, lengths)`` may edit the tokens in place before writing.
        dataset_id: the identity written to the manifest and shards (``"random"``: a new
            one; None: none, like datasets written before identities existed).
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    n = int(sum(shard_sizes))
    labels = rng.choice(num_classes, size=n, p=class_probs).astype(np.int32)
    if grouped:
        labels.sort()
    reads = _reads(labels, seed + 1)
    ids, lengths, tok = tokenize(reads, max_length, tokenizer_path)
    if ids_hook is not None:
        ids_hook(ids, lengths)
    class_ids = (100 + 7 * labels).astype(np.int32)
    tax_ids = np.where(labels % 3 == 0, -1, 10_000 + labels).astype(np.int32)
    arrays = {
        "input_ids": ids,
        "lengths": lengths,
        "read_lengths": np.array([len(r) for r in reads], dtype=np.int32),
        "labels": labels,
        "class_ids": class_ids,
        "tax_ids": tax_ids,
        "mates": rng.integers(0, 3, size=n).astype(np.int8),
        "record_numbers": np.arange(n, dtype=np.int64),
        "fragment_hashes": rng.integers(0, 2**63, size=n).astype(np.uint64),
    }
    if dataset_id == "random":
        dataset_id = new_dataset_id()
    entries = []
    a = 0
    for s, size in enumerate(shard_sizes):
        sl = slice(a, a + size)
        a += size
        name = shard_name(s)
        tmp = out / f".{name}.tmp"
        entry = write_shard(
            tmp,
            input_ids=ids[sl],
            vectors={k: v[sl] for k, v in arrays.items() if k != "input_ids"},
            num_classes=num_classes,
            tokenizer=tok,
            shard_index=s,
            layout=layout,
            compression=compression if layout == "compressed" else None,
            dataset_id=dataset_id,
        )
        os.replace(tmp, out / name)
        entries.append({"file": name, **entry})
    manifest = build_manifest(
        tokenizer=tok,
        max_length=max_length,
        layout=layout,
        compression=compression,
        num_classes=num_classes,
        label_names=[f"species_{c}" for c in range(num_classes)],
        label_class_ids=[100 + 7 * c for c in range(num_classes)],
        label_tax_ids=[-1 if c % 3 == 0 else 10_000 + c for c in range(num_classes)],
        shards=entries,
        source={"inputs": ["tests"], "header_regex": None, "mapping_sha256": None, "reads_per_shard": None},
        dataset_id=dataset_id,
        num_tokens=int(lengths.sum()),
    )
    manifest.update(manifest_overrides or {})
    write_manifest(out, manifest)
    return Built(out, tuple(int(x) for x in shard_sizes), num_classes, max_length, layout, tok, arrays)


def tiny_trainer(ds: Any, out_dir: Path, data_collator: Callable | None = None, **training_args: Any) -> Any:
    """A Hugging Face ``Trainer`` of a tiny random BERT classifier over ``ds``: 3 steps of 16 reads on CPU,
    no saving or reporting; ``training_args`` add to or replace the ``TrainingArguments``; no
    ``data_collator``: the Trainer's default."""
    import transformers

    config = transformers.BertConfig(vocab_size=1024, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=64, num_labels=ds.num_classes,
                                     pad_token_id=ds.pad_id)
    args = transformers.TrainingArguments(**{
        "output_dir": str(out_dir), "max_steps": 3, "per_device_train_batch_size": 16, "report_to": [],
        "use_cpu": True, "dataloader_num_workers": 0, "save_strategy": "no", "logging_steps": 1, **training_args})
    collator = {} if data_collator is None else {"data_collator": data_collator}
    return transformers.Trainer(model=transformers.BertForSequenceClassification(config), args=args,
                                train_dataset=ds, **collator)
