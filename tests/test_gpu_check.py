"""``python benchmarks/gpu_check.py --tiny --json``: the GPU check's whole path (sample converted
with each config's tokenizer, random weights written with save_pretrained, the training loop of
`make train` from that directory, timed steps through the loop's hook) runs on CPU with tiny
shapes, in real subprocesses, and reports every RTX 4090 config. No timing assertions."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"
CONFIGS = sorted(p.stem for p in (REPO / "configs").glob("rtx4090_*.yaml"))


def run_check(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("gpu-check")
    proc = run_check("--tiny", "--json", "--out-json", str(tmp / "report.json"), tmp_path=tmp)
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout)
    assert json.loads((tmp / "report.json").read_text()) == report
    assert not list(tmp.glob("readshard-gpu-check-*")), "its temporary directory must be removed"
    return report


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


@pytest.mark.parametrize(("args", "message"), [
    (["--tiny", "--steps", "0"], "--steps: must be >= 1"),
    (["--tiny", "--configs", "configs/no-such.yaml"], "no such config file"),
    (["--tiny", "--configs", "configs/convert_sample.yaml"], "not a training config"),
])
def test_bad_input_exits_2_without_a_traceback(args: list[str], message: str, tmp_path: Path) -> None:
    proc = run_check(*args, tmp_path=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_without_a_gpu_it_says_to_use_tiny(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: the full check would run")
    proc = run_check(tmp_path=tmp_path)
    assert proc.returncode == 2 and "--tiny" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_the_one_shot_script_for_a_gpu_session_writes_its_files(tmp_path: Path) -> None:
    """benchmarks/gpu_check.sh, here with --tiny and one config (the GPU parts cannot run here)."""
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path), "LIMIT": "400",
           "GPU_CHECK_ARGS": "--tiny --configs configs/rtx4090_dnabert2.yaml"}
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert [c["name"] for c in report["configs"]] == ["rtx4090_dnabert2"] and report["configs"][0]["error"] is None
    assert "torch" in (out / "env.txt").read_text() and (out / "gpu_check.log").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["env.txt", "gpu_check.json", "gpu_check.log"]
