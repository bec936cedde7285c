"""``arch: ngram`` (train.ngram): its config is validated, its hashing matches a plain Python
reference and ignores padding, and a real run trains, is rebuilt by ``predict`` and scores
the FASTA and its converted dataset the same."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from _train_helpers import build_split
from train.config import ConfigError, ModelConfig, config_from_dict
from train.inference import default_batch_size, load_run, score_dataset, score_reads
from train.loop import run as train_run
from train.model import DataSpec, build_model
from train.ngram import NGramClassifier, token_stride

SMALL = {"hash_bits": 12, "hidden_size": 16}


@pytest.mark.parametrize("tokenizer,stride", [
    ({"kind": "kmer", "k": 6}, 6), ({"kind": "kmer", "k": 3}, 3), ({"kind": "bpe"}, 1), ({"kind": "char"}, 1),
    ({"kind": "kmer"}, 1), ({"kind": "kmer", "k": "6"}, 1), ({}, 1),
])
def test_token_stride(tokenizer: dict, stride: int) -> None:
    assert token_stride(tokenizer) == stride


def _raw(**model: object) -> dict:
    return {"data": {"train": "t", "val": "v"}, "model": {"arch": "ngram", **model}}


@pytest.mark.parametrize("model,message", [
    ({"pretrained": "metagene-ai/METAGENE-1"}, "model.pretrained: arch ngram has no pretrained weights"),
    ({"lora": {"r": 4}}, "model.lora: arch ngram"),
    ({"load_dtype": "bfloat16"}, "model.load_dtype: arch ngram"),
    ({"gradient_checkpointing": True}, "no activation checkpointing"),
    ({"trust_remote_code": True}, "no activation checkpointing or remote code"),
    ({"config": {"num_hidden_layers": 2}}, "unknown key(s) num_hidden_layers for arch ngram"),
    ({"config": {"ngram_sizes": []}}, "ngram_sizes must be a list"),
    ({"config": {"ngram_sizes": [0, 1]}}, "ngram_sizes must be a list"),
    ({"config": {"ngram_sizes": [2, 2]}}, "ngram_sizes must be a list"),
    ({"config": {"ngram_sizes": "3"}}, "ngram_sizes must be a list"),
    ({"config": {"ngram_sizes": [True]}}, "ngram_sizes must be a list"),
    ({"config": {"hash_bits": 27}}, "hash_bits must be an integer 8..26"),
    ({"config": {"hash_bits": 18.0}}, "hash_bits must be an integer 8..26"),
    ({"config": {"hidden_size": 0}}, "hidden_size must be an integer 1..4096"),
    ({"config": {"stride": 0}}, "stride must be null"),
])
def test_config_refused(model: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(_raw(**model))
    assert message in str(err.value)


def test_config_accepted() -> None:
    cfg = config_from_dict(_raw(config={"ngram_sizes": [1, 3], "hash_bits": 8, "hidden_size": 4, "stride": 2}))
    assert cfg.model.arch == "ngram" and cfg.model.config["stride"] == 2


def test_no_ngram_fits() -> None:
    with pytest.raises(ValueError, match="no n-gram"):
        NGramClassifier(num_labels=2, max_length=10, stride=6, ngram_sizes=[3], hash_bits=8, hidden_size=4)


def _reference_buckets(ids: list[int], sizes: list[int], stride: int, bits: int) -> list[int]:
    """The hash in plain Python integers: a polynomial modulo 2**31 - 1, mixed, cut to ``bits``."""
    p, out = 2**31 - 1, []
    for n in sorted(sizes):
        for s in range(len(ids) - (n - 1) * stride):
            h = n
            for j in range(n):
                h = (h * 1_000_003 + ids[s + j * stride]) % p
            out.append(h * 1_597_334_677 % p % (1 << bits))
    return out


def test_hash_matches_reference() -> None:
    """Largest vocabularies (int16 ids up to 32767) included: no int64 overflow on any device."""
    model = NGramClassifier(num_labels=3, max_length=40, stride=3, ngram_sizes=[1, 2, 4], hash_bits=20, hidden_size=4)
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, 32768, size=(3, 40)))
    got, real = model._hashes(ids, torch.ones_like(ids, dtype=torch.bool))
    assert bool(real.all())
    for row in range(3):
        assert got[row].tolist() == _reference_buckets(ids[row].tolist(), [1, 2, 4], 3, 20)


def test_padding_and_tokens() -> None:
    """Logits depend on the real tokens only: padding width and padded values do not matter."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch="ngram", config=SMALL),
                        DataSpec(vocab_size=4101, pad_id=0, num_labels=5, max_length=64, token_stride=6)).eval()
    real = torch.randint(5, 4101, (2, 40))
    short = torch.cat([real, torch.zeros(2, 8, dtype=torch.long)], 1)
    long = torch.cat([real, torch.randint(0, 4101, (2, 24))], 1)  # garbage under the mask
    mask_s = torch.cat([torch.ones(2, 40), torch.zeros(2, 8)], 1).long()
    mask_l = torch.cat([torch.ones(2, 40), torch.zeros(2, 24)], 1).long()
    with torch.no_grad():
        a = model(input_ids=short, attention_mask=mask_s).logits
        b = model(input_ids=long, attention_mask=mask_l).logits
        changed = real.clone()
        changed[:, 20] = 7
        c = model(input_ids=torch.cat([changed, torch.zeros(2, 8, dtype=torch.long)], 1), attention_mask=mask_s).logits
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(a, c, atol=1e-4)
    assert model.stride == 6 and model.embed.weight.shape == (1 << 12, 16)


def test_train_and_predict(tmp_path: Path) -> None:
    """A real run on DNABERT 6-mers learns, its rebuilt model reproduces its val accuracy, and
    the reads score the same from their FASTA as from their converted dataset."""
    train, val = build_split(tmp_path, num_classes=4, train_per_class=80, val_per_class=25, max_length=152,
                             tokenizer="dnabert-6mer")
    cfg = config_from_dict({
        "data": {"train": str(train), "val": str(val), "num_workers": 0},
        "model": {"arch": "ngram", "config": SMALL},
        "optim": {"lr": 3e-2, "warmup_steps": 2, "weight_decay": 0.0},
        "train": {"batch_size": 32, "max_steps": 40, "eval_every": 0, "progress": False, "baseline": False,
                  "threads": 1},
        "out": str(tmp_path / "run"),
    })
    result = train_run(cfg)
    run = load_run(tmp_path / "run", device="cpu")
    assert isinstance(run.model, NGramClassifier) and run.model.stride == 6
    assert default_batch_size(run) == 1024  # small activations: a CPU batch only saves overhead
    blocks = list(score_dataset(run, val))
    labels = np.concatenate([s.labels for s in blocks])
    from_ds = np.concatenate([s.log_probs for s in blocks])
    from_fa = np.concatenate([s.log_probs for s in score_reads(run, [tmp_path / "reads" / "val.fa"], progress=False)])
    assert result["val_accuracy"] > 0.9  # chance is 0.25
    assert np.mean(from_ds.argmax(1) == labels) == pytest.approx(result["val_accuracy"], abs=0.021)
    assert np.allclose(from_ds, from_fa, atol=1e-5)


@pytest.mark.parametrize("width", [5, 6, 7, 12, 13])
def test_batches_narrower_than_the_ngrams(width: int) -> None:
    """predict trims a batch to its longest read: n-grams that do not fit are left out, and a batch
    that fits none scores like a read without n-grams (the bias of the head), never an error."""
    torch.manual_seed(0)
    model = NGramClassifier(num_labels=3, max_length=40, stride=6, ngram_sizes=[2, 3], hash_bits=8, hidden_size=4)
    model.eval()
    ids = torch.randint(5, 100, (2, width))
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        empty = model.head(model.norm(torch.zeros(1, 4)))
    assert logits.shape == (2, 3) and bool(torch.isfinite(logits).all())
    fits = width > 6  # a 2-gram at stride 6 needs 7 tokens
    assert torch.allclose(logits, empty.expand(2, 3)) != fits
