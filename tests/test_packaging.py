"""What a plain install needs: the converter and the loaders stand without the training and bench extras."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
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


def test_convert_and_loaders_import_neither_extra() -> None:
    code = ("import sys, convert.pipeline, convert.cli, loaders, loaders.dataset; "
            "print(sorted(m for m in ('transformers', 'psutil', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_training_without_transformers_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "transformers" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[train\]'"):
        build_model(ModelConfig(), DataSpec(vocab_size=16, pad_id=0, num_labels=2, max_length=8))
