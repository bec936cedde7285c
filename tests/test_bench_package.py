"""What installation changes: a non-editable install of the checkout ships the library packages
(``shards``, ``convert``, ``loaders``, ``train``) and neither the bench harness nor the sample
(simulator and genomes), and ``python -m loaders.bench`` there says where to run it.

The harness itself is tested in tests/test_bench_harness.py, the bench's figures in tests/test_bench.py.
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import REPO

# The project's top-level packages, as pyproject's [tool.setuptools.packages.find] include lists them.
_PACKAGES = [p.rstrip("*") for p in tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
             ["find"]["include"] if not p.endswith(".*")]
# Top-level packages of the checkout that must stay out of an install.
_CHECKOUT_ONLY = ("readshard_bench", "sample")
# What the fresh venv must not see from this interpreter's site-packages: any installed readshard
# (so the venv gets only the copy pip installs) and the checkout-only packages.
_HIDDEN = re.compile(rf"^(readshard|{'|'.join(_PACKAGES + list(_CHECKOUT_ONLY))}|__editable__)\b|\.pth$", re.I)


def _fresh_venv(tmp: Path) -> tuple[Path, Path]:
    """A venv whose dependencies come from this interpreter's site-packages (minus readshard), with
    readshard pip-installed (not editable) from a copy of the checkout; returns (python, purelib)."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    deps = tmp / "deps"
    deps.mkdir()
    for sp in site.getsitepackages():
        for entry in Path(sp).iterdir():
            if not _HIDDEN.search(entry.name) and not (deps / entry.name).exists():
                (deps / entry.name).symlink_to(entry)
    py = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "readshard-test-deps.pth").write_text(f"{deps}\n")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    # the whole checkout's packages, so that only pyproject decides what is installed
    for pkg in dict.fromkeys((*_PACKAGES, *_CHECKOUT_ONLY)):
        shutil.copytree(REPO / pkg, src / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps",
                    "--no-build-isolation", "--no-index", str(src)], check=True, capture_output=True, text=True)
    return py, purelib


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, dict[str, str]]:
    """(python, purelib, a cwd outside the checkout, env without PYTHONPATH) of the fresh install."""
    tmp = tmp_path_factory.mktemp("install")
    py, purelib = _fresh_venv(tmp)
    cwd = tmp / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return py, purelib, cwd, env


@pytest.mark.slow  # builds a venv and installs into it
def test_installed_library_imports_and_ships_no_bench_and_no_genomes(installed) -> None:
    py, purelib, cwd, env = installed
    code = ("import importlib.util as u, convert, loaders, train, shards; "
            "print(*(m.__file__ for m in (convert, loaders, train, shards))); "
            "print(*(u.find_spec(n) is None for n in ('readshard_bench', 'sample')))")
    out = subprocess.run([str(py), "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=True)
    files, absent = out.stdout.splitlines()
    assert all(f.startswith(str(purelib)) for f in files.split()), files
    assert absent == "True True", "a checkout-only package is importable from the install"

    installed_files = [p.relative_to(purelib) for p in purelib.rglob("*") if p.is_file()]
    assert not [p for p in installed_files if p.parts[0] in _CHECKOUT_ONLY]
    assert not [p for p in installed_files if p.name.endswith((".fasta.gz", ".fa", ".fasta")) or "genomes" in p.parts]
    assert not [p for p in installed_files if p.name == "simulate.py"]
    # the converter still ships the tokenizer files it needs
    assert [p for p in installed_files if p.parts[:3] == ("convert", "assets", "tokenizers")]


@pytest.mark.slow  # builds a venv and installs into it
def test_installed_bench_entry_point_says_where_to_run_it(installed) -> None:
    py, _, cwd, env = installed
    proc = subprocess.run([str(py), "-m", "loaders.bench", "--quick"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "source checkout" in lines[0] and "make bench" in lines[0], proc.stderr
