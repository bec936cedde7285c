"""A k-mer (k=6) multinomial naive Bayes baseline on the same reads as the model.

The reads come from the shards themselves: the stored token ids are decoded back to bases
with the dataset's tokenizer (concatenated token strings for BPE and char tokenizers,
overlapping k-mers for DNABERT-style k-mer tokenizers), or from the raw FASTA files
(``--train-fasta/--val-fasta``). K-mer counting is vectorised with numpy over blocks of
reads: no per-read Python objects on the shard path.

At scale it is capped: ``max_reads`` (default :data:`DEFAULT_MAX_READS`) reads are sampled
uniformly (seeded) from each of train and val, and the result says how many it used.

    python -m train.baseline --train data/sample/train --val data/sample/val [--max-reads N] [--out DIR]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from shards import CHUNK_ROWS, FormatError, read_manifest
from shards.reader import ShardReader

__all__ = [
    "BaselineError",
    "TokenDecoder",
        "token_decoder",
    "kmer_count_matrix",
    "NaiveBayes",
    "iter_shard_blocks",
    "iter_fasta_blocks",
    "sample_rows",
    "DEFAULT_MAX_READS",
    "run_baseline",
    "main",
]

BASE_CODE = np.full(256, 4, dtype=np.uint8)  # 4 = not a base: breaks k-mers (N, IUPAC, ...)
for _i, _b in enumerate(b"ACGT"):
    BASE_CODE[_b] = _i
    BASE_CODE[ord(chr(_b).lower())] = _i
SKIP = 255  # a character that is dropped (METAGENE-1's '_' word marker)
BASE_CODE[ord("_")] = SKIP
BLOCK_READS = 4096
# Reads sampled from each of train and val by default: seconds on any machine, and a sampling
# error on the accuracy of ~0.1-0.2 points, small beside the model-vs-baseline gaps it reports.
DEFAULT_MAX_READS = 200_000


class BaselineError(RuntimeError):
    """The baseline cannot run on this input; the message says what to do."""


@dataclass(frozen=True)
class TokenDecoder:
    """Decodes token ids to base codes with a lookup table.

    Attributes:
        table: (V, W) uint8: base codes of each token (0-3 ACGT, 4 other), SKIP padded.
        lengths: (V,) int: characters each token contributes.
        overlap: k-1 for overlapping k-mer tokenizers (each token after the first of a read
            adds only its last base), 0 for concatenating tokenizers (BPE, char).
    """

    table: np.ndarray
    lengths: np.ndarray
    overlap: int = 0

    def decode_block(self, ids: np.ndarray, n_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decode a block of reads.

        Args:
            ids: (n, L) token ids (padding anywhere past ``n_tokens``).
            n_tokens: (n,) tokens stored per read.

        Returns:
            ``(bases, offsets)``: flat uint8 base codes of all reads and (n+1,) int64 offsets.
        """
        ids = np.asarray(ids, dtype=np.int64)
        n, L = ids.shape
        valid_tok = np.arange(L)[None, :] < np.asarray(n_tokens)[:, None]
        ids = np.where(valid_tok, np.clip(ids, 0, len(self.table) - 1), 0)
        chars = self.table[ids]  # (n, L, W)
        keep = (np.arange(self.table.shape[1])[None, None, :] < self.lengths[ids][:, :, None]) & valid_tok[:, :, None]
        if self.overlap:
            # Overlapping k-mers: the first whole k-mer of a read gives all its bases, later
            # tokens only their last base ([UNK] decodes to one N: a break).
            has = self.lengths[ids] > self.overlap
            first = has & (np.cumsum(has, axis=1) == 1)
            tail = np.arange(self.table.shape[1])[None, None, :] >= (self.lengths[ids] - 1)[:, :, None]
            keep &= first[:, :, None] | tail
        keep &= chars != SKIP
        counts = keep.reshape(n, -1).sum(axis=1)
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        return chars[keep], offsets


def _load_tokenizer(info: Mapping[str, Any], tokenizer_file: str | Path | None) -> Any:
    """The converter's tokenizer that wrote the shards, checked by sha256."""
    from convert.tokenizers import REGISTRY, TokenizerError, load_tokenizer

    name = str(info.get("name", ""))
    spec = str(tokenizer_file) if tokenizer_file else name
    if not tokenizer_file and name not in REGISTRY:
        raise BaselineError(
            f"the shards were tokenized with {name!r} ({info.get('file', 'a custom file')}), not a built-in "
            "tokenizer: pass --tokenizer-file PATH, or give the raw reads with --train-fasta/--val-fasta"
        )
    try:
        tok = load_tokenizer(spec)
    except TokenizerError as exc:
        raise BaselineError(str(exc)) from None
    if info.get("sha256") and tok.info.get("sha256") != info["sha256"]:
        raise BaselineError(
            f"tokenizer {spec!r} (sha256 {str(tok.info.get('sha256'))[:12]}) is not the one the shards were written "
            f"with (sha256 {str(info['sha256'])[:12]}); pass the right --tokenizer-file"
        )
    return tok


def token_decoder(info: Mapping[str, Any], tokenizer_file: str | Path | None = None) -> TokenDecoder:
    """Build the id -> bases lookup of a dataset's tokenizer (see :class:`TokenDecoder`).

    Each vocabulary entry is decoded once with the converter's own tokenizer; ``[UNK]``
    becomes ``N`` (it stands for bases that are not ACGT) and other special tokens vanish.
    """
    tok = _load_tokenizer(info, tokenizer_file)
    vocab_size = int(info["vocab_size"])
    unk = (info.get("special_ids") or {}).get("unk")
    strings = []
    for i in range(vocab_size):  # once per vocabulary entry, not per read
        strings.append("N" if i == unk else tok.decode(np.array([i], dtype=np.int64)))
    width = max(1, max(len(s) for s in strings))
    table = np.full((vocab_size, width), SKIP, dtype=np.uint8)
    lengths = np.zeros(vocab_size, dtype=np.int64)
    for i, s in enumerate(strings):
        raw = np.frombuffer(s.encode("ascii", "replace"), dtype=np.uint8)
        table[i, : len(raw)] = BASE_CODE[raw]
        lengths[i] = len(raw)
    overlap = int(info.get("k", 6)) - 1 if info.get("kind") == "kmer" else 0
    return TokenDecoder(table=table, lengths=lengths, overlap=overlap)


def kmer_count_matrix(bases: np.ndarray, offsets: np.ndarray, k: int = 6) -> np.ndarray:
    """(n, 4**k) float32 k-mer counts of n reads given as flat base codes + offsets.

    K-mers containing a non-ACGT base or crossing a read boundary are not counted.
    """
    n = len(offsets) - 1
    nfeat = 4**k
    out = np.zeros((n, nfeat), dtype=np.float32)
    total = len(bases)
    if total < k or n == 0:
        return out
    b = bases.astype(np.int64)
    m = total - k + 1
    code = np.zeros(m, dtype=np.int64)
    for j in range(k):
        code = (code << 2) | (b[j : j + m] & 3)
    bad = np.concatenate([[0], np.cumsum(b > 3)])
    ok = (bad[k : k + m] - bad[:m]) == 0
    row = np.repeat(np.arange(n), np.diff(offsets))
    ok &= row[:m] == row[k - 1 : k - 1 + m]  # window inside one read
    flat = np.bincount(row[:m][ok] * nfeat + code[ok], minlength=n * nfeat)
    out[:] = flat.reshape(n, nfeat)
    return out


class NaiveBayes:
    """Multinomial naive Bayes over k-mer counts with Laplace smoothing (``alpha``)."""

    def __init__(self, num_classes: int, k: int = 6, alpha: float = 1.0) -> None:
        self.k, self.alpha, self.num_classes = k, alpha, num_classes
        self.feature_counts = np.zeros((num_classes, 4**k), dtype=np.float64)
        self.class_counts = np.zeros(num_classes, dtype=np.float64)

    def partial_fit(self, counts: np.ndarray, labels: np.ndarray) -> None:
        """Add a block of (n, 4**k) counts with (n,) labels."""
        labels = np.asarray(labels, dtype=np.int64)
        np.add.at(self.class_counts, labels, 1)
        # Sum rows per class with one matmul against a one-hot (C, n) matrix.
        onehot = np.zeros((self.num_classes, len(labels)), dtype=np.float32)
        onehot[labels, np.arange(len(labels))] = 1
        self.feature_counts += onehot @ counts

    def log_params(self) -> tuple[np.ndarray, np.ndarray]:
        """``(log_prior (C,), log_theta (C, 4**k))``."""
        smoothed = self.feature_counts + self.alpha
        log_theta = np.log(smoothed) - np.log(smoothed.sum(axis=1, keepdims=True))
        prior = np.log(np.maximum(self.class_counts, 1e-12) / max(self.class_counts.sum(), 1))
        return prior, log_theta

    def predict(self, counts: np.ndarray) -> np.ndarray:
        """(n,) predicted labels for (n, 4**k) counts."""
        prior, log_theta = self.log_params()
        return np.argmax(counts @ log_theta.T.astype(np.float32) + prior.astype(np.float32), axis=1)


def sample_rows(num_rows: int, max_reads: int | None, seed: int = 0) -> np.ndarray | None:
    """Sorted global rows of a uniform sample of ``max_reads`` of ``num_rows`` (seeded);
    ``None`` when the cap does not bite (use every row). O(max_reads) memory at any size."""
    if max_reads is None or max_reads >= num_rows:
        return None
    return np.sort(np.random.default_rng(seed).choice(num_rows, size=max_reads, replace=False))


def _token_source(reader: ShardReader, s: int) -> tuple[Any, Callable[[], None]]:
    """Shard ``s``'s ``input_ids`` (a mapped array, or the HDF5 dataset when compressed) and its closer."""
    cols, close = reader.columns(s, ("input_ids",))  # by layout: a mapping, or HDF5 decoding chunks
    return cols["input_ids"], close


def iter_shard_blocks(directory: str | Path, decoder: TokenDecoder | None = None,
                      tokenizer_file: str | Path | None = None, block: int = BLOCK_READS,
                      rows: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(bases, offsets, labels)`` blocks of the reads stored in a dataset's shards.

    Reads through :class:`shards.ShardReader` (validated manifest, shards confined to
    the directory, identity checked), like every other reader. ``rows``: only these sorted
    global row numbers (see :func:`sample_rows`); ``None`` = all.
    """
    reader = ShardReader(Path(directory))
    decoder = decoder or token_decoder(reader.manifest["tokenizer"], tokenizer_file)
    for s in range(reader.num_shards):
        n, start_row = int(reader.counts[s]), int(reader.starts[s])
        if n == 0:
            continue
        if rows is not None:
            lo, hi = np.searchsorted(rows, [start_row, start_row + n])
            if hi == lo:
                continue
            want = rows[lo:hi] - start_row
        lengths = reader.read_vector(s, "lengths")  # one pread each: small per-read vectors
        labels = reader.read_vector(s, "labels").astype(np.int64)
        ids, close = _token_source(reader, s)
        try:
            if rows is not None:
                for a in range(0, want.size, block):
                    r = want[a : a + block]
                    bases, offsets = decoder.decode_block(np.asarray(ids[r]), lengths[r])
                    yield bases, offsets, labels[r]
                continue
            # whole chunks on the compressed layout: each chunk is decompressed once
            step = block if isinstance(ids, np.ndarray) else max(CHUNK_ROWS, block - block % CHUNK_ROWS)
            for start in range(0, n, step):
                stop = min(n, start + step)
                bases, offsets = decoder.decode_block(np.asarray(ids[start:stop]), lengths[start:stop])
                yield bases, offsets, labels[start:stop]
        finally:
            del ids
            close()


HEADER_RE = re.compile(r"^lbl\|(-?\d+)\|")


def iter_fasta_blocks(path: str | Path, class_to_label: Mapping[int, int],
                      block: int = BLOCK_READS) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield ``(bases, offsets, labels)`` blocks of raw reads from a labeled FASTA/FASTQ.

    Reads whose header has no ``lbl|<class_id>|`` or whose class is not in the dataset are
    skipped (as the converter quarantines them).
    """
    import pyfastx

    seqs: list[bytes] = []
    labels: list[int] = []

    def flush() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        joined = b"".join(seqs)
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum([len(s) for s in seqs], out=offsets[1:])
        out = (BASE_CODE[np.frombuffer(joined, dtype=np.uint8)], offsets, np.asarray(labels, dtype=np.int64))
        seqs.clear()
        labels.clear()
        return out

    for rec in pyfastx.Fastx(str(path)):
        name, seq = rec[0], rec[1]
        m = HEADER_RE.match(name)
        if not m or int(m.group(1)) not in class_to_label:
            continue
        seqs.append(seq.encode())
        labels.append(class_to_label[int(m.group(1))])
        if len(seqs) >= block:
            yield flush()
    if seqs:
        yield flush()


def _first(blocks: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]],
           limit: int | None) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The first ``limit`` reads of a stream of blocks (all when ``None``)."""
    left = limit
    for bases, offsets, labels in blocks:
        if left is not None and len(labels) >= left:
            yield bases[: offsets[left]], offsets[: left + 1], labels[:left]
            return
        if left is not None:
            left -= len(labels)
        yield bases, offsets, labels


def run_baseline(train: str | Path, val: str | Path, *, k: int = 6, alpha: float = 1.0,
                 tokenizer_file: str | Path | None = None, train_fasta: str | Path | None = None,
                 val_fasta: str | Path | None = None, max_reads: int | None = DEFAULT_MAX_READS,
                 seed: int = 0) -> dict[str, Any]:
    """Fit the k-mer naive Bayes on ``train`` and evaluate it on ``val``.

    Args:
        train, val: dataset directories (their manifests give classes and tokenizer).
        k: k-mer size (4**k features).
        alpha: Laplace smoothing.
        tokenizer_file: the tokenizer file, if not found automatically.
        train_fasta, val_fasta: read the raw reads from these files instead of decoding tokens.
        max_reads: reads used from each of train and val: a uniform sample (``seed``) of the
            shards, or the first ``max_reads`` of a FASTA; ``None`` = all.
        seed: the sample's seed.

    Returns:
        ``{"val_accuracy", "val_macro_f1", "per_class", "confusion", "source", "train_reads",
        "train_reads_total", "val_reads", "val_reads_total", "sampling", ...}`` (``*_total``:
        reads in the dataset; ``None`` for FASTA input, which is not read past the cap).
    """
    from train.metrics import confusion_matrix, metrics_from_confusion, per_class_table

    t0 = time.perf_counter()
    manifest = read_manifest(train)
    vmanifest = read_manifest(val)
    C = int(manifest["num_classes"])
    names = list(manifest.get("label_names") or [str(i) for i in range(C)])
    if list(vmanifest.get("label_class_ids", [])) != list(manifest.get("label_class_ids", [])):
        raise FormatError(f"{val}: labels differ from {train}; convert both with the same --mapping")
    if (train_fasta is None) != (val_fasta is None):
        raise BaselineError("give both --train-fasta and --val-fasta, or neither")
    if max_reads is not None and max_reads < 1:
        raise BaselineError(f"max_reads must be at least 1, got {max_reads}")
    totals: tuple[int | None, int | None]
    if train_fasta is not None:
        class_to_label = {int(c): i for i, c in enumerate(manifest["label_class_ids"])}
        train_blocks = _first(iter_fasta_blocks(train_fasta, class_to_label), max_reads)
        val_blocks = _first(iter_fasta_blocks(val_fasta, class_to_label), max_reads)
        source, totals = "fasta", (None, None)
        sampling = "all reads" if max_reads is None else f"the first {max_reads:,} reads of each FASTA"
    else:
        decoder = token_decoder(manifest["tokenizer"], tokenizer_file)
        totals = (int(manifest["totals"]["num_rows"]), int(vmanifest["totals"]["num_rows"]))
        train_blocks = iter_shard_blocks(train, decoder, rows=sample_rows(totals[0], max_reads, seed))
        val_blocks = iter_shard_blocks(val, decoder, rows=sample_rows(totals[1], max_reads, seed + 1))
        source = f"tokens ({manifest['tokenizer'].get('name')})"
        capped = max_reads is not None and max_reads < max(totals)
        sampling = f"a uniform sample of at most {max_reads:,} reads of each set (seed {seed})" if capped else "all reads"
    nb = NaiveBayes(C, k=k, alpha=alpha)
    n_train = 0
    for bases, offsets, labels in train_blocks:
        nb.partial_fit(kmer_count_matrix(bases, offsets, k), labels)
        n_train += len(labels)
    t_fit = time.perf_counter() - t0
    cm = np.zeros((C, C), dtype=np.int64)
    for bases, offsets, labels in val_blocks:
        cm += confusion_matrix(labels, nb.predict(kmer_count_matrix(bases, offsets, k)), C)
    m = metrics_from_confusion(cm)
    return {
        "model": f"{k}-mer multinomial naive Bayes (alpha={alpha})",
        "source": source,
        "train_reads": n_train,
        "train_reads_total": totals[0],
        "val_reads": m["num_reads"],
        "val_reads_total": totals[1],
        "sampling": sampling,
        "val_accuracy": m["accuracy"],
        "val_macro_f1": m["macro_f1"],
        "fit_seconds": round(t_fit, 2),
        "total_seconds": round(time.perf_counter() - t0, 2),
        "per_class": per_class_table(cm, names),
        "confusion": cm.tolist(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m train.baseline --train DIR --val DIR [--out DIR]``."""
    from train.metrics import format_per_class_table, write_json

    p = argparse.ArgumentParser(prog="python -m train.baseline", description=__doc__.split("\n\n")[0])
    p.add_argument("--train", required=True, help="training dataset directory")
    p.add_argument("--val", required=True, help="validation dataset directory")
    p.add_argument("--k", type=int, default=6, help="k-mer size (default 6)")
    p.add_argument("--alpha", type=float, default=1.0, help="Laplace smoothing (default 1)")
    p.add_argument("--tokenizer-file", help="tokenizer.json / vocab.txt to decode tokens with")
    p.add_argument("--train-fasta", help="read raw training reads from this FASTA instead of the tokens")
    p.add_argument("--val-fasta", help="read raw validation reads from this FASTA instead of the tokens")
    p.add_argument("--max-reads", type=int, default=DEFAULT_MAX_READS,
                   help=f"reads sampled from each of train and val (default {DEFAULT_MAX_READS:,}; 0 = all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (default 0)")
    p.add_argument("--out", help="write OUT/baseline.json")
    args = p.parse_args(argv)
    try:
        res = run_baseline(args.train, args.val, k=args.k, alpha=args.alpha, tokenizer_file=args.tokenizer_file,
                           train_fasta=args.train_fasta, val_fasta=args.val_fasta,
                           max_reads=args.max_reads or None, seed=args.seed)
    except (BaselineError, FormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_per_class_table(res["per_class"]))
    print(f"{res['model']} on {res['source']}: {res['train_reads']:,} train reads, {res['val_reads']:,} val reads "
          f"({res['sampling']}), "
          f"val accuracy {100 * res['val_accuracy']:.2f}%, macro-F1 {100 * res['val_macro_f1']:.2f}% "
          f"({res['total_seconds']} s)")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        write_json(Path(args.out) / "baseline.json", res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
