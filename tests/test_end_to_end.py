"""The user's path, in real processes: the README's quick start (`make convert`), `make train` with
the default config (configs/sample.yaml) stopped after a step, the refusal to reuse its --out,
each command that refusal advises (`--resume` to the end, `make train TRAIN_FLAGS=--overwrite`),
the tokenizer refusal and the re-conversion it advises, then `make predict` on reads the model
has not seen.

The sample lives in a temporary ``data/sample`` (shared with tests/test_readme.py); the config's
relative paths point into the checkout, so every training command adds ``--train/--val/--out``
for the temporary directories, and ``--max-steps 3`` (with a small baseline) to stay short.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, make

pytestmark = pytest.mark.slow


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc


def _refused(proc: subprocess.CompletedProcess[str]) -> str:
    """A refusal through make: python's exit code 2 (make reports it), one paragraph, no traceback."""
    assert proc.returncode != 0 and "Error 2" in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    return errors[0]


def _python(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(REPO)})


def test_quick_start_train_resume_overwrite_predict(after_make_convert: Path, tmp_path: Path) -> None:
    t0 = time.monotonic()
    steps: list[str] = []

    def step(name: str) -> None:
        steps.append(f"{time.monotonic() - t0:6.1f} s  {name}")

    root = after_make_convert
    sample = root / "data" / "sample"
    # 1. the quick start: `make convert` simulated the sample and converted train and val
    log = (root / "make-convert.log").read_text()
    assert re.search(r"readshard: 45,002 reads in = 45,002 written", log), log[-2000:]
    assert re.search(r"readshard: 4,998 reads in = 4,998 written", log), log[-2000:]
    step("make convert (session fixture, shared with test_readme)")

    run = tmp_path / "run"
    where = f"--train {sample / 'train'} --val {sample / 'val'} --out {run}"
    short = "--max-steps 3 --eval-every 0 --baseline-max-reads 2000 --no-progress"

    # 2. `make train` with the default config, stopped after one step as if interrupted
    _ok(make("train", root, f"TRAIN_FLAGS={where} {short} --stop-at-step 1"))
    assert (run / "checkpoint.pt").is_file() and not (run / "metrics.json").exists()
    last = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    assert last["stopped_by"] == "stop_at_step" and last["step"] == 1
    step("make train, stopped after step 1")

    # 3. the same command again: refused, and told what to run instead
    advice = _refused(make("train", root, f"TRAIN_FLAGS={where} {short}"))
    assert f"--out {run} already exists" in advice, advice
    assert "Continue that run with --resume" in advice, advice
    overwrite = re.search(r"`make train TRAIN_FLAGS=([^`]*)`", advice)
    assert overwrite, advice
    step("make train again: refused with advice")

    # 4. advised: continue with --resume, to the end
    resumed = _ok(make("train", root, f"TRAIN_FLAGS={where} {short} --resume"))
    assert "resumed from" in resumed.stderr and "at step 1" in resumed.stderr, resumed.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 3
    step("make train --resume to step 3")

    # 5. advised: `make train TRAIN_FLAGS=--overwrite` (with this test's paths), a fresh run
    _ok(make("train", root, f"TRAIN_FLAGS={where} {short} {overwrite.group(1)}"))
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert not any(e.get("stopped_by") == "stop_at_step" for e in logged), "--overwrite kept the old log"
    assert json.loads((run / "metrics.json").read_text())["steps"] == 3
    step("make train TRAIN_FLAGS=--overwrite")

    # 6. a config expecting other tokens refuses the sample and advises a re-conversion: run it
    other = f"--out {tmp_path / 'bpe-run'} {short}"
    proc = _python("-m", "train", "--config", "configs/sample_metagene1.yaml", "--train", sample / "train",
                   "--val", sample / "val", *shlex.split(other), cwd=REPO)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    m = re.search(r"Re-convert with the expected tokenizer \(`python -m convert INPUT --tokenizer SPEC`\)", proc.stderr)
    assert m, proc.stderr[-3000:]
    bpe = tmp_path / "val-metagene1"
    _ok(_python("-m", "convert", sample / "reads" / "val.fa", "--tokenizer", "metagene-1",
                "--mapping", sample / "reads" / "mapping.tsv", "--out", bpe, "--no-progress", cwd=REPO))
    # Another --out: the refused run left config.json in its --out, so the same command would now be
    # refused as an earlier run (reported; not this test's to change).
    _ok(_python("-m", "train", "--config", "configs/sample_metagene1.yaml", "--train", bpe, "--val", bpe,
                *shlex.split(other.replace("bpe-run", "bpe-run-2")), cwd=REPO))
    step("tokenizer refusal -> python -m convert --tokenizer metagene-1 -> train")

    # 7. `make predict` on reads the model has not seen (another simulation seed)
    unseen = tmp_path / "unseen"
    _ok(_python("-m", "sample.simulate", "--out", unseen, "--fragments-per-species", "20", "--seed", "7",
                "--val-fraction", "0", "--quiet", cwd=REPO))
    n_reads = (unseen / "train.fa").read_text().count(">")
    pred = tmp_path / "predict"
    _ok(make("predict", root, f"RUN={run}", f"INPUT={unseen / 'train.fa'}", f"PREDICT_OUT={pred}",
             "PREDICT_FLAGS=--no-progress"))
    with gzip.open(pred / "predictions.tsv.gz", "rt") as f:
        rows = f.read().splitlines()
    assert len(rows) - 1 == n_reads, (len(rows), n_reads)
    assert (pred / "report.tsv").is_file() and json.loads((pred / "report.json").read_text())
    step(f"make predict on {n_reads} unseen reads")
    print("\n".join(steps))
