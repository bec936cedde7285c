"""The loaders' floor plan (issue 20): what ``import loaders`` pulls in, what it exports, room sizes."""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import loaders

LOADERS = pathlib.Path(loaders.__file__).resolve().parent
MAX_CLASS_LINES = 300


def test_import_loaders_stays_light() -> None:
    """A fresh process: HDF5, the converter pipeline, training, numba and the bench load only when used."""
    heavy = ("h5py", "convert.pipeline", "train", "numba", "readshard_bench")
    code = f"import sys, loaders; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=LOADERS.parent)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_no_bench_metrics_exported() -> None:
    assert not {"shuffle_quality", "batch_class_entropy"} & set(loaders.__all__)
    assert not hasattr(loaders, "shuffle_quality")


def test_rooms_stay_small() -> None:
    """dataset.py is the index math and the item/batch API; no class outgrows 300 lines."""
    assert len((LOADERS / "dataset.py").read_text().splitlines()) < 300
    for path in LOADERS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                n = node.end_lineno - node.lineno + 1  # type: ignore[operator]
                assert n <= MAX_CLASS_LINES, f"{path.name}:{node.name} is {n} lines"
