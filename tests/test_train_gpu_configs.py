"""The RTX 4090 configs cannot run here (7B / 117M downloads, CUDA): build a tiny model of the same
architecture with the same checkpointing/LoRA settings from each, and run one real training step
on CPU on data converted with the tokenizer the config expects."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path
from typing import Callable

import pytest

from train.config import ConfigError, apply_overrides, load_config
from train.loop import run
from train.model import DataSpec, build_model, count_parameters, smoke_model_config
from conftest import REPO

HAS_PEFT = importlib.util.find_spec("peft") is not None
CASES = {"rtx4090_metagene1.yaml": "metagene-1", "rtx4090_dnabert2.yaml": "dnabert-2"}


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_step_of_a_tiny_model_of_the_same_architecture(name: str, tmp_path: Path,
                                                            make_split: Callable[..., tuple[Path, Path]]) -> None:
    cfg = load_config(REPO / "configs" / name)
    assert cfg.model.pretrained and cfg.train.precision == "bf16"
    train, val = make_split(num_classes=3, train_per_class=40, val_per_class=10, max_length=64, tokenizer=CASES[name])
    model_cfg = smoke_model_config(cfg.model)
    if model_cfg.lora is not None and not HAS_PEFT:
        model_cfg = dataclasses.replace(model_cfg, lora=None)  # the LoRA path needs the `lora` extra
    cfg = dataclasses.replace(cfg, model=model_cfg)
    cfg = apply_overrides(cfg, {"data.train": str(train), "data.val": str(val), "out": str(tmp_path / "out"),
                                "train.max_steps": 1, "train.batch_size": 8, "train.grad_accum": 2,
                                "train.eval_every": 0, "train.checkpoint_every": 0, "train.progress": False,
                                "train.baseline": False, "train.threads": 1, "data.num_workers": 0, "data.eval_max_reads": None})
    result = run(cfg)
    assert result["steps"] == 1 and result["val_reads"] == 30
    assert result["model"]["arch"] == cfg.model.arch
    if cfg.model.lora is not None:  # only the adapters and the head train
        assert result["model"]["trainable_parameters"] < result["model"]["parameters"] / 2
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["steps"] == 1


def test_metagene1_config_is_llama_with_checkpointing_and_lora() -> None:
    cfg = load_config(REPO / "configs" / "rtx4090_metagene1.yaml")
    assert cfg.model.arch == "llama" and cfg.model.gradient_checkpointing and cfg.model.lora is not None
    assert cfg.model.load_dtype == "bfloat16"
    spec = DataSpec(vocab_size=1024, pad_id=0, num_labels=5, max_length=48)
    tiny = smoke_model_config(dataclasses.replace(cfg.model, lora=None))
    model = build_model(tiny, spec)
    assert type(model).__name__ == "LlamaForSequenceClassification"
    assert model.is_gradient_checkpointing and model.config.pad_token_id == 0
    assert model.config.vocab_size == 1024 and model.config.num_labels == 5


@pytest.mark.skipif(HAS_PEFT, reason="peft is installed")
def test_lora_without_peft_says_what_to_install() -> None:
    cfg = load_config(REPO / "configs" / "rtx4090_metagene1.yaml")
    with pytest.raises(ConfigError, match=r"readshard\[lora\]"):
        build_model(smoke_model_config(cfg.model), DataSpec(1024, 0, 3, 48))


@pytest.mark.skipif(not HAS_PEFT, reason="needs the `lora` extra (peft)")
def test_lora_freezes_the_base_model() -> None:
    cfg = load_config(REPO / "configs" / "rtx4090_metagene1.yaml")
    model = build_model(smoke_model_config(cfg.model), DataSpec(1024, 0, 3, 48))
    total, trainable = count_parameters(model)
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable < total and all("lora_" in n or "score" in n for n in names)
    assert any("score" in n for n in names)  # the new classification head trains too
