"""The loader bench as a package: outside ``loaders``, robust to fast competitors and missing extras,
and runnable from a real (non-editable) install away from the source checkout.

No timing assertions (speed targets are checked by the benchmark itself, not by tests).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from readshard_bench.competitors.fasta import bench_pyfaidx, bench_pyfastx
from readshard_bench.data import sample_convert_fields
from conftest import REPO

# Packages the fresh venv must not see: the bench extra (to prove the bench runs without it)
# and any installed readshard (so the venv gets only the copy pip installs).
# The project's top-level packages, as pyproject's [tool.setuptools.packages.find] include lists them.
_PACKAGES = [p.rstrip("*") for p in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
             ["find"]["include"] if not p.endswith(".*")]
_HIDDEN = re.compile(rf"^(datasets|pyfaidx|readshard|{'|'.join(_PACKAGES)}|__editable__)\b|\.pth$", re.I)


def _tiny_fasta(path: Path, n: int = 40) -> Path:
    """``n`` short reads, far fewer than one bench step (256 reads) asks for."""
    bases = "ACGT"
    with open(path, "w") as f:
        for i in range(n):
            seq = "".join(bases[(i * 7 + k * 3) % 4] for k in range(120))
            f.write(f">read{i}/1\n{seq}\n")
    return path


@pytest.mark.parametrize("bench", [bench_pyfastx, bench_pyfaidx], ids=["pyfastx", "pyfaidx"])
def test_on_the_fly_competitor_never_runs_out_of_reads(tmp_path: Path, bench) -> None:
    if bench is bench_pyfaidx:
        pytest.importorskip("pyfaidx", reason="the bench extra (pip install .[bench]) is not installed")
    fasta = _tiny_fasta(tmp_path / "reads.fa")
    m = bench(fasta, tmp_path / "work", 32, 0.2)
    # one step serves 256 reads from a 40-read file: the order must wrap into the next epoch
    assert m.samples >= 256 and m.extra["index_build_s"] >= 0


@pytest.mark.slow  # a fresh interpreter
def test_import_loaders_does_not_import_the_bench() -> None:
    code = "import sys, loaders; print(sorted(m for m in sys.modules if m.startswith('readshard_bench')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}).stdout
    assert out.strip() == "[]"


def test_embedded_sample_settings_match_the_make_convert_config(tmp_path: Path) -> None:
    from convert.cli import load_config

    assert sample_convert_fields(tmp_path) == load_config(str(REPO / "configs" / "convert_sample.yaml"))


def _fresh_venv(tmp: Path) -> Path:
    """A venv whose dependencies come from this interpreter's site-packages minus the bench extra
    and readshard itself, with readshard pip-installed (not editable) from a copy of the sources."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    deps = tmp / "deps"
    deps.mkdir()
    for sp in site.getsitepackages():
        for entry in Path(sp).iterdir():
            if not _HIDDEN.search(entry.name) and not (deps / entry.name).exists():
                (deps / entry.name).symlink_to(entry)
    py = venv / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "readshard-test-deps.pth").write_text(f"{deps}\n")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for pkg in _PACKAGES:
        shutil.copytree(REPO / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                    "--no-build-isolation", "--no-index", str(src)], check=True, capture_output=True, text=True)
    return py


@pytest.mark.slow
def test_installed_bench_runs_outside_the_checkout_without_the_bench_extra(tmp_path: Path) -> None:
    py = _fresh_venv(tmp_path)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(py), "-c", "import loaders, readshard_bench; print(loaders.__file__, readshard_bench.__file__)"],
                           cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout
    assert str(REPO) not in where and "site-packages" in where

    # What installation changes is where the bench runs from and which extras it sees, not the
    # figures (tests/test_bench.py checks those): the shortest time box, no DataLoader competitor.
    proc = subprocess.run([str(py), "-m", "loaders.bench", "--quick", "--cache", str(cwd / "cache"),
                           "--seconds", "0.05", "--skip", "dataloader"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name, module in (("hf_datasets", "datasets"), ("pyfaidx_on_the_fly", "pyfaidx")):
        lines = [ln for ln in proc.stderr.splitlines() if f"skipped {name}" in ln]
        assert len(lines) == 1 and f"{module} is not installed" in lines[0], proc.stderr
        assert f"{name} ({module} is not installed" in proc.stdout
    assert "pyfastx_on_the_fly" in proc.stdout and "readshard_batched" in proc.stdout
    assert "performance targets:" in proc.stdout
    assert not re.search(r"issue[- ]?\d", proc.stdout + proc.stderr, re.I)

    # --convert imports the converter bench as a module (no file path into a checkout)
    proc = subprocess.run([str(py), "-m", "loaders.bench", "--convert", "20", "--json"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["readshard"]["reads"] > 0 and "hf_datasets" not in report
    assert "skipped hf_datasets: datasets is not installed" in proc.stderr


def test_unit_profile_steps_add_up(tmp_path: Path) -> None:
    """The unit profile's steps run on real (small) units and leave only a small rest."""
    from convert.simulate import simulate
    from readshard_bench.unit_profile import unit_steps

    simulate(tmp_path / "reads", fragments_per_species=100, seed=0, progress=False)
    steps = unit_steps(tmp_path / "reads" / "train.fa", tmp_path / "reads" / "mapping.tsv", tmp_path / "stg",
                       repeats=1, per_unit=1000)
    assert steps["units"] >= 3
    assert all(steps[k] > 0 for k in ("read", "parse", "encode", "write", "unit"))
    assert steps["unit"] >= steps["encode"]
