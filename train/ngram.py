"""``ngram``: a hashed token n-gram classifier (fastText-style), the CPU sample's default model.

Each read's token n-grams (n in ``ngram_sizes``; the tokens of an n-gram are ``stride`` apart,
so that with DNABERT's overlapping 6-mers ``stride`` 6 makes 6-, 12- and 18-mers of bases) are
hashed into ``2**hash_bits`` buckets; the bucket embeddings are averaged over the read, then a
LayerNorm and a linear layer give the class logits.

Why it exists: species classification of short reads from known genomes is mostly memory of
sequence, which a one-layer transformer small enough for two CPU cores lacks. The n-gram table
is that memory (like Kraken2's k-mer database, but learned, soft, and without masking), at
~6x the transformer's training rate. The transformers (``llama``, ``bert``, ``dnabert2``) stay
the models for GPUs and pretrained weights.

Hashing is integer arithmetic modulo a 31-bit prime (no overflow), identical on every device,
so a checkpoint scores the same reads the same anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

__all__ = ["NGramClassifier", "NGramOutput", "token_stride"]

_PRIME = 2_147_483_647  # 2**31 - 1: products of two residues fit in int64
_MULT = 1_000_003
_MIX = 1_597_334_677


def token_stride(tokenizer: Mapping[str, Any]) -> int:
    """Tokens between non-overlapping neighbours: ``k`` for overlapping k-mer tokenizers, else 1."""
    if tokenizer.get("kind") == "kmer" and isinstance(tokenizer.get("k"), int) and tokenizer["k"] > 0:
        return int(tokenizer["k"])
    return 1


@dataclass
class NGramOutput:
    """What the training loop and ``predict`` read from a model: ``.logits`` (B, classes)."""

    logits: torch.Tensor


class NGramClassifier(nn.Module):
    """Hashed n-gram embeddings, averaged per read, LayerNorm, linear head."""

    #: ``predict``'s CPU batch: its activations are small, so a large batch only saves overhead
    #: (1,024: 95k reads/s against 75k at 64 on one core here).
    cpu_batch_size = 1024

    def __init__(self, *, num_labels: int, max_length: int, stride: int, ngram_sizes: list[int], hash_bits: int,
                 hidden_size: int) -> None:
        super().__init__()
        self.sizes = tuple(sorted(ngram_sizes))
        self.stride, self.buckets = int(stride), 1 << int(hash_bits)
        if all((n - 1) * self.stride >= max_length for n in self.sizes):
            raise ValueError(f"no n-gram of sizes {list(self.sizes)} at stride {stride} fits in {max_length} tokens")
        self.embed = nn.Embedding(self.buckets, hidden_size)
        nn.init.normal_(self.embed.weight, std=0.02)
        self.norm = nn.LayerNorm(hidden_size)
        self.head = nn.Linear(hidden_size, num_labels)

    def _hashes(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Bucket of every n-gram start (B, T) and whether all its tokens are real (not padding).

        A batch narrower than an n-gram (``predict`` trims each batch to its longest read) gets
        none of that size; one narrower than all of them gets T = 0, pooled to zeros."""
        hs, ms = [], []
        width = ids.shape[1]
        for n in self.sizes:
            span = max(width - (n - 1) * self.stride, 0)
            h = torch.full_like(ids[:, :span], n)
            m = torch.ones_like(mask[:, :span])
            for j in range(n):
                part = slice(j * self.stride, j * self.stride + span)
                h = (h * _MULT + ids[:, part]) % _PRIME
                m = m & mask[:, part]
            hs.append((h * _MIX) % _PRIME % self.buckets)
            ms.append(m)
        return torch.cat(hs, 1), torch.cat(ms, 1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_: Any) -> NGramOutput:
        """Logits for a batch of token ids (B, L); ``attention_mask`` marks the real tokens."""
        ids = input_ids.long()
        mask = (attention_mask if attention_mask is not None else torch.ones_like(ids)).bool()
        buckets, real = self._hashes(ids, mask)
        w = real.to(self.embed.weight.dtype)
        w = w / w.sum(1, keepdim=True).clamp(min=1.0)  # a mean over the read's real n-grams
        if buckets.shape[1] == 0:  # embedding_bag takes no empty 2-D bags
            pooled = self.embed.weight.new_zeros(buckets.shape[0], self.embed.weight.shape[1])
        else:
            pooled = nn.functional.embedding_bag(buckets, self.embed.weight, mode="sum", per_sample_weights=w)
        return NGramOutput(logits=self.head(self.norm(pooled)))
