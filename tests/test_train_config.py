"""Training configs: every YAML in configs/ with a `model:` section parses; bad ones fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from train.config import ConfigError, apply_overrides, config_from_dict, is_training_config, load_config
from conftest import REPO

TRAINING_CONFIGS = sorted(p for p in (REPO / "configs").glob("*.yaml") if is_training_config(p))


def test_repo_ships_the_training_configs() -> None:
    names = {p.name for p in TRAINING_CONFIGS}
    assert {"sample.yaml", "rtx4090_metagene1.yaml", "rtx4090_dnabert2.yaml"} <= names


@pytest.mark.parametrize("path", TRAINING_CONFIGS, ids=lambda p: p.name)
def test_every_training_config_parses(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.train.max_steps >= 1 and cfg.train.batch_size >= 1
    # Round trip: the dict form (written to OUT/config.json and checkpoints) parses again.
    assert config_from_dict(cfg.to_dict()) == cfg


def test_converter_configs_are_not_training_configs(tmp_path: Path) -> None:
    p = tmp_path / "convert_x.yaml"
    p.write_text("tokenizer: {name: metagene-1}\n")
    assert not is_training_config(p)
    with pytest.raises(ConfigError, match="no `model:` section"):
        load_config(p)


GOOD = {"model": {"arch": "llama"}}


@pytest.mark.parametrize(
    "raw, match",
    [
        ({"model": {"arch": "llama"}, "trian": {}}, "unknown section"),
        ({"model": {"arch": "llama", "hidden": 3}}, "unknown key.*hidden"),
        ({"model": {"arch": "gpt9"}}, "model.arch.*gpt9"),
        ({**GOOD, "train": {"batch_size": 0}}, "train.batch_size: must be >= 1"),
        ({**GOOD, "train": {"batch_size": "big"}}, "train.batch_size: expected int"),
        ({**GOOD, "train": {"precision": "fp8"}}, "train.precision"),
        ({**GOOD, "train": {"device": "tpu"}}, "train.device"),
        ({**GOOD, "optim": {"lr": -1}}, "optim.lr: must be >= 0"),
        ({**GOOD, "optim": {"betas": [0.9]}}, "optim.betas"),
        ({**GOOD, "optim": {"min_lr_ratio": 2}}, "min_lr_ratio"),
        ({**GOOD, "data": {"num_workers": -1}}, "data.num_workers"),
        ({**GOOD, "data": {"train": ""}}, "data.train"),
        ({"model": {"arch": "llama", "load_dtype": "int3"}}, "load_dtype"),
        ({"model": {"arch": "llama", "lora": {"rank": 4}}}, "lora.*unknown key"),
        ({"model": {"arch": "llama", "lora": {"target_modules": []}}}, "target_modules"),
        ({"model": "llama"}, "expected a mapping"),
    ],
)
def test_bad_configs_name_the_key(raw: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        config_from_dict(raw)


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_overrides_replace_values_and_skip_unset() -> None:
    cfg = load_config(REPO / "configs" / "sample.yaml")
    new = apply_overrides(cfg, {"train.max_steps": 7, "data.train": "/x", "out": "/o", "train.seed": None})
    assert (new.train.max_steps, new.data.train, new.out, new.train.seed) == (7, "/x", "/o", cfg.train.seed)
    with pytest.raises(ConfigError, match="unknown key"):
        apply_overrides(cfg, {"train.nope": 1})
    with pytest.raises(ConfigError, match="train.batch_size"):
        apply_overrides(cfg, {"train.batch_size": -3})
