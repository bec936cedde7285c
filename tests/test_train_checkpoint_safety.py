"""A checkpoint is untrusted input: ``--resume`` never runs pickled code, and a corrupt or
foreign checkpoint ends in one clear error naming the file (``python -m train``'s ``main``, in-process)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from _safety_helpers import assert_refused, snapshot
from _train_helpers import TINY
from conftest import REPO, Ran, train_cli



class _Payload:
    """Unpickling this runs ``touch MARKER`` (what a crafted checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _train(split: tuple[Path, Path], out: Path, *extra: str) -> Ran:
    cfg = out.parent / "c.yaml"
    cfg.write_text(
        f"data: {{train: {split[0]}, val: {split[1]}, num_workers: 0}}\n"
        f"model: {{arch: bert, config: {json.dumps(TINY)}}}\n"
        "train: {batch_size: 8, max_steps: 2, progress: false, baseline: false, threads: 1}\n"
    )
    return train_cli("--config", cfg, "--out", out, *extra, cwd=REPO)


@pytest.fixture(scope="module")
def real_checkpoint(split: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> bytes:
    out = tmp_path_factory.mktemp("real") / "run"
    res = _train(split, out, "--stop-at-step", "1")
    assert res.returncode == 0, res.stderr
    return (out / "checkpoint.pt").read_bytes()


def _crafted(tmp: Path, marker: Path) -> bytes:
    path = tmp / "evil.pt"
    torch.save({"step": 1, "epoch": 0, "model": {}, "payload": _Payload(marker)}, path)
    return path.read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pickle_payload", "random_bytes", "truncated", "not_a_dict", "missing_key"])
def test_bad_checkpoint_is_a_clear_error(split: tuple[Path, Path], real_checkpoint: bytes, tmp_path: Path,
                                         kind: str) -> None:
    marker = tmp_path / "pwned"
    work = tmp_path / "w"
    work.mkdir()
    out = work / "run"
    out.mkdir()
    data = {
        "pickle_payload": lambda: _crafted(tmp_path, marker),
        "random_bytes": lambda: os.urandom(4096),
        "truncated": lambda: real_checkpoint[: len(real_checkpoint) // 2],
        "not_a_dict": lambda: _save_bytes(tmp_path, [1, 2, 3]),
        "missing_key": lambda: _save_bytes(tmp_path, {"step": 1}),
    }[kind]()
    ckpt = out / "checkpoint.pt"
    ckpt.write_bytes(data)
    res = _train(split, out, "--resume")
    assert_refused(res, str(ckpt))
    assert not marker.exists(), "the checkpoint's pickled code ran"
    assert ckpt.read_bytes() == data


def _save_bytes(tmp: Path, obj: object) -> bytes:
    path = tmp / "obj.pt"
    torch.save(obj, path)
    return path.read_bytes()


def test_load_checkpoint_never_runs_code(tmp_path: Path) -> None:
    from train.checkpoint import load_checkpoint

    marker = tmp_path / "pwned"
    path = tmp_path / "c.pt"
    path.write_bytes(_crafted(tmp_path, marker))
    with pytest.raises(Exception) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and not marker.exists()


def test_resume_from_a_real_checkpoint_still_works(split: tuple[Path, Path], real_checkpoint: bytes,
                                                   tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes(real_checkpoint)
    (tmp_path / "c.yaml").write_text("")  # the config _train writes
    before = snapshot(tmp_path, skip=(out, tmp_path / "c.yaml"))
    res = _train(split, out, "--resume")
    assert res.returncode == 0, res.stderr
    assert "resumed from" in res.stderr
    assert json.loads((out / "metrics.json").read_text())["steps"] == 2
    assert snapshot(tmp_path, skip=(out, tmp_path / "c.yaml")) == before
