"""The loader bench's runs: every competitor side by side on the sample (default, ``--quick``)
and the scale run on a synthetic N-read dataset (``--reads N``: open cost, warm and cold access)."""

from __future__ import annotations

import json
import mmap
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

import loaders
from readshard_bench.competitors import missing_requirement
from readshard_bench.competitors.fasta import bench_pyfaidx, bench_pyfastx
from readshard_bench.competitors.hf_datasets import bench_hf
from readshard_bench.competitors.numpy_limit import bench_limit, limit_step
from readshard_bench.competitors.readshard import (
    bench_batched,
    bench_batched_live_sampler,
    bench_compressed,
    bench_dataloader,
    bench_items,
    bench_sampler_only,
    shard_files,
)
from readshard_bench.data import BenchConfig, build_synthetic, prepare_sample, save_limit_arrays
from readshard_bench.measure import (
    BATCH_SIZE,
    Measurement,
    RssWatch,
    batches_from_sampler,
    evict_files,
    from_watch,
    log,
    read_bytes,
    timebox,
)
from readshard_bench.report import machine_info, package

__all__ = ["measure_open", "run_scale", "run_side_by_side"]


def _best(results: dict[str, Measurement], name: str, m: Measurement) -> None:
    """Keep the faster of two rounds."""
    if name not in results or m.rate > results[name].rate:
        results[name] = m


def _common_notes(cfg: BenchConfig) -> list[str]:
    return [
        "Every measurement reads its files right before it starts (this VM evicts file pages idle "
        "for ~30 s): 'warm' means in page cache; cold figures say so.",
        f"Random-access competitors use the same batches of {BATCH_SIZE} indices from "
        "ShuffleBatchSampler (a full uniform shuffle); readshard (per item), pyfastx and pyfaidx use "
        "ShuffleSampler order.",
        "numpy_memmap_limit gathers input_ids + lengths + labels (the bytes __getitems__ returns) "
        "from .npy copies on np.memmap; numpy_memmap_ids_only (extra) gathers the token matrix alone.",
        f"Memory-only competitors run {cfg.rounds} interleaved rounds of {cfg.seconds:g} s; "
        "the best round counts (the machine is shared).",
        "Peak RSS counts mapped file pages (page cache) the process touched; '+RSS' is the peak "
        "over the RSS when the measurement began (peak_anon_rss_mb in the JSON: allocated memory). "
        "DataLoader figures include the worker processes (forked pages counted in each).",
        "'per CPU-s' = samples per CPU-second used by the process tree: less sensitive than "
        "samples/s to other load on the machine (load averages at start and end are printed).",
        "dataloader_2_workers_collate_in_workers (extra): plain DataLoader(collate_fn=collate_batch): "
        "tensors made in workers cross through shared memory; ReadLoader avoids that.",
        "mosaicml-streaming (MDS) skipped: it pulls torchvision and a CUDA torch over the CPU "
        "torch this project pins.",
    ]


def run_side_by_side(cfg: BenchConfig) -> dict[str, Any]:
    """The default (and ``--quick``) run: every competitor on the sample, one process."""
    from loaders import ShardDataset
    from readshard_bench.quality import shuffle_quality

    machine = machine_info()
    paths = prepare_sample(cfg)
    ds = ShardDataset(paths["mmap"])
    n = len(ds)
    work = paths["work"]
    limit_paths = save_limit_arrays(ds, work / "limit")
    batches = batches_from_sampler(n, max(1, n // BATCH_SIZE))
    results: dict[str, Measurement] = {}
    extras: dict[str, Measurement] = {}
    secs = cfg.seconds
    notes = _common_notes(cfg)

    # Memory-speed competitors, interleaved so background load hits them alike.
    for r in range(cfg.rounds):
        log(f"round {r + 1}/{cfg.rounds}: numpy_memmap_limit, readshard_batched, readshard")
        _best(results, "numpy_memmap_limit", bench_limit(limit_paths, batches, secs))
        _best(results, "readshard_batched", bench_batched(ds, batches, secs))
        _best(results, "readshard", bench_items(ds, secs))
        _best(extras, "numpy_memmap_ids_only", bench_limit(limit_paths, batches, secs / 2, ids_only=True))
        _best(extras, "readshard_batched_sampler_in_loop", bench_batched_live_sampler(ds, secs / 2))
    extras["shuffle_batch_sampler_indices_only"] = bench_sampler_only(n, secs / 2)

    log("readshard_compressed (chunk shuffle)")
    m, q = bench_compressed(paths["compressed"], secs)
    results["readshard_compressed"] = m
    full = shuffle_quality(ds.labels[np.concatenate(batches)], BATCH_SIZE)
    quality = {
        "readshard_compressed_chunk_shuffle": {k: round(v, 4) for k, v in q.items()},
        "readshard_full_shuffle": {k: round(v, 4) for k, v in full.items()},
        "buffer_chunks": 16,
        "num_chunks": int(sum(-(-int(c) // 4096) for c in np.diff(ds.shard_starts))),
    }
    if quality["num_chunks"] <= 16:
        notes.append(f"The sample has only {quality['num_chunks']} chunks of 4,096 rows, so the chunk "
                     "shuffle's 16-chunk buffer mixes the whole dataset; see --reads for a large case.")

    if "dataloader" not in cfg.skip:
        log("readshard_dataloader_2_workers")
        results["readshard_dataloader_2_workers"] = bench_dataloader(paths["mmap"], secs)
        extras["dataloader_2_workers_collate_in_workers"] = bench_dataloader(paths["mmap"], secs / 2, collate_in_workers=True)
    skipped: dict[str, str] = {}
    optional = {
        "hf_datasets": ("hf", lambda: bench_hf(limit_paths, work, batches, secs)),
        "pyfastx_on_the_fly": ("pyfastx", lambda: bench_pyfastx(paths["fasta"], work, ds.max_length, cfg.pyfastx_seconds)),
        "pyfaidx_on_the_fly": ("pyfaidx", lambda: bench_pyfaidx(paths["fasta"], work, ds.max_length, cfg.pyfastx_seconds)),
    }
    for name, (flag, run) in optional.items():
        reason = "left out with --skip" if flag in cfg.skip else missing_requirement(name)
        if reason:
            skipped[name] = reason
            log(f"skipped {name}: {reason}")
            continue
        log(name)
        results[name] = run()

    open_info = measure_open(paths["mmap"])
    dataset = {
        "path": str(paths["mmap"]),
        "compressed_path": str(paths["compressed"]),
        "fasta": str(paths["fasta"]),
        "num_reads": n,
        "num_shards": ds.num_shards,
        "max_length": ds.max_length,
        "num_classes": ds.num_classes,
        "token_bytes": n * ds.max_length * 2,
        "open": open_info,
    }
    ds.close()
    return package(cfg, "quick" if cfg.quick else "sample", dataset, results, extras, notes,
                   quality=quality, machine=machine, skipped=skipped)


_OPEN_SCRIPT = r"""
import json, os, sys, time
def rss():
    with open(f"/proc/{os.getpid()}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
import numpy as np
import loaders
from loaders import ShardDataset
before = rss()
t0 = time.perf_counter()
ds = ShardDataset(sys.argv[1])
open_s = time.perf_counter() - t0
after = rss()
t1 = time.perf_counter()
ds.__getitems__(np.arange(0, len(ds), max(1, len(ds) // 256))[:256])
first_batch_s = time.perf_counter() - t1
print(json.dumps({"num_reads": len(ds), "num_shards": ds.num_shards, "open_s": open_s,
                  "rss_before_open_mb": before, "rss_after_open_mb": after,
                  "open_rss_delta_mb": after - before, "first_batch_spread_over_all_shards_s": first_batch_s,
                  "rss_after_first_batch_mb": rss()}))
"""


def measure_open(path: Path) -> dict[str, Any]:
    """Open time and RSS of ``ShardDataset(path)`` in a fresh process (after imports)."""
    # The child must import the same ``loaders`` as this process (a checkout or an install).
    root = str(Path(loaders.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.run([sys.executable, "-c", _OPEN_SCRIPT, str(path)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"open measurement failed: {proc.stderr.strip()[-2000:]}")
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


def run_scale(cfg: BenchConfig) -> dict[str, Any]:
    """``--reads N``: open cost, warm and cold random access on a synthetic N-read dataset."""
    from loaders import ShardDataset, chunk_shuffle_labels
    from readshard_bench.quality import shuffle_quality

    machine = machine_info()
    N = int(cfg.reads or 0)
    if N < BATCH_SIZE:
        raise SystemExit(f"bench: --reads must be at least {BATCH_SIZE}")
    d = cfg.cache / f"synthetic-{N}-L{cfg.max_length}-rps{cfg.reads_per_shard}-c{cfg.num_classes}-v1"
    paths = build_synthetic(d, N, max_length=cfg.max_length, reads_per_shard=cfg.reads_per_shard,
                            num_classes=cfg.num_classes)
    limit_paths = {k: paths["limit"] / f"{k}.npy" for k in ("input_ids", "lengths", "labels")}
    notes = _common_notes(cfg)
    log("open time and RSS (fresh process)")
    open_info = measure_open(paths["mmap"])
    ds = ShardDataset(paths["mmap"])
    batches = batches_from_sampler(N, min(4096, max(1, N // BATCH_SIZE)))
    secs = cfg.seconds
    results: dict[str, Measurement] = {}
    extras: dict[str, Measurement] = {}
    token_bytes = N * cfg.max_length * 2
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for r in range(cfg.rounds):
        log(f"warm round {r + 1}/{cfg.rounds} (each reads its {token_bytes / 1e9:.1f} GB of files first)")
        _best(results, "numpy_memmap_limit", bench_limit(limit_paths, batches, secs))
        _best(results, "readshard_batched", bench_batched(ds, batches, secs))
        _best(results, "readshard", bench_items(ds, secs))
    _best(extras, "readshard_batched_sampler_in_loop", bench_batched_live_sampler(ds, secs / 2))
    extras["shuffle_batch_sampler_indices_only"] = bench_sampler_only(N, secs / 2)
    if "dataloader" not in cfg.skip:
        log("readshard_dataloader_2_workers (warm)")
        results["readshard_dataloader_2_workers"] = bench_dataloader(paths["mmap"], secs)
        extras["dataloader_2_workers_collate_in_workers"] = bench_dataloader(paths["mmap"], secs / 2, collate_in_workers=True)
    ds.close()

    cold: dict[str, Measurement] = {}
    if cfg.cold:
        cold_batches = batches_from_sampler(N, 2000, epoch=7)  # indices not touched above
        # Both cold-start policies: "auto" (here: the data fit in memory, so shards are read
        # ahead whole) and "random" (what "auto" picks when the data exceed memory).
        # ..._no_prefetch: "random" as it was before the cold-batch prefetch (one fault at a time).
        for name, access, prefetch in (("readshard_batched_cold", "auto", None),
                                       ("readshard_batched_cold_random", "random", None),
                                       ("readshard_batched_cold_random_no_prefetch", "random", False)):
            ds = ShardDataset(paths["mmap"], access=access, prefetch=prefetch)
            log(f"cold: {name} (access={access} -> {ds.access}, prefetch={ds.prefetch}), files evicted first")
            evict_files(shard_files(ds))
            it = iter(cold_batches)
            io0 = read_bytes()
            with RssWatch() as w:
                n, el = timebox(lambda: ds.__getitems__(next(it))["labels"].shape[0], secs, 0, len(cold_batches))
            cold[name] = from_watch(n, el, w, extra={"disk_read_mb": (read_bytes() - io0) / 2**20, "access": ds.access,
                                                             "prefetch": ds.prefetch, **ds.io_stats})
            ds.close()
            del ds
        for name, adv in (("numpy_memmap_cold_madv_random", mmap.MADV_RANDOM), ("numpy_memmap_cold_default_readahead", None)):
            log(f"cold: {name}, files evicted first")
            evict_files(limit_paths.values())
            step, close = limit_step(limit_paths, cold_batches, advice=adv)
            io0 = read_bytes()
            with RssWatch() as w:
                n, el = timebox(step, secs, 0, len(cold_batches))
            cold[name] = from_watch(n, el, w, extra={"disk_read_mb": (read_bytes() - io0) / 2**20})
            close()
        notes.append("Cold figures: the files' pages were evicted (posix_fadvise DONTNEED) before each; "
                     "'disk KB/sample' is what the process read from storage. readshard's default access policy "
                     "reads each shard ahead whole when the data fit in half the available memory "
                     "(readshard_batched_cold) and maps with MADV_RANDOM when they do not "
                     "(readshard_batched_cold_random: one page per row and array; each cold batch first issues all its "
                     "rows' non-resident pages with MADV_WILLNEED so many reads are in flight; "
                     "readshard_batched_cold_random_no_prefetch: the same with prefetch=False, one fault at a time). "
                     "The default read-ahead pulls 8 MiB around each fault: while the file fits in RAM it soon holds the "
                     "whole file (read at sequential speed, so it wins here); once data exceed RAM every random row "
                     "costs 8 MiB of reads and evicts other rows.")
    log("chunk-shuffle quality on the synthetic labels (class-sorted: worst case)")
    ds = ShardDataset(paths["mmap"])
    q = shuffle_quality(chunk_shuffle_labels(ds, seed=0, epoch=0), BATCH_SIZE)
    quality = {"chunk_shuffle_buffer_16_class_sorted_input": {k: round(v, 4) for k, v in q.items()}}
    ds.close()
    scale = {
        **open_info,
        "token_bytes": token_bytes,
        "data_exceeds_ram": token_bytes > ram,
        "cold_samples_per_s": {k: round(m.rate, 1) for k, m in cold.items()},
        "cold_peak_rss_mb": {k: round(m.peak_rss_mb, 1) for k, m in cold.items()},
        "cold_disk_read_mb": {k: round(m.extra["disk_read_mb"], 1) for k, m in cold.items()},
        "cold_disk_kb_per_sample": {k: round(m.extra["disk_read_mb"] * 1024 / max(1, m.samples), 2) for k, m in cold.items()},
    }
    notes.append("hf_datasets, pyfastx_on_the_fly, pyfaidx_on_the_fly and readshard_compressed are not run at scale "
                 "(building them for N reads takes far longer than the bench); see the default run.")
    if token_bytes <= ram:
        notes.append(f"The {token_bytes / 1e9:.1f} GB of tokens fit in RAM ({ram / 2**30:.0f} GiB): the cold "
                     "figures stand in for data larger than RAM (every random row comes from disk).")
    dataset = {"path": str(paths["mmap"]), "num_reads": N, "num_shards": open_info["num_shards"],
               "max_length": cfg.max_length, "num_classes": cfg.num_classes, "reads_per_shard": cfg.reads_per_shard,
               "synthetic": True}
    return package(cfg, "scale", dataset, results, extras, notes, scale=scale, quality=quality, machine=machine)
