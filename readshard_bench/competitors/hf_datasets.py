"""``hf_datasets``: the same tokens in a Hugging Face ``datasets`` Arrow dataset
(``save_to_disk`` -> ``load_from_disk`` -> ``with_format("numpy")``), gathered with ``ds[list]``.

Needs the ``bench`` extra (``datasets``); the bench skips it when that is not installed.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from readshard_bench.measure import Measurement, cycle, measure

__all__ = ["bench_hf", "hf_env"]


def hf_env(cache: Path) -> None:
    """Keep ``datasets`` offline and its cache under ``cache``."""
    os.environ.setdefault("HF_DATASETS_CACHE", str(cache / "hf-cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def bench_hf(limit_paths: dict[str, Path], work: Path, batches: list[np.ndarray], seconds: float) -> Measurement:
    """``hf_datasets``: same tokens in an Arrow dataset, ``load_from_disk`` + numpy format, ``ds[list]``."""
    hf_env(work)
    import datasets

    datasets.disable_progress_bars()
    hf_dir = work / "hf_dataset"
    ids = np.load(limit_paths["input_ids"], mmap_mode="r")
    n, L = ids.shape
    t_build = None
    if not (hf_dir / "dataset_info.json").is_file():
        lengths = np.load(limit_paths["lengths"], mmap_mode="r")
        labels = np.load(limit_paths["labels"], mmap_mode="r")
        features = datasets.Features({
            "input_ids": datasets.Sequence(datasets.Value("int16"), length=L),
            "lengths": datasets.Value("int16"),
            "labels": datasets.Value("int64"),
        })

        def gen() -> Iterator[dict[str, Any]]:
            for a in range(0, n, 8192):
                b = min(n, a + 8192)
                blk, le, la = np.asarray(ids[a:b]), np.asarray(lengths[a:b]), np.asarray(labels[a:b])
                for k in range(b - a):
                    yield {"input_ids": blk[k], "lengths": int(le[k]), "labels": int(la[k])}

        t0 = time.perf_counter()
        built = datasets.Dataset.from_generator(gen, features=features, cache_dir=str(work / "hf-cache"))
        shutil.rmtree(hf_dir, ignore_errors=True)
        built.save_to_disk(str(hf_dir))
        t_build = time.perf_counter() - t0
        del built
    hf = datasets.load_from_disk(str(hf_dir)).with_format("numpy")
    if len(hf) != n:
        raise RuntimeError(f"{hf_dir}: {len(hf)} rows, expected {n}; delete it and rerun")
    it = iter(cycle(lambda e: batches))

    def step() -> int:
        b = hf[next(it).tolist()]
        return len(b["labels"])

    files = sorted(str(p) for p in hf_dir.glob("*.arrow"))
    m = measure(step, seconds, files)
    m.extra["build_s"] = None if t_build is None else round(t_build, 2)
    return m
