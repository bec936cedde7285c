"""What a plain install needs: the converter and the loaders stand without the training and bench extras."""

from __future__ import annotations

import importlib.util
import tomllib

import pytest

from conftest import REPO
from train.config import ConfigError, ModelConfig
from train.model import DataSpec, build_model


def test_core_dependencies_leave_out_the_extras() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    assert "psutil" not in core and "transformers" not in core
    assert any(d.startswith("transformers") for d in project["optional-dependencies"]["train"])
    assert any(d.startswith("psutil") for d in project["optional-dependencies"]["bench"])


def test_convert_and_loaders_import_neither_extra(fresh_modules: dict[str, frozenset[str]]) -> None:
    loaded = fresh_modules["converter"]  # a fresh process after shards, loaders, convert.pipeline, convert.cli
    assert {"convert.pipeline", "convert.cli", "loaders.dataset"} <= loaded
    assert sorted(m for m in ("transformers", "psutil", "matplotlib") if m in loaded) == []


def test_training_without_transformers_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "transformers" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[train\]'"):
        build_model(ModelConfig(), DataSpec(vocab_size=16, pad_id=0, num_labels=2, max_length=8))
