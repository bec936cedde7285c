"""The RTX 4090 configs' ``from_pretrained`` path without a hub: a tiny model of the same
architecture is written with ``save_pretrained`` (as the published checkpoints are: a
language-model head, replaced by a new classification head) and ``python -m train --config
configs/rtx4090_*.yaml --pretrained DIR`` trains from it, in a real subprocess whose hub
endpoint is a local socket that counts connections: loading a local directory must make none.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch
from safetensors.torch import load_file

from _train_helpers import TINY
from train.config import ConfigError, ModelConfig
from train.model import DataSpec, build_model
from conftest import REPO

# config file -> (tokenizer its data needs, how its published checkpoint is saved)
CASES = {
    "rtx4090_metagene1.yaml": ("metagene-1", "LlamaForCausalLM"),
    "rtx4090_dnabert2.yaml": ("dnabert-2", "BertForMaskedLM"),
}


def save_tiny_checkpoint(directory: Path, head: str, vocab_size: int) -> Path:
    """A tiny random ``head`` model (1 layer family member of the config's arch) via save_pretrained."""
    import transformers

    cfg_cls = transformers.LlamaConfig if head.startswith("Llama") else transformers.BertConfig
    torch.manual_seed(0)
    model = getattr(transformers, head)(cfg_cls(vocab_size=vocab_size, pad_token_id=0, **TINY))
    model.save_pretrained(directory)
    return directory


class ConnectionCounter:
    """A listening TCP socket on localhost that accepts and counts every connection."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.count += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def hub_endpoint() -> Iterator[ConnectionCounter]:
    counter = ConnectionCounter()
    yield counter
    counter.close()


def offline_env(tmp_path: Path, counter: ConnectionCounter) -> dict[str, str]:
    """The environment of a user with no hub: an empty cache, an endpoint that only counts, not offline mode."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(PYTHONPATH=str(REPO), HF_HOME=str(tmp_path / "hf-home"), HF_ENDPOINT=f"http://127.0.0.1:{counter.port}",
               NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return env


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_train_from_a_local_pretrained_directory_never_reaches_the_hub(
        name: str, tmp_path: Path, hub_endpoint: ConnectionCounter, make_split: Callable[..., tuple[Path, Path]]) -> None:
    tokenizer, head = CASES[name]
    # the datasets test_train_gpu_configs also trains on
    train, val = make_split(num_classes=3, train_per_class=40, val_per_class=10, max_length=64, tokenizer=tokenizer)
    vocab = json.loads((train / "manifest.json").read_text())["tokenizer"]["vocab_size"]
    ckpt = save_tiny_checkpoint(tmp_path / "pretrained", head, vocab)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "train", "--config", str(REPO / "configs" / name), "--pretrained", str(ckpt),
         "--train", str(train), "--val", str(val), "--out", str(out), "--max-steps", "2", "--batch-size", "8",
         "--grad-accum", "1", "--eval-every", "0", "--checkpoint-every", "0", "--num-workers", "1",
         "--device", "cpu", "--threads", "1", "--no-progress", "--no-baseline"],
        cwd=tmp_path, env=offline_env(tmp_path, hub_endpoint), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["val_reads"] == 30
    assert metrics["model"]["pretrained"] == str(ckpt)
    if name == "rtx4090_metagene1.yaml":  # LoRA as configured: the frozen base came from the directory
        assert metrics["model"]["trainable_parameters"] < metrics["model"]["parameters"] / 2
    assert hub_endpoint.count == 0, "loading a local directory connected to the hub endpoint"


def test_the_directory_s_weights_are_loaded_and_the_head_is_new(tmp_path: Path) -> None:
    ckpt = save_tiny_checkpoint(tmp_path / "pretrained", "LlamaForCausalLM", 1024)
    saved = load_file(ckpt / "model.safetensors")
    model = build_model(ModelConfig(arch="llama", pretrained=str(ckpt), load_dtype="float32"),
                        DataSpec(vocab_size=1024, pad_id=0, num_labels=5, max_length=48))
    state = model.state_dict()
    for key in ("model.embed_tokens.weight", "model.layers.1.mlp.down_proj.weight"):
        assert torch.equal(state[key], saved[key]), key
    assert state["score.weight"].shape == (5, TINY["hidden_size"]) and "lm_head.weight" not in state
    assert model.config.pad_token_id == 0 and model.config.num_labels == 5


@pytest.mark.parametrize(("name", "message"), [
    ("missing", "no such directory"),          # a typo'd path must not become a hub lookup
    ("missing/deeper", "no such directory"),
    ("", "has no config.json"),                # a directory, but not a model
    ("weights.safetensors", "no such directory"),  # a file, not a directory
])
def test_a_bad_local_path_is_a_clear_config_error(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "weights.safetensors").write_bytes(b"x")
    path = tmp_path / name if name else tmp_path
    with pytest.raises(ConfigError, match=message):
        build_model(ModelConfig(arch="llama", pretrained=str(path)), DataSpec(1024, 0, 3, 48))


@pytest.mark.parametrize(("config", "message"), [
    ({"auto_map": {"AutoConfig": "org/repo--configuration_x.XConfig"}}, "auto_map points to code in a hub"),
    ({"auto_map": {"AutoTokenizer": [None, "org/repo--tok.Fast"]}}, "auto_map points to code in a hub"),
    ([1, 2], "expected a JSON object"),
    ("{not json", "not valid JSON"),
])
def test_a_local_config_that_would_reach_the_hub_or_is_not_json_is_refused(tmp_path: Path, config: object,
                                                                           message: str) -> None:
    ckpt = save_tiny_checkpoint(tmp_path / "pretrained", "LlamaForCausalLM", 1024)
    if isinstance(config, dict):
        config = json.dumps({**json.loads((ckpt / "config.json").read_text()), **config})
    (ckpt / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    with pytest.raises(ConfigError, match=message) as exc:
        build_model(ModelConfig(arch="llama", pretrained=str(ckpt), trust_remote_code=True), DataSpec(1024, 0, 3, 48))
    assert str(ckpt / "config.json") in str(exc.value)


@pytest.mark.parametrize(("override", "message"), [
    ({"hidden_size": 64}, "other shapes than the model built from it"),  # would silently re-initialise the body
    ({"num_hidden_layers": 3}, "are not in the checkpoint"),            # a layer the checkpoint does not have
])
def test_config_overrides_that_change_the_pretrained_shapes_are_refused(tmp_path: Path, override: dict,
                                                                        message: str) -> None:
    ckpt = save_tiny_checkpoint(tmp_path / "pretrained", "LlamaForCausalLM", 1024)
    with pytest.raises(ConfigError, match=message):
        build_model(ModelConfig(arch="llama", pretrained=str(ckpt), config=override), DataSpec(1024, 0, 3, 48))


# A real process (~3 s, torch and transformers imported): the hub endpoint and cache come from its
# environment. The same refusal in-process: test_a_bad_local_path_is_a_clear_config_error.
@pytest.mark.slow
def test_a_bad_pretrained_path_exits_2_with_one_paragraph(tmp_path: Path, hub_endpoint: ConnectionCounter,
                                                          split: tuple[Path, Path]) -> None:
    train, val = split
    proc = subprocess.run(
        [sys.executable, "-m", "train", "--config", str(REPO / "configs" / "rtx4090_metagene1.yaml"),
         "--pretrained", str(tmp_path / "no-such-model"), "--train", str(train), "--val", str(val),
         "--out", str(tmp_path / "out"), "--device", "cpu", "--no-progress", "--no-baseline"],
        cwd=tmp_path, env=offline_env(tmp_path, hub_endpoint), capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "no-such-model: no such directory" in proc.stderr and "Traceback" not in proc.stderr
    assert hub_endpoint.count == 0
