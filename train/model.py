"""Model builders: a registry of small callables over ``transformers`` sequence classifiers.

Every builder returns an ``AutoModelForSequenceClassification``-style module whose
``forward(input_ids=..., attention_mask=...)`` gives ``.logits`` (B, num_labels). The
vocabulary size and pad id come from the dataset's tokenizer identity, ``num_labels`` from
the dataset, so a model always matches the shards it trains on.

* ``llama``: METAGENE-1's architecture (decoder-only Llama, last-token pooling). Fresh from a
  ``LlamaConfig`` (no download) or ``from_pretrained`` (``metagene-ai/METAGENE-1``).
* ``bert``: a BERT encoder (first-token pooling), fresh or pretrained.
* ``ngram``: hashed token n-grams, averaged, then a linear head (:mod:`train.ngram`; plain torch,
  no ``transformers``): the CPU sample's default, no pretrained weights, LoRA or checkpointing.
* ``dnabert2``: DNABERT-2-117M (``zhihan1996/DNABERT-2-117M``; its code lives on the hub, so
  ``trust_remote_code: true``). Built fresh it is a standard BERT with DNABERT-2's sizes: the
  closest architecture available offline (DNABERT-2 adds ALiBi and GEGLU in its remote code).

``model.pretrained`` is a hub id or a local directory (a downloaded snapshot, or anything
``save_pretrained`` wrote); a local directory is loaded with ``local_files_only``, so it never
reaches for the network.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from train.config import ARCHS, NGRAM_DEFAULTS, ConfigError, ModelConfig
from train.ngram import NGramClassifier

__all__ = [
    "DataSpec",
    "MODEL_BUILDERS",
    "SMOKE_CONFIGS",
    "build_model",
    "smoke_model_config",
    "count_parameters",
]


@dataclass(frozen=True)
class DataSpec:
    """What a model must match in the data: vocabulary, pad id, classes and length."""

    vocab_size: int
    pad_id: int
    num_labels: int
    max_length: int
    token_stride: int = 1  # tokens between non-overlapping neighbours (k for overlapping k-mers)


def _fresh_kwargs(spec: DataSpec, overrides: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    kwargs = {**defaults, **overrides}
    # The data decides these: a config cannot contradict the shards it trains on.
    kwargs.update(vocab_size=spec.vocab_size, pad_token_id=spec.pad_id, num_labels=spec.num_labels)
    kwargs["max_position_embeddings"] = max(int(kwargs.get("max_position_embeddings", 0)), spec.max_length)
    return kwargs


_MAX_CONFIG_BYTES = 1 << 20


def _check_local_config(path: Path) -> None:
    """Refuse a local ``config.json`` that is not a JSON object or whose ``auto_map`` names code
    in a hub repository (``org/repo--module.Class``): fetching it would reach the network."""
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {path.stat().st_size:,} bytes; a model config.json is a few KB")
    try:
        raw = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    auto_map = raw.get("auto_map") or {}
    refs = auto_map.values() if isinstance(auto_map, dict) else []
    remote = sorted({r for ref in refs for r in ([ref] if isinstance(ref, str) else ref or []) if "--" in str(r)})
    if remote:
        raise ConfigError(f"{path}: auto_map points to code in a hub repository ({remote[0]}); a local model "
                          "directory must hold its own code files (download the repository's .py files beside "
                          "config.json and name them as module.Class)")


def _local_pretrained(name: str) -> Path | None:
    """The directory ``model.pretrained`` names, or None for a hub id.

    Raises:
        ConfigError: a path that is not a model directory (a typo must not become a hub lookup).
    """
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ConfigError(f"model.pretrained: {path} has no config.json; give a directory written by "
                              "save_pretrained (or a downloaded hub snapshot), or a hub id such as org/name")
        _check_local_config(path / "config.json")
        return path
    if path.exists() or name.startswith(("/", ".", "~")) or name.count("/") > 1:
        raise ConfigError(f"model.pretrained: {name}: no such directory; give a directory written by "
                          "save_pretrained (or a downloaded hub snapshot), or a hub id such as org/name")
    return None


# What a sequence classifier adds to a pretrained body: new (missing) or resized weights are fine here only.
_NEW_HEAD_PREFIXES = ("score.", "classifier.", "pooler.", "bert.pooler.")


def _check_loaded(name: str, info: dict[str, Any]) -> None:
    """Refuse a load that silently re-initialised body weights (ignore_mismatched_sizes would)."""
    mismatched = sorted(k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys", []))
    mismatched = [k for k in mismatched if not k.startswith(_NEW_HEAD_PREFIXES)]
    if mismatched:
        raise ConfigError(f"model.pretrained {name!r}: {len(mismatched)} weights of the checkpoint have other shapes "
                          f"than the model built from it (e.g. {mismatched[0]}): model.config must not change the "
                          "architecture's sizes of a pretrained model; remove those keys")
    missing = sorted(k for k in info.get("missing_keys", []) if not k.startswith(_NEW_HEAD_PREFIXES))
    if missing:
        raise ConfigError(f"model.pretrained {name!r}: {len(missing)} weights are not in the checkpoint "
                          f"(e.g. {missing[0]}); it does not hold this architecture's weights")


def _from_pretrained(mc: ModelConfig, spec: DataSpec) -> nn.Module:
    from transformers import AutoModelForSequenceClassification

    assert mc.pretrained is not None
    local = _local_pretrained(mc.pretrained)
    kwargs: dict[str, Any] = dict(mc.config)
    if mc.load_dtype:
        kwargs["dtype"] = getattr(torch, mc.load_dtype)
    try:
        model, info = AutoModelForSequenceClassification.from_pretrained(
            str(local) if local else mc.pretrained,
            num_labels=spec.num_labels,
            trust_remote_code=mc.trust_remote_code,
            ignore_mismatched_sizes=True,  # the classification head is new
            local_files_only=local is not None,  # a local directory never reaches for the hub
            output_loading_info=True,
            **kwargs,
        )
    except OSError as exc:  # missing weight files, no network for a hub id
        raise ConfigError(f"model.pretrained {mc.pretrained!r}: {exc}") from None
    _check_loaded(mc.pretrained, info)
    vocab = int(getattr(model.config, "vocab_size", spec.vocab_size))
    if vocab < spec.vocab_size:
        raise ConfigError(
            f"model {mc.pretrained!r} has a vocabulary of {vocab} tokens, the data uses {spec.vocab_size}: "
            "the shards were converted with another tokenizer; re-convert with the model's tokenizer"
        )
    model.config.pad_token_id = spec.pad_id  # last-token pooling (Llama) finds the padding by this id
    return model


def _build_llama(mc: ModelConfig, spec: DataSpec) -> nn.Module:
    if mc.pretrained:
        return _from_pretrained(mc, spec)
    from transformers import AutoModelForSequenceClassification, LlamaConfig

    defaults = {"hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4, "num_attention_heads": 4,
                "max_position_embeddings": 512, "tie_word_embeddings": False}
    cfg = LlamaConfig(**_fresh_kwargs(spec, dict(mc.config), defaults))
    return AutoModelForSequenceClassification.from_config(cfg)


def _build_bert_family(defaults: dict[str, Any]) -> Callable[[ModelConfig, DataSpec], nn.Module]:
    def build(mc: ModelConfig, spec: DataSpec) -> nn.Module:
        if mc.pretrained:
            return _from_pretrained(mc, spec)
        from transformers import AutoModelForSequenceClassification, BertConfig

        cfg = BertConfig(**_fresh_kwargs(spec, dict(mc.config), defaults))
        return AutoModelForSequenceClassification.from_config(cfg)

    return build


def _build_ngram(mc: ModelConfig, spec: DataSpec) -> nn.Module:
    c = {**NGRAM_DEFAULTS, **dict(mc.config)}
    stride = c.pop("stride") or spec.token_stride
    return NGramClassifier(num_labels=spec.num_labels, max_length=spec.max_length, stride=stride, **c)


MODEL_BUILDERS: dict[str, Callable[[ModelConfig, DataSpec], nn.Module]] = {
    "llama": _build_llama,
    "ngram": _build_ngram,
    "bert": _build_bert_family({"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
                                "intermediate_size": 1024, "type_vocab_size": 1, "max_position_embeddings": 512}),
    # DNABERT-2-117M sizes (its hub config); fresh builds are plain BERT (see module docstring).
    "dnabert2": _build_bert_family({"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                                    "intermediate_size": 3072, "type_vocab_size": 2, "max_position_embeddings": 512}),
}
if set(MODEL_BUILDERS) != set(ARCHS):  # the config validates against ARCHS without importing this module
    raise ImportError(f"train.config.ARCHS {ARCHS} differs from train.model.MODEL_BUILDERS {sorted(MODEL_BUILDERS)}")

# Tiny configs of each architecture: what `smoke_model_config` builds instead of a download.
SMOKE_CONFIGS: dict[str, dict[str, Any]] = {
    "llama": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2},
    "bert": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4},
    "dnabert2": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4},
    "ngram": {"hash_bits": 12, "hidden_size": 16},
}


def smoke_model_config(mc: ModelConfig) -> ModelConfig:
    """A tiny, download-free variant of ``mc`` with the same architecture, checkpointing and LoRA.

    Used to check a GPU config on a CPU machine (one step of the real loop).
    """
    return dataclasses.replace(mc, pretrained=None, load_dtype=None, trust_remote_code=False,
                               config=dict(SMOKE_CONFIGS[mc.arch]))


def _apply_lora(model: nn.Module, mc: ModelConfig) -> nn.Module:
    try:
        import peft
    except ImportError:
        raise ConfigError(
            "model.lora needs the `peft` package: pip install 'readshard[lora]' (or remove model.lora)"
        ) from None
    assert mc.lora is not None
    lcfg = peft.LoraConfig(task_type=peft.TaskType.SEQ_CLS, r=mc.lora.r, lora_alpha=mc.lora.alpha,
                           lora_dropout=mc.lora.dropout, target_modules=list(mc.lora.target_modules))
    try:
        return peft.get_peft_model(model, lcfg)
    except ValueError as exc:
        raise ConfigError(f"model.lora: {exc}") from None


def _require_transformers() -> None:
    # transformers is the training extra, not a core dependency: converting and loading need none of it.
    import importlib.util

    if importlib.util.find_spec("transformers") is None:
        raise ConfigError("the models are built with `transformers`, which is not installed; install the training "
                          "extra: pip install -e '.[train]' (or make install)")


def build_model(mc: ModelConfig, spec: DataSpec) -> nn.Module:
    """Build the classifier ``mc`` describes for data ``spec``.

    Args:
        mc: the ``model`` section of the config.
        spec: vocabulary size, pad id, number of labels and max length of the data.

    Returns:
        A ``transformers`` sequence classifier (wrapped by ``peft`` when ``mc.lora`` is set).

    Raises:
        ConfigError: unknown architecture, bad overrides, or a vocabulary smaller than the data's.
    """
    if mc.arch != "ngram":
        _require_transformers()
    try:
        builder = MODEL_BUILDERS[mc.arch]
    except KeyError:
        raise ConfigError(f"model.arch: {mc.arch!r}; choose one of {', '.join(sorted(MODEL_BUILDERS))}") from None
    try:
        model = builder(mc, spec)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"model ({mc.arch}): {exc}") from None
    if mc.gradient_checkpointing:
        # Non-reentrant checkpointing works with frozen inputs (LoRA) without extra hooks.
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if mc.lora is not None:
        model = _apply_lora(model, mc)
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(total, trainable)`` parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return total, trainable
