"""``python benchmarks/gpu_check.py --tiny --json``: the GPU check's whole path (sample converted
with each config's tokenizer, random weights written with save_pretrained, the training loop of
`make train` from that directory, timed steps through the loop's hook) runs on CPU with tiny
shapes, in real subprocesses, and reports every RTX 4090 config. One run of the one-shot script
``benchmarks/gpu_check.sh`` (which runs gpu_check.py) serves every test of the report. No timing
assertions."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, in_process

SCRIPT = REPO / "benchmarks" / "gpu_check.py"
CONFIGS = sorted(p.stem for p in (REPO / "configs").glob("rtx4090_*.yaml"))


def run_check(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


# Stands in for $PYTHON in gpu_check.sh: runs the interpreter, keeping a copy of what gpu_check.py
# prints on stdout (the script itself sends it to /dev/null) so the test can compare it with the file.
_PY_TEE = """#!/usr/bin/env bash
if [ "${1:-}" = benchmarks/gpu_check.py ]; then "$REAL_PY" "$@" | tee -a "$CAPTURE"; exit "${PIPESTATUS[0]}"; fi
exec "$REAL_PY" "$@"
"""


@pytest.fixture(scope="module")
def one_shot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """``bash benchmarks/gpu_check.sh OUT`` with ``--tiny`` on every config: (OUT, the report)."""
    tmp = tmp_path_factory.mktemp("gpu-check")
    out, work = tmp / "out", tmp / "work"
    work.mkdir()
    tee = tmp / "python"
    tee.write_text(_PY_TEE)
    tee.chmod(0o755)
    env = {**os.environ, "PYTHON": str(tee), "REAL_PY": sys.executable, "CAPTURE": str(tmp / "stdout.json"),
           "TMPDIR": str(work), "LIMIT": "900", "GPU_CHECK_ARGS": "--tiny"}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(out)], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=1000)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert json.loads((tmp / "stdout.json").read_text()) == report  # --json prints what --out-json writes
    assert not list(work.glob("readshard-gpu-check-*")), "its temporary directory must be removed"
    return out, report


@pytest.fixture(scope="module")
def tiny_report(one_shot: tuple[Path, dict]) -> dict:
    return one_shot[1]


@pytest.mark.slow
def test_tiny_check_reports_every_rtx4090_config(tiny_report: dict) -> None:
    assert tiny_report["device"] == "cpu" and tiny_report["tiny"] is True
    assert [c["name"] for c in tiny_report["configs"]] == CONFIGS == ["rtx4090_dnabert2", "rtx4090_metagene1"]


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_each_config_has_its_figures(tiny_report: dict, name: str) -> None:
    r = next(c for c in tiny_report["configs"] if c["name"] == name)
    assert r["error"] is None
    assert r["steps"] == 2 and r["warmup_steps"] == 1
    assert math.isfinite(r["train_reads_per_s"]) and r["train_reads_per_s"] > 0
    assert 0 <= r["loader_wait_fraction"] <= 1 and r["seconds_per_step"] > 0
    assert r["peak_memory_gib"] == {"allocated": None, "reserved": None}  # CPU: no CUDA counters
    assert r["fits_24gib"] is None
    assert r["reads_per_step"] == r["batch_size"] * r["grad_accum"] and r["batch_size"] == 8
    model = r["model"]
    assert model["random_weights"] and model["parameters"] >= model["trainable_parameters"] > 0


@pytest.mark.slow
def test_the_configured_setup_is_what_ran(tiny_report: dict) -> None:
    by_name = {c["name"]: c for c in tiny_report["configs"]}
    mg, db = by_name["rtx4090_metagene1"], by_name["rtx4090_dnabert2"]
    assert mg["model"]["stands_for"] == "metagene-ai/METAGENE-1" and mg["model"]["arch"] == "llama"
    assert mg["model"]["weights_dtype"] == "bfloat16" and mg["model"]["gradient_checkpointing"]
    assert mg["model"]["lora_r"] == 16 and mg["model"]["trainable_parameters"] < mg["model"]["parameters"] / 2
    assert mg["grad_accum"] == 4 and mg["max_length"] == 48  # METAGENE-1 BPE tokens of the sample
    assert db["model"]["stands_for"] == "zhihan1996/DNABERT-2-117M" and db["model"]["lora_r"] is None
    assert db["model"]["trainable_parameters"] == db["model"]["parameters"]  # full fine-tuning


@pytest.fixture(scope="module")
def gpu_check_main():
    """``main`` of benchmarks/gpu_check.py (a script, not a package module), loaded once."""
    spec = importlib.util.spec_from_file_location("_gpu_check_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.main


@pytest.mark.parametrize(("args", "message"), [
    (["--tiny", "--steps", "0"], "--steps: must be >= 1"),
    (["--tiny", "--configs", "configs/no-such.yaml"], "no such config file"),
    (["--tiny", "--configs", "configs/convert_sample.yaml"], "not a training config"),
])
def test_bad_input_exits_2_without_a_traceback(args: list[str], message: str, gpu_check_main, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # main sets it: restored after the test
    proc = in_process(gpu_check_main, args, REPO)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow  # a real process importing torch
def test_without_a_gpu_it_says_to_use_tiny(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the full check would run")
    proc = run_check(tmp_path=tmp_path)  # the one real process of an exit-2 path
    assert proc.returncode == 2 and "--tiny" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_the_one_shot_script_for_a_gpu_session_writes_its_files(one_shot: tuple[Path, dict]) -> None:
    """benchmarks/gpu_check.sh, here with --tiny (the GPU parts cannot run here)."""
    out, report = one_shot
    assert [c["name"] for c in report["configs"]] == CONFIGS and all(c["error"] is None for c in report["configs"])
    assert "torch" in (out / "env.txt").read_text() and (out / "gpu_check.log").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["env.txt", "gpu_check.json", "gpu_check.log"]
