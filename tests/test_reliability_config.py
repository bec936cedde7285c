"""Config files are untrusted: a YAML alias bomb is refused before anything walks it (a real CLI
process under a memory limit), and every config error is exit code 2 with one paragraph naming the
file and key (the CLIs in-process: the exit path is the one the bomb's process takes)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from _safety_helpers import assert_refused, snapshot
from conftest import DATA, REPO, Ran, convert_cli, train_cli

MAPPING = DATA / "mapping.tsv"


def _bomb(levels: int = 9, width: int = 9, *, mapping: bool) -> str:
    """Nested anchors: a few hundred bytes that expand to width**levels values."""
    lines = []
    for i in range(levels):
        if mapping:
            items = ", ".join(f"k{j}: {'1' if i == 0 else '*a' + str(i - 1)}" for j in range(width))
            lines.append(f"  l{i}: &a{i} {{{items}}}")
        else:
            items = ", ".join("x" if i == 0 else f"*a{i - 1}" for _ in range(width))
            lines.append(f"    l{i}: &a{i} [{items}]")
    return "\n".join(lines) + "\n"


def _limit_memory() -> None:
    # Were the bomb expanded, fail fast instead of taking the machine's memory.
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))


def _run(tool: str, *args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", tool, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)}, preexec_fn=_limit_memory)


# process=True: a real CLI process under _limit_memory, for the alias bombs (an expansion must not
# take the test process's memory); the other config errors run in-process.
def _convert_with(tmp_path: Path, text: str | bytes, *,
                  process: bool = False) -> tuple[subprocess.CompletedProcess[str] | Ran, Path]:
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(text.encode() if isinstance(text, str) else text)
    before = snapshot(tmp_path)
    args = (DATA / "multiline.fa", "--mapping", MAPPING, "--out", tmp_path / "out", "--config", cfg,
            "--tokenizer", "char", "--no-progress")
    res = _run("convert", *args) if process else convert_cli(*args, cwd=REPO)
    assert snapshot(tmp_path) == before
    return res, cfg


def _train_with(tmp_path: Path, text: str | bytes, *,
                process: bool = False) -> tuple[subprocess.CompletedProcess[str] | Ran, Path]:
    cfg = tmp_path / "t.yaml"
    cfg.write_bytes(text.encode() if isinstance(text, str) else text)
    before = snapshot(tmp_path)
    args = ("--config", cfg, "--out", tmp_path / "run")
    res = _run("train", *args) if process else train_cli(*args, cwd=REPO)
    assert snapshot(tmp_path) == before
    return res, cfg


def test_convert_config_alias_bomb_is_refused(tmp_path: Path) -> None:
    res, cfg = _convert_with(tmp_path, "data:\n" + _bomb(mapping=True), process=True)
    assert_refused(res, str(cfg), "alias")


def test_train_config_alias_bomb_is_refused(tmp_path: Path) -> None:
    text = "model:\n  arch: bert\n  config:\n" + "".join("  " + line + "\n" for line in _bomb(mapping=False).splitlines())
    res, cfg = _train_with(tmp_path, text, process=True)
    assert_refused(res, str(cfg), "alias")


@pytest.mark.parametrize("text, needles", [
    ("a: &a [*a]\n", ["recursive"]),
    ("output: {reads_per_shard: lots}\n", ["output.reads_per_shard", "lots"]),
    ("convert: {jobs: [1, 2]}\n", ["convert.jobs"]),
    ("tokenizer: {max_length: big}\n", ["tokenizer.max_length"]),
    ("data: {mapping: 7}\n", ["data.mapping"]),
    ("- just\n- a list\n", ["mapping"]),
    ("data: {mapping: [unclosed\n", ["not valid YAML"]),
    (b"data: {header_regex: caf\xe9}\n", ["line 1", "UTF-8"]),
])
def test_convert_config_errors_name_file_and_key(tmp_path: Path, text: str | bytes, needles: list[str]) -> None:
    res, cfg = _convert_with(tmp_path, text)
    assert_refused(res, str(cfg), *needles)


@pytest.mark.parametrize("text, needles", [
    ("model: {arch: bert}\noptim: {betas: [a, b]}\n", ["optim.betas"]),
    ("model: {arch: bert}\na: &a [*a]\n", ["recursive"]),
    (b"model: {arch: b\xe9rt}\n", ["line 1", "UTF-8"]),
    ("model: {arch: bert}\ntrain: {batch_size: many}\n", ["train.batch_size"]),
])
def test_train_config_errors_name_file_and_key(tmp_path: Path, text: str | bytes, needles: list[str]) -> None:
    res, cfg = _train_with(tmp_path, text)
    assert_refused(res, str(cfg), *needles)
