"""The loaders' floor plan (issue 20): what ``import loaders`` pulls in, what it exports, room sizes."""

from __future__ import annotations

import ast
import pathlib

import loaders

LOADERS = pathlib.Path(loaders.__file__).resolve().parent
MAX_CLASS_LINES = 300


def test_import_loaders_stays_light(fresh_modules: dict[str, frozenset[str]]) -> None:
    """A fresh process: HDF5, the converter pipeline, training, numba and the bench load only when used."""
    heavy = ("h5py", "convert.pipeline", "train", "numba", "readshard_bench")
    assert "loaders" in fresh_modules["loaders"]
    assert [m for m in heavy if m in fresh_modules["loaders"]] == []


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
