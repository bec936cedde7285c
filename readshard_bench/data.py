"""Data of the loader bench: the sample (as ``make convert`` builds it), a synthetic N-read
dataset for scale runs, and the plain ``.npy`` copies the numpy limit gathers from."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from readshard_bench.measure import log

__all__ = [
    "SAMPLE_CONVERT_YAML",
    "BenchConfig",
    "build_synthetic",
    "npy_header",
    "prepare_sample",
    "sample_convert_fields",
    "save_limit_arrays",
]

# The converter settings of ``configs/convert_sample.yaml`` (what ``make convert`` uses), kept
# here because an installed package has no configs/ directory; tests/test_bench_package.py
# checks that both give the same options.
SAMPLE_CONVERT_YAML = r"""data:
  header_regex: '^lbl\|(?P<class_id>\d+)\|(?P<tax_id>\d+)?\|(?P<readlen>\d+)?\|(?P<name>[^/\s]+)(?:/(?P<mate>\d+))?$'
tokenizer:
  name: dnabert-6mer
  max_length: auto
output:
  layout: mmap
  reads_per_shard: 16384
convert:
  on_bad_record: skip
"""


@dataclass
class BenchConfig:
    """What one run measures and where its data live."""

    seconds: float = 4.0
    rounds: int = 2
    cache: Path = Path("data/bench-cache")
    sample: Path = Path("data/sample")
    quick: bool = False
    reads: int | None = None
    reads_per_shard: int = 65536
    num_classes: int = 3507
    max_length: int = 48
    pyfastx_seconds: float = 3.0
    model_rate: float | None = None
    skip: tuple[str, ...] = ()
    cold: bool = True


def sample_convert_fields(cache: Path) -> dict[str, Any]:
    """``ConvertOptions`` fields of :data:`SAMPLE_CONVERT_YAML` (written to ``cache``, then loaded
    by the converter's own config reader so the keys are checked as ``--config`` checks them)."""
    from convert.cli import load_config

    cache.mkdir(parents=True, exist_ok=True)
    path = cache / "convert_sample.yaml"
    path.write_text(SAMPLE_CONVERT_YAML)
    return load_config(str(path))


def _convert(fasta: Path, mapping: Path, out: Path, cache: Path, *, jobs: int, **overrides: Any) -> None:
    from convert.pipeline import ConvertOptions, convert

    fields = {**sample_convert_fields(cache), **overrides}
    convert(ConvertOptions(inputs=[str(fasta)], out=str(out), mapping=str(mapping), jobs=jobs,
                           overwrite=True, progress=False, **fields))


def prepare_sample(cfg: BenchConfig) -> dict[str, Path]:
    """The sample dataset (mmap layout), its compressed copy and its FASTA, built if absent.

    Default: ``data/sample/train`` exactly as ``make convert`` builds it (simulate, then
    convert with the settings of ``configs/convert_sample.yaml``, 2 jobs); the compressed copy goes to the
    cache. ``--quick``: a smaller simulation (200 fragments per species, 4,096 reads per
    shard), all in the cache.
    """
    from shards import read_manifest
    from sample.simulate import simulate

    if cfg.quick:
        base = cfg.cache / "quick-sample"
        reads_dir, mmap_dir = base / "reads", base / "train"
        frags, extra = 200, {"reads_per_shard": 4096}
        jobs = 1
    else:
        base = cfg.sample
        reads_dir, mmap_dir = base / "reads", base / "train"
        frags, extra, jobs = 1000, {}, 2
    fasta, mapping = reads_dir / "train.fa", reads_dir / "mapping.tsv"
    if not fasta.is_file() or not mapping.is_file():
        log(f"simulating reads into {reads_dir}")
        simulate(reads_dir, fragments_per_species=frags, seed=0, progress=False)
    if not (mmap_dir / "manifest.json").is_file():
        log(f"converting {fasta} -> {mmap_dir} (layout mmap)")
        _convert(fasta, mapping, mmap_dir, cfg.cache, jobs=jobs, **extra)
    manifest = read_manifest(mmap_dir)
    key = "-".join(s["sha256"][:8] for s in manifest["shards"])[:40]
    comp_dir = cfg.cache / f"compressed-{'quick' if cfg.quick else 'sample'}-{key}"
    if not (comp_dir / "manifest.json").is_file():
        log(f"converting {fasta} -> {comp_dir} (layout compressed)")
        _convert(fasta, mapping, comp_dir, cfg.cache, jobs=jobs, layout="compressed", compression="gzip",
                 max_length=int(manifest["max_length"]), **extra)
    return {"mmap": mmap_dir, "compressed": comp_dir, "fasta": fasta, "work": cfg.cache / f"work-{key}"}


def npy_header(f: Any, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    """Write a ``.npy`` v1.0 header, so the array body can follow block by block."""
    np.lib.format.write_array_header_1_0(
        f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    )


def save_limit_arrays(ds: Any, out: Path, block: int = 1 << 18) -> dict[str, Path]:
    """Copy the dataset's tokens, lengths and labels into plain ``.npy`` files (block by block).

    These are what ``numpy_memmap_limit`` gathers from: the same bytes ``__getitems__`` serves.
    """
    out.mkdir(parents=True, exist_ok=True)
    paths = {k: out / f"{k}.npy" for k in ("input_ids", "lengths", "labels")}
    done = out / "done.json"
    if done.is_file() and json.loads(done.read_text()).get("num_rows") == len(ds):
        return paths
    n, L = len(ds), ds.max_length
    with open(paths["input_ids"], "wb") as fi, open(paths["lengths"], "wb") as fl, open(paths["labels"], "wb") as fb:
        npy_header(fi, np.int16, (n, L))
        npy_header(fl, np.int16, (n,))
        npy_header(fb, np.int64, (n,))
        for a in range(0, n, block):
            b = ds.__getitems__(np.arange(a, min(n, a + block)))
            fi.write(np.ascontiguousarray(b["input_ids"], dtype=np.int16).tobytes())
            fl.write(np.ascontiguousarray(b["lengths"], dtype=np.int16).tobytes())
            fb.write(np.ascontiguousarray(b["labels"], dtype=np.int64).tobytes())
    done.write_text(json.dumps({"num_rows": n}))
    return paths


def _bytes_needed(n: int, L: int) -> int:
    per_read_shard = 2 * L + 2 + 4 + 4 + 4 + 4 + 1 + 4  # tokens + the per-read vectors + CSR rows
    per_read_limit = 2 * L + 2 + 8
    return n * (per_read_shard + per_read_limit)


def build_synthetic(
    directory: Path,
    num_reads: int,
    *,
    max_length: int = 48,
    reads_per_shard: int = 65536,
    num_classes: int = 3507,
    seed: int = 0,
) -> dict[str, Path]:
    """A synthetic N-read dataset written shard by shard (flat memory), plus the limit ``.npy``.

    Tokens are random ids 6..1023 (METAGENE-1's vocabulary) with 34..40 tokens stored of
    ``max_length`` (like 150 bp reads under METAGENE-1's BPE at L=48), right-padded with 0.
    Labels come in contiguous runs, one class after the other (a FASTA sorted by species,
    the worst case for chunk shuffling). Reused if complete.

    Raises:
        SystemExit: not enough free disk space (message says how much is needed).
    """
    from shards import build_manifest, new_dataset_id, shard_name, write_manifest, write_shard
    from convert.tokenizers import load_tokenizer

    ds_dir, limit_dir = directory / "dataset", directory / "limit"
    paths = {"mmap": ds_dir, "limit": limit_dir}
    if (ds_dir / "manifest.json").is_file() and (limit_dir / "done.json").is_file():
        return paths
    directory.mkdir(parents=True, exist_ok=True)
    need = _bytes_needed(num_reads, max_length)
    free = shutil.disk_usage(directory).free
    if free < need + (2 << 30):
        raise SystemExit(
            f"bench: a synthetic {num_reads:,}-read dataset needs ~{need / 1e9:.1f} GB in {directory} "
            f"(shards + the numpy limit copy) plus 2 GB to spare, but only {free / 1e9:.1f} GB are free. "
            "Use fewer --reads or point --cache at a larger disk."
        )
    shutil.rmtree(ds_dir, ignore_errors=True)
    shutil.rmtree(limit_dir, ignore_errors=True)
    ds_dir.mkdir(parents=True)
    limit_dir.mkdir(parents=True)
    tok_info = load_tokenizer("metagene-1").info
    rng = np.random.default_rng(seed)
    L, C = max_length, num_classes
    lim = {k: open(limit_dir / f"{k}.npy", "wb") for k in ("input_ids", "lengths", "labels")}
    npy_header(lim["input_ids"], np.int16, (num_reads, L))
    npy_header(lim["lengths"], np.int16, (num_reads,))
    npy_header(lim["labels"], np.int64, (num_reads,))
    entries, tokens = [], 0
    dataset_id = new_dataset_id({"synthetic": num_reads, "seed": seed, "reads_per_shard": reads_per_shard})
    t0 = time.perf_counter()
    col = np.arange(L, dtype=np.int16)
    try:
        for s, a in enumerate(range(0, num_reads, reads_per_shard)):
            n = min(reads_per_shard, num_reads - a)
            lengths = rng.integers(34, 41, size=n, dtype=np.int16)
            ids = rng.integers(6, 1024, size=(n, L), dtype=np.int16)
            ids[col[None, :] >= lengths[:, None]] = 0
            labels = ((np.arange(a, a + n, dtype=np.int64) * C) // num_reads).astype(np.int32)
            vectors = {
                "lengths": lengths,
                "read_lengths": np.full(n, 150, dtype=np.int32),
                "labels": labels,
                "class_ids": labels + 1000,
                "tax_ids": np.full(n, -1, dtype=np.int32),
                "mates": (1 + (np.arange(a, a + n) & 1)).astype(np.int8),
                "record_numbers": np.arange(a, a + n, dtype=np.int64),
                "fragment_hashes": (np.arange(a, a + n, dtype=np.uint64) >> np.uint64(1)),
            }
            tmp = ds_dir / f".{shard_name(s)}.tmp"
            entry = write_shard(
                tmp, input_ids=ids, vectors=vectors, num_classes=C, tokenizer=tok_info, shard_index=s, dataset_id=dataset_id
            )
            os.replace(tmp, ds_dir / shard_name(s))
            entries.append({"file": shard_name(s), **entry})
            tokens += int(lengths.sum())
            lim["input_ids"].write(ids.tobytes())
            lim["lengths"].write(lengths.tobytes())
            lim["labels"].write(labels.astype(np.int64).tobytes())
            if s % 50 == 0:
                log(f"synthetic: {a + n:,}/{num_reads:,} reads ({time.perf_counter() - t0:.0f} s)")
    finally:
        for f in lim.values():
            f.close()
    write_manifest(ds_dir, build_manifest(
        tokenizer=tok_info,
        max_length=L,
        layout="mmap",
        compression=None,
        num_classes=C,
        label_names=[f"species_{c}" for c in range(C)],
        label_class_ids=[c + 1000 for c in range(C)],
        label_tax_ids=[-1] * C,
        shards=entries,
        source={"synthetic": True, "seed": seed, "reads_per_shard": reads_per_shard},
        dataset_id=dataset_id,
        num_tokens=tokens,
    ))
    (limit_dir / "done.json").write_text(json.dumps({"num_rows": num_reads}))
    log(f"synthetic dataset built in {time.perf_counter() - t0:.0f} s: {ds_dir}")
    return paths
