"""``python -m loaders.bench``: readshard's loaders against what a user would run instead.

Every competitor runs side by side in one process run, on the same reads and tokens and,
for the random-access ones, on the same random batches (drawn from
:class:`loaders.ShuffleBatchSampler`, a full uniform shuffle), so the *ratios* can be
trusted on a shared, noisy machine even when absolute numbers move.

Competitors (samples/s):

* ``readshard``: ``ShardDataset`` per item, ``ds[i]`` in :class:`loaders.ShuffleSampler` order.
* ``readshard_batched``: ``ds.__getitems__`` on batches of 256 from ``ShuffleBatchSampler``.
* ``readshard_compressed``: the ``compressed`` layout, served by its chunk-shuffle mode
  (``ds.iter_chunk_shuffled``); its batch mix is reported against a full shuffle.
* ``readshard_dataloader_2_workers``: ``torch.utils.data.DataLoader``, 2 workers, batches
  of 256 from ``ShuffleBatchSampler`` through ``loaders.ReadLoader``; counted after warm-up.
* ``numpy_memmap_limit``: the same int16 token matrix (plus lengths and labels: the bytes
  ``__getitems__`` returns) saved as ``.npy`` and gathered with numpy fancy indexing on
  ``np.memmap``: the machine's limit for this access pattern.
* ``hf_datasets``: the same tokens in a Hugging Face ``datasets`` Arrow dataset
  (``save_to_disk`` -> ``load_from_disk`` -> ``with_format("numpy")``), ``ds[idx_list]``.
* ``pyfastx_on_the_fly``: the seed's approach: ``pyfastx.Fasta`` random access by index and
  the METAGENE-1 ``Tokenizer.encode`` per read (index build time reported apart).

This VM evicts file pages idle for ~30 s (DAMON reclaim), so every measurement reads its
files right before it starts ("warm" = in page cache, read just before); the "cold" figures
of ``--reads`` evict the files first with ``posix_fadvise(DONTNEED)``.

Modes: default (the embedded sample, converted if absent), ``--quick`` (tiny, for tests),
``--reads N`` (a synthetic N-read dataset for scale runs), ``--convert`` (converter vs the
``datasets`` map path, via ``benchmarks/convert_bench.py``). ``--json`` prints one JSON
object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import mmap
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

__all__ = [
    "BATCH_SIZE",
    "COMPETITORS",
    "TARGETS",
    "BenchConfig",
    "RssWatch",
    "warm_files",
    "evict_files",
    "timebox",
    "prepare_sample",
    "build_synthetic",
    "save_limit_arrays",
    "run_side_by_side",
    "run_scale",
    "format_report",
    "main",
]

REPO = Path(__file__).resolve().parents[1]
TOKENIZER_JSON = REPO / "convert" / "assets" / "tokenizers" / "metagene-1" / "tokenizer.json"
SAMPLE_CONFIG = REPO / "configs" / "convert_sample.yaml"
BATCH_SIZE = 256
# Order of the table and of ``samples_per_s`` in the JSON.
COMPETITORS = (
    "readshard",
    "readshard_batched",
    "readshard_compressed",
    "readshard_dataloader_2_workers",
    "numpy_memmap_limit",
    "hf_datasets",
    "pyfastx_on_the_fly",
)
# Issue 3's performance targets: name -> (description, threshold).
TARGETS = {
    "batched_vs_memmap_limit": ("readshard_batched >= 50% of numpy_memmap_limit", 0.5),
    "batched_vs_hf_datasets": ("readshard_batched >= 10x hf_datasets", 10.0),
    "batched_vs_pyfastx": ("readshard_batched >= 100x pyfastx_on_the_fly", 100.0),
    "dataloader_2_workers": ("DataLoader, 2 workers, batch 256 >= 300k reads/s", 300_000.0),
    "open_time_s": ("open the dataset in < 1 s (target stated for 100 M reads)", 1.0),
    "open_rss_mb": ("open the dataset in < 300 MB RSS (target stated for 100 M reads)", 300.0),
}
HEADROOM_WARN = 1.5


def _log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- measuring tools


def warm_files(paths: Iterable[str | os.PathLike[str]]) -> float:
    """Read files whole (16 MiB blocks) so they sit in page cache; returns the seconds taken.

    Needed right before every measurement here: the VM pages out file pages idle ~30 s.
    """
    t0 = time.perf_counter()
    buf = bytearray(1 << 24)
    for p in paths:
        with open(p, "rb", buffering=0) as f:
            while f.readinto(buf):
                pass
    return time.perf_counter() - t0


def evict_files(paths: Iterable[str | os.PathLike[str]]) -> None:
    """Drop the files' clean pages from page cache (``posix_fadvise(DONTNEED)``), for cold runs.

    Only pages no process maps are dropped: close the mappings first.
    """
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def _proc_rss(pid: int) -> tuple[int, int]:
    """(VmRSS, RssAnon) in bytes of one process from /proc (0, 0 if gone)."""
    rss = anon = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("RssAnon:"):
                    anon = int(line.split()[1]) * 1024
    except OSError:
        pass
    return rss, anon


def _proc_cpu(pid: int) -> float:
    """utime + stime of one process in seconds (0 if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _read_bytes() -> int:
    """Bytes this process caused to be fetched from storage (/proc/self/io; page faults included)."""
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc/PID/task/TID/children (cheap: no /proc scan)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


class RssWatch:
    """Peak RSS (and anonymous RSS) of this process and its children while the block runs,
    and the CPU seconds they used.

    Sampled every ``interval`` s by a thread; RSS counts the file pages a memory map has
    touched (page cache), so ``peak_anon_mb`` is the memory the loader itself allocates;
    ``start`` is the tree's RSS when the block began. CPU time makes a contention-robust
    figure (samples per CPU-second) on a shared machine.
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak = 0
        self.peak_anon = 0
        self.start = 0
        self._cpu0: dict[int, float] = {}
        self._cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        rss = anon = 0
        for pid in _tree_pids(os.getpid()):
            r, a = _proc_rss(pid)
            rss += r
            anon += a
            c = _proc_cpu(pid)
            self._cpu0.setdefault(pid, 0.0 if self._thread is not None else c)
            self._cpu[pid] = max(self._cpu.get(pid, 0.0), c)
        self.peak = max(self.peak, rss)
        self.peak_anon = max(self.peak_anon, anon)

    def sample_now(self) -> None:
        """Take a sample immediately (e.g. before worker processes exit)."""
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "RssWatch":
        self._sample()
        self.start = self.peak
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    @property
    def peak_mb(self) -> float:
        """Peak VmRSS of the process tree, MiB."""
        return self.peak / 2**20

    @property
    def cpu_s(self) -> float:
        """CPU seconds (user + system) the process tree used inside the block."""
        return sum(max(0.0, c - self._cpu0.get(p, 0.0)) for p, c in self._cpu.items())

    @property
    def delta_mb(self) -> float:
        """Peak RSS minus RSS at the start of the block, MiB."""
        return (self.peak - self.start) / 2**20

    @property
    def peak_anon_mb(self) -> float:
        """Peak RssAnon of the process tree, MiB."""
        return self.peak_anon / 2**20


@dataclass
class Measurement:
    """One timed run: samples served, seconds, and peak memory."""

    samples: int
    seconds: float
    peak_rss_mb: float = 0.0
    peak_anon_mb: float = 0.0
    warm_s: float = 0.0
    delta_mb: float = 0.0
    cpu_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Samples per second."""
        return self.samples / self.seconds if self.seconds > 0 else 0.0

    @property
    def per_cpu_s(self) -> float:
        """Samples per CPU-second of the process tree (robust to other load on the machine)."""
        return self.samples / self.cpu_s if self.cpu_s > 0 else 0.0


def timebox(step: Callable[[], int], seconds: float, warmup_steps: int = 3, max_steps: int | None = None) -> tuple[int, float]:
    """Call ``step`` (returns samples served) for ``seconds`` after ``warmup_steps`` untimed calls.

    Returns:
        ``(samples, elapsed_seconds)`` of the timed part.
    """
    for _ in range(warmup_steps):
        step()
    n = steps = 0
    t0 = time.perf_counter()
    deadline = t0 + seconds
    while True:
        n += step()
        steps += 1
        now = time.perf_counter()
        if now >= deadline or (max_steps is not None and steps >= max_steps):
            return n, now - t0


def measure(
    step: Callable[[], int],
    seconds: float,
    files: Sequence[str | os.PathLike[str]] = (),
    warmup_steps: int = 3,
    max_steps: int | None = None,
) -> Measurement:
    """Warm ``files``, then time-box ``step`` under an :class:`RssWatch`."""
    warm_s = warm_files(files)
    with RssWatch() as watch:
        n, elapsed = timebox(step, seconds, warmup_steps, max_steps)
    return _from_watch(n, elapsed, watch, warm_s)


def _from_watch(n: int, elapsed: float, watch: RssWatch, warm_s: float = 0.0, extra: dict[str, Any] | None = None) -> Measurement:
    return Measurement(n, elapsed, peak_rss_mb=watch.peak_mb, peak_anon_mb=watch.peak_anon_mb, warm_s=warm_s,
                       delta_mb=watch.delta_mb, cpu_s=watch.cpu_s, extra=extra or {})


def _cycle(make: Callable[[int], Iterable[Any]]) -> Iterator[Any]:
    """``make(epoch)`` for epoch 0, 1, 2, ... chained (endless)."""
    epoch = 0
    while True:
        yield from make(epoch)
        epoch += 1


class _MultiEpochBatches:
    """A batch sampler that chains ``epochs`` epochs of a ``ShuffleBatchSampler``.

    One DataLoader iteration then spans many epochs, so the workers start once.
    """

    def __init__(self, sampler: Any, epochs: int) -> None:
        self.sampler = sampler
        self.epochs = epochs

    def __len__(self) -> int:
        return self.epochs * len(self.sampler)

    def __iter__(self) -> Iterator[np.ndarray]:
        for e in range(self.epochs):
            self.sampler.set_epoch(e)
            yield from self.sampler


# ----------------------------------------------------------------------------- data preparation


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


def _sample_convert_fields() -> dict[str, Any]:
    from convert.cli import load_config

    return load_config(str(SAMPLE_CONFIG))


def _convert(fasta: Path, mapping: Path, out: Path, *, jobs: int, **overrides: Any) -> None:
    from convert.pipeline import ConvertOptions, convert

    fields = {**_sample_convert_fields(), **overrides}
    convert(ConvertOptions(inputs=[str(fasta)], out=str(out), mapping=str(mapping), jobs=jobs,
                           overwrite=True, progress=False, **fields))


def prepare_sample(cfg: BenchConfig) -> dict[str, Path]:
    """The sample dataset (mmap layout), its compressed copy and its FASTA, built if absent.

    Default: ``data/sample/train`` exactly as ``make convert`` builds it (simulate, then
    convert with ``configs/convert_sample.yaml``, 2 jobs); the compressed copy goes to the
    cache. ``--quick``: a smaller simulation (200 fragments per species, 4,096 reads per
    shard), all in the cache.
    """
    from convert.format import read_manifest
    from convert.simulate import simulate

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
        _log(f"simulating reads into {reads_dir}")
        simulate(reads_dir, fragments_per_species=frags, seed=0, progress=False)
    if not (mmap_dir / "manifest.json").is_file():
        _log(f"converting {fasta} -> {mmap_dir} (layout mmap)")
        _convert(fasta, mapping, mmap_dir, jobs=jobs, **extra)
    manifest = read_manifest(mmap_dir)
    key = "-".join(s["sha256"][:8] for s in manifest["shards"])[:40]
    comp_dir = cfg.cache / f"compressed-{'quick' if cfg.quick else 'sample'}-{key}"
    if not (comp_dir / "manifest.json").is_file():
        _log(f"converting {fasta} -> {comp_dir} (layout compressed)")
        _convert(fasta, mapping, comp_dir, jobs=jobs, layout="compressed", compression="gzip",
                 max_length=int(manifest["max_length"]), **extra)
    return {"mmap": mmap_dir, "compressed": comp_dir, "fasta": fasta, "work": cfg.cache / f"work-{key}"}


def _npy_header(f: Any, dtype: np.dtype, shape: tuple[int, ...]) -> None:
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
        _npy_header(fi, np.int16, (n, L))
        _npy_header(fl, np.int16, (n,))
        _npy_header(fb, np.int64, (n,))
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
    from convert.format import shard_name, write_manifest, write_shard
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
    _npy_header(lim["input_ids"], np.int16, (num_reads, L))
    _npy_header(lim["lengths"], np.int16, (num_reads,))
    _npy_header(lim["labels"], np.int64, (num_reads,))
    entries, tokens = [], 0
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
            }
            tmp = ds_dir / f".{shard_name(s)}.tmp"
            entry = write_shard(tmp, input_ids=ids, vectors=vectors, num_classes=C, tokenizer=tok_info, shard_index=s)
            os.replace(tmp, ds_dir / shard_name(s))
            entries.append({"file": shard_name(s), **entry})
            tokens += int(lengths.sum())
            lim["input_ids"].write(ids.tobytes())
            lim["lengths"].write(lengths.tobytes())
            lim["labels"].write(labels.astype(np.int64).tobytes())
            if s % 50 == 0:
                _log(f"synthetic: {a + n:,}/{num_reads:,} reads ({time.perf_counter() - t0:.0f} s)")
    finally:
        for f in lim.values():
            f.close()
    write_manifest(ds_dir, {
        "tokenizer": tok_info,
        "max_length": L,
        "layout": "mmap",
        "compression": "none",
        "num_classes": C,
        "label_names": [f"species_{c}" for c in range(C)],
        "label_class_ids": [c + 1000 for c in range(C)],
        "label_tax_ids": [-1] * C,
        "shards": entries,
        "totals": {"num_rows": num_reads, "num_shards": len(entries), "num_tokens": tokens},
        "source": {"synthetic": True, "seed": seed, "reads_per_shard": reads_per_shard},
    })
    (limit_dir / "done.json").write_text(json.dumps({"num_rows": num_reads}))
    _log(f"synthetic dataset built in {time.perf_counter() - t0:.0f} s: {ds_dir}")
    return paths


# ----------------------------------------------------------------------------- competitors


def _shard_files(ds: Any) -> list[str]:
    return list(ds._files)


def _batches_from_sampler(n: int, count: int, seed: int = 0, epoch: int = 0) -> list[np.ndarray]:
    """The first ``count`` batches of ``ShuffleBatchSampler(n, 256)`` (full uniform shuffle)."""
    from loaders import ShuffleBatchSampler

    sampler = ShuffleBatchSampler(n, BATCH_SIZE, seed=seed)
    sampler.set_epoch(epoch)
    out = []
    for b in sampler:
        out.append(np.array(b, dtype=np.int64))
        if len(out) >= count:
            break
    return out


def _limit_step(paths: dict[str, Path], batches: list[np.ndarray], ids_only: bool = False,
                advice: int | None = None) -> tuple[Callable[[], int], Callable[[], None]]:
    """A gather step over plain ``np.memmap`` arrays of the ``.npy`` copies (and a closer)."""
    arrays = {k: np.load(p, mmap_mode="r") for k, p in paths.items()}
    if advice is not None:
        for arr in arrays.values():
            arr._mmap.madvise(advice)
    ids, lengths, labels = arrays["input_ids"], arrays["lengths"], arrays["labels"]
    it = iter(_cycle(lambda e: batches))

    def step() -> int:
        b = next(it)
        x = ids[b]
        if not ids_only:
            lengths[b]
            labels[b]
        return x.shape[0]

    def close() -> None:
        arrays.clear()

    return step, close


def bench_limit(paths: dict[str, Path], batches: list[np.ndarray], seconds: float, ids_only: bool = False) -> Measurement:
    """``numpy_memmap_limit``: fancy-index gathers on ``np.memmap`` of the ``.npy`` copies."""
    step, close = _limit_step(paths, batches, ids_only)
    try:
        return measure(step, seconds, list(paths.values()))
    finally:
        close()


def bench_batched(ds: Any, batches: list[np.ndarray], seconds: float) -> Measurement:
    """``readshard_batched``: ``ds.__getitems__`` on the sampler's batches (same as the limit's)."""
    it = iter(_cycle(lambda e: batches))
    return measure(lambda: ds.__getitems__(next(it))["labels"].shape[0], seconds, _shard_files(ds))


def bench_batched_live_sampler(ds: Any, seconds: float) -> Measurement:
    """``__getitems__`` with ``ShuffleBatchSampler`` generating indices inside the timed loop."""
    from loaders import ShuffleBatchSampler

    sampler = ShuffleBatchSampler(len(ds), BATCH_SIZE, seed=1)

    def epoch(e: int) -> Iterator[np.ndarray]:
        sampler.set_epoch(e)
        return iter(sampler)

    it = _cycle(epoch)
    return measure(lambda: ds.__getitems__(next(it))["labels"].shape[0], seconds, _shard_files(ds))


def bench_sampler_only(n: int, seconds: float) -> Measurement:
    """Indices per second of ``ShuffleBatchSampler`` alone (the Feistel permutation)."""
    from loaders import ShuffleBatchSampler

    sampler = ShuffleBatchSampler(n, BATCH_SIZE, seed=2)

    def epoch(e: int) -> Iterator[np.ndarray]:
        sampler.set_epoch(e)
        return iter(sampler)

    it = _cycle(epoch)
    return measure(lambda: next(it).shape[0], seconds)


def bench_items(ds: Any, seconds: float) -> Measurement:
    """``readshard``: ``ds[i]`` per item in ``ShuffleSampler`` order (256 items per step)."""
    from loaders import ShuffleSampler

    sampler = ShuffleSampler(len(ds), seed=3)

    def epoch(e: int) -> Iterator[int]:
        sampler.set_epoch(e)
        return iter(sampler)

    it = _cycle(epoch)

    def step() -> int:
        for _ in range(BATCH_SIZE):
            ds[next(it)]
        return BATCH_SIZE

    return measure(step, seconds, _shard_files(ds))


def bench_compressed(path: Path, seconds: float) -> tuple[Measurement, dict[str, float]]:
    """``readshard_compressed``: chunk-shuffled batches; plus its shuffle quality."""
    from loaders import ShardDataset, chunk_shuffle_labels, shuffle_quality

    ds = ShardDataset(path)
    it = _cycle(lambda e: ds.iter_chunk_shuffled(seed=0, epoch=e, batch_size=BATCH_SIZE))
    m = measure(lambda: next(it)["labels"].shape[0], seconds, _shard_files(ds), warmup_steps=1)
    quality = shuffle_quality(chunk_shuffle_labels(ds, seed=0, epoch=0), BATCH_SIZE)
    ds.close()
    return m, quality


def _identity(batch: Any) -> Any:
    return batch


def bench_dataloader(path: Path, seconds: float, num_workers: int = 2, warmup_batches: int = 20,
                     collate_in_workers: bool = False) -> Measurement:
    """``readshard_dataloader_2_workers``: ``loaders.ReadLoader`` (a real DataLoader, fork), after warm-up.

    ``ReadLoader`` trims batches in the workers (numpy, pickled through the worker pipe) and
    makes the int64 tensors in the main process. With ``collate_in_workers`` the plain
    ``DataLoader(collate_fn=collate_batch)`` path is measured instead: each tensor made in a
    worker crosses through a new shared-memory segment (a diagnostic variant).
    """
    from torch.utils.data import DataLoader

    from loaders import ReadLoader, ShardDataset, ShuffleBatchSampler, collate_batch

    ds = ShardDataset(path)
    sampler = ShuffleBatchSampler(len(ds), BATCH_SIZE, seed=4)
    epochs = max(2, int(seconds * 3e6 / max(1, len(ds))) + 2)  # more than the time box can use
    batches = _MultiEpochBatches(sampler, epochs)
    if collate_in_workers:
        loader: Any = DataLoader(ds, batch_sampler=batches, collate_fn=collate_batch,
                                 num_workers=num_workers, prefetch_factor=4)
    else:
        loader = ReadLoader(ds, batches, num_workers=num_workers, prefetch_factor=4)
    post = _identity
    warm_s = warm_files(_shard_files(ds))
    with RssWatch() as watch:
        it = iter(loader)
        t_start = time.perf_counter()
        for _ in range(warmup_batches):
            next(it)
        startup = time.perf_counter() - t_start
        n = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        for batch in it:
            n += int(post(batch)["labels"].shape[0])
            if time.perf_counter() >= deadline:
                break
        elapsed = time.perf_counter() - t0
        watch.sample_now()
    del it  # shuts the workers down
    return _from_watch(n, elapsed, watch, warm_s, {"startup_plus_warmup_s": round(startup, 3), "num_workers": num_workers})


def _hf_env(cache: Path) -> None:
    os.environ.setdefault("HF_DATASETS_CACHE", str(cache / "hf-cache"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def bench_hf(limit_paths: dict[str, Path], work: Path, batches: list[np.ndarray], seconds: float) -> Measurement:
    """``hf_datasets``: same tokens in an Arrow dataset, ``load_from_disk`` + numpy format, ``ds[list]``."""
    _hf_env(work)
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
    it = iter(_cycle(lambda e: batches))

    def step() -> int:
        b = hf[next(it).tolist()]
        return len(b["labels"])

    files = sorted(str(p) for p in hf_dir.glob("*.arrow"))
    m = measure(step, seconds, files)
    m.extra["build_s"] = None if t_build is None else round(t_build, 2)
    return m


def bench_pyfastx(fasta: Path, work: Path, max_length: int, seconds: float) -> Measurement:
    """``pyfastx_on_the_fly``: ``Fasta[i].seq`` + METAGENE-1 ``Tokenizer.encode`` per read.

    Reads are visited in ``ShuffleSampler`` order; the index is rebuilt (timed apart).
    """
    import pyfastx
    from tokenizers import Tokenizer

    from loaders import ShuffleSampler

    work.mkdir(parents=True, exist_ok=True)
    # pyfastx 2.3 overflows a heap buffer (glibc abort at exit) when index_file is longer
    # than the FASTA path: link the FASTA into the work dir and use the default index name.
    link = work / "train.fa"
    link.unlink(missing_ok=True)
    link.symlink_to(Path(fasta).resolve())
    index = work / "train.fa.fxi"
    for stale in (index, work / "train.fa.fxi-journal"):
        stale.unlink(missing_ok=True)
    warm_files([fasta])
    t0 = time.perf_counter()
    fa = pyfastx.Fasta(str(link))
    index_s = time.perf_counter() - t0
    tok = Tokenizer.from_file(str(TOKENIZER_JSON))
    encode = tok.encode
    n = len(fa)
    sampler = ShuffleSampler(n, seed=5)
    order = iter(sampler)
    out = np.zeros((BATCH_SIZE, max_length), dtype=np.int16)
    L = max_length

    def step() -> int:
        out[:] = 0
        for k in range(BATCH_SIZE):
            ids = encode(fa[next(order)].seq).ids[:L]
            out[k, : len(ids)] = ids
        return BATCH_SIZE

    m = measure(step, seconds, [fasta, index], warmup_steps=1)
    m.extra["index_build_s"] = round(index_s, 3)
    m.extra["index_reads_per_s"] = round(n / index_s, 1)
    return m


# ----------------------------------------------------------------------------- the runs


def _machine() -> dict[str, Any]:
    import h5py
    import torch

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "h5py": h5py.__version__,
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for mod in ("datasets", "pyfastx", "tokenizers"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:
            info[mod] = None
    return info


def _best(results: dict[str, Measurement], name: str, m: Measurement) -> None:
    if name not in results or m.rate > results[name].rate:
        results[name] = m


def _common_notes(cfg: BenchConfig) -> list[str]:
    return [
        "Every measurement reads its files right before it starts (this VM evicts file pages idle "
        "for ~30 s): 'warm' means in page cache; cold figures say so.",
        f"Random-access competitors use the same batches of {BATCH_SIZE} indices from "
        "ShuffleBatchSampler (a full uniform shuffle); readshard (per item) and pyfastx use "
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


def _ratios(rates: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    limit = rates.get("numpy_memmap_limit")
    batched = rates.get("readshard_batched")
    to_limit = {k: v / limit for k, v in rates.items() if limit} if limit else {}
    speedup = {k: batched / v for k, v in rates.items() if batched and v > 0} if batched else {}
    return to_limit, speedup


def _targets(rates: dict[str, float], scale: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def add(key: str, value: float | None, higher_is_better: bool = True) -> None:
        if value is None:
            return
        desc, thr = TARGETS[key]
        ok = value >= thr if higher_is_better else value < thr
        out[key] = {"target": desc, "value": round(float(value), 4), "threshold": thr, "pass": bool(ok)}

    b = rates.get("readshard_batched")
    if b and rates.get("numpy_memmap_limit"):
        add("batched_vs_memmap_limit", b / rates["numpy_memmap_limit"])
    if b and rates.get("hf_datasets"):
        add("batched_vs_hf_datasets", b / rates["hf_datasets"])
    if b and rates.get("pyfastx_on_the_fly"):
        add("batched_vs_pyfastx", b / rates["pyfastx_on_the_fly"])
    add("dataloader_2_workers", rates.get("readshard_dataloader_2_workers"))
    if scale:
        add("open_time_s", scale.get("open_s"), higher_is_better=False)
        add("open_rss_mb", scale.get("open_rss_delta_mb"), higher_is_better=False)
    return out


def _headroom(cfg: BenchConfig, rates: dict[str, float], notes: list[str]) -> dict[str, Any] | None:
    if not cfg.model_rate:
        return None
    dl = rates.get("readshard_dataloader_2_workers")
    if not dl:
        return None
    h = dl / cfg.model_rate
    res = {"model_reads_per_s": cfg.model_rate, "dataloader_reads_per_s": dl, "headroom": h,
           "warn": h < HEADROOM_WARN}
    if h < HEADROOM_WARN:
        msg = (f"WARNING: loader headroom {h:.2f}x over the model's {cfg.model_rate:,.0f} reads/s is below "
               f"{HEADROOM_WARN}x: the GPU may wait on data (more workers, bigger batches, or the mmap layout)")
        notes.append(msg)
        _log(msg)
    return res


def _package(cfg: BenchConfig, mode: str, dataset: dict[str, Any], results: dict[str, Measurement],
             extras: dict[str, Measurement], notes: list[str], scale: dict[str, Any] | None = None,
             quality: dict[str, Any] | None = None, machine: dict[str, Any] | None = None) -> dict[str, Any]:
    rates = {k: results[k].rate for k in COMPETITORS if k in results}
    to_limit, speedup = _ratios(rates)
    report: dict[str, Any] = {
        "mode": mode,
        "dataset": dataset,
        "batch_size": BATCH_SIZE,
        "samples_per_s": {k: round(v, 1) for k, v in rates.items()},
        "ratio_to_numpy_memmap_limit": {k: round(v, 4) for k, v in to_limit.items()},
        "readshard_batched_speedup_over": {k: round(v, 3) for k, v in speedup.items() if k != "readshard_batched"},
        "peak_rss_mb": {k: round(m.peak_rss_mb, 1) for k, m in results.items()},
        "peak_rss_delta_mb": {k: round(m.delta_mb, 1) for k, m in results.items()},
        "peak_anon_rss_mb": {k: round(m.peak_anon_mb, 1) for k, m in results.items()},
        "samples_per_cpu_s": {k: round(m.per_cpu_s, 1) for k, m in {**results, **extras}.items()},
        "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
        "seconds_measured": {k: round(m.seconds, 2) for k, m in results.items()},
        "warm_read_s": {k: round(m.warm_s, 3) for k, m in results.items()},
        "extra_samples_per_s": {k: round(m.rate, 1) for k, m in extras.items()},
        "details": {k: m.extra for k, m in {**results, **extras}.items() if m.extra},
        "shuffle_quality": quality or {},
        "targets": _targets(rates, scale),
        "machine": machine or _machine(),
        "notes": notes,
        "skipped": {"mosaicml_streaming": "not installed: needs torchvision and a CUDA torch (torch>=2.14) "
                    "over the pinned CPU torch 2.13"},
    }
    if scale:
        report["scale"] = scale
    headroom = _headroom(cfg, rates, notes)
    if headroom:
        report["headroom"] = headroom
    return report


def run_side_by_side(cfg: BenchConfig) -> dict[str, Any]:
    """The default (and ``--quick``) run: every competitor on the sample, one process."""
    from loaders import ShardDataset, shuffle_quality

    machine = _machine()
    paths = prepare_sample(cfg)
    ds = ShardDataset(paths["mmap"])
    n = len(ds)
    work = paths["work"]
    limit_paths = save_limit_arrays(ds, work / "limit")
    batches = _batches_from_sampler(n, max(1, n // BATCH_SIZE))
    results: dict[str, Measurement] = {}
    extras: dict[str, Measurement] = {}
    secs = cfg.seconds
    notes = _common_notes(cfg)

    # Memory-speed competitors, interleaved so background load hits them alike.
    for r in range(cfg.rounds):
        _log(f"round {r + 1}/{cfg.rounds}: numpy_memmap_limit, readshard_batched, readshard")
        _best(results, "numpy_memmap_limit", bench_limit(limit_paths, batches, secs))
        _best(results, "readshard_batched", bench_batched(ds, batches, secs))
        _best(results, "readshard", bench_items(ds, secs))
        _best(extras, "numpy_memmap_ids_only", bench_limit(limit_paths, batches, secs / 2, ids_only=True))
        _best(extras, "readshard_batched_sampler_in_loop", bench_batched_live_sampler(ds, secs / 2))
    extras["shuffle_batch_sampler_indices_only"] = bench_sampler_only(n, secs / 2)

    _log("readshard_compressed (chunk shuffle)")
    m, q = bench_compressed(paths["compressed"], secs)
    results["readshard_compressed"] = m
    full = shuffle_quality(ds.labels[np.concatenate(batches)], BATCH_SIZE)
    quality = {
        "readshard_compressed_chunk_shuffle": {k: round(v, 4) for k, v in q.items()},
        "readshard_full_shuffle": {k: round(v, 4) for k, v in full.items()},
        "buffer_chunks": 16,
        "num_chunks": int(sum(-(-int(c) // 4096) for c in ds._counts)),
    }
    if quality["num_chunks"] <= 16:
        notes.append(f"The sample has only {quality['num_chunks']} chunks of 4,096 rows, so the chunk "
                     "shuffle's 16-chunk buffer mixes the whole dataset; see --reads for a large case.")

    if "dataloader" not in cfg.skip:
        _log("readshard_dataloader_2_workers")
        results["readshard_dataloader_2_workers"] = bench_dataloader(paths["mmap"], secs)
        extras["dataloader_2_workers_collate_in_workers"] = bench_dataloader(paths["mmap"], secs / 2, collate_in_workers=True)
    if "hf" not in cfg.skip:
        _log("hf_datasets")
        results["hf_datasets"] = bench_hf(limit_paths, work, batches, secs)
    if "pyfastx" not in cfg.skip:
        _log("pyfastx_on_the_fly")
        results["pyfastx_on_the_fly"] = bench_pyfastx(paths["fasta"], work, ds.max_length, cfg.pyfastx_seconds)

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
    return _package(cfg, "quick" if cfg.quick else "sample", dataset, results, extras, notes,
                    quality=quality, machine=machine)


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
    proc = subprocess.run([sys.executable, "-c", _OPEN_SCRIPT, str(path)], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])})
    if proc.returncode != 0:
        raise RuntimeError(f"open measurement failed: {proc.stderr.strip()[-2000:]}")
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


def run_scale(cfg: BenchConfig) -> dict[str, Any]:
    """``--reads N``: open cost, warm and cold random access on a synthetic N-read dataset."""
    from loaders import ShardDataset, chunk_shuffle_labels, shuffle_quality

    machine = _machine()
    N = int(cfg.reads or 0)
    if N < BATCH_SIZE:
        raise SystemExit(f"bench: --reads must be at least {BATCH_SIZE}")
    d = cfg.cache / f"synthetic-{N}-L{cfg.max_length}-rps{cfg.reads_per_shard}-c{cfg.num_classes}-v1"
    paths = build_synthetic(d, N, max_length=cfg.max_length, reads_per_shard=cfg.reads_per_shard,
                            num_classes=cfg.num_classes)
    limit_paths = {k: paths["limit"] / f"{k}.npy" for k in ("input_ids", "lengths", "labels")}
    notes = _common_notes(cfg)
    _log("open time and RSS (fresh process)")
    open_info = measure_open(paths["mmap"])
    ds = ShardDataset(paths["mmap"])
    batches = _batches_from_sampler(N, min(4096, max(1, N // BATCH_SIZE)))
    secs = cfg.seconds
    results: dict[str, Measurement] = {}
    extras: dict[str, Measurement] = {}
    token_bytes = N * cfg.max_length * 2
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for r in range(cfg.rounds):
        _log(f"warm round {r + 1}/{cfg.rounds} (each reads its {token_bytes / 1e9:.1f} GB of files first)")
        _best(results, "numpy_memmap_limit", bench_limit(limit_paths, batches, secs))
        _best(results, "readshard_batched", bench_batched(ds, batches, secs))
        _best(results, "readshard", bench_items(ds, secs))
    _best(extras, "readshard_batched_sampler_in_loop", bench_batched_live_sampler(ds, secs / 2))
    extras["shuffle_batch_sampler_indices_only"] = bench_sampler_only(N, secs / 2)
    if "dataloader" not in cfg.skip:
        _log("readshard_dataloader_2_workers (warm)")
        results["readshard_dataloader_2_workers"] = bench_dataloader(paths["mmap"], secs)
        extras["dataloader_2_workers_collate_in_workers"] = bench_dataloader(paths["mmap"], secs / 2, collate_in_workers=True)
    ds.close()

    cold: dict[str, Measurement] = {}
    if cfg.cold:
        cold_batches = _batches_from_sampler(N, 2000, epoch=7)  # indices not touched above
        _log("cold: readshard_batched (MADV_RANDOM), files evicted first")
        ds = ShardDataset(paths["mmap"])
        evict_files(_shard_files(ds))
        it = iter(cold_batches)
        io0 = _read_bytes()
        with RssWatch() as w:
            n, el = timebox(lambda: ds.__getitems__(next(it))["labels"].shape[0], secs, 0, len(cold_batches))
        cold["readshard_batched_cold"] = _from_watch(n, el, w, extra={"disk_read_mb": (_read_bytes() - io0) / 2**20})
        ds.close()
        del ds
        for name, adv in (("numpy_memmap_cold_madv_random", mmap.MADV_RANDOM), ("numpy_memmap_cold_default_readahead", None)):
            _log(f"cold: {name}, files evicted first")
            evict_files(limit_paths.values())
            step, close = _limit_step(limit_paths, cold_batches, advice=adv)
            io0 = _read_bytes()
            with RssWatch() as w:
                n, el = timebox(step, secs, 0, len(cold_batches))
            cold[name] = _from_watch(n, el, w, extra={"disk_read_mb": (_read_bytes() - io0) / 2**20})
            close()
        notes.append("Cold figures: the files' pages were evicted (posix_fadvise DONTNEED) before each; "
                     "'disk KB/sample' is what the process read from storage. readshard maps shards with "
                     "MADV_RANDOM: one page per row and array (~3 random 4 KiB reads per sample, disk-IOPS bound). "
                     "The default read-ahead pulls 8 MiB around each fault: while the file fits in RAM it soon holds the "
                     "whole file (read at sequential speed, so it wins here); once data exceed RAM every random row "
                     "costs 8 MiB of reads and evicts other rows.")
    _log("chunk-shuffle quality on the synthetic labels (class-sorted: worst case)")
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
    notes.append("hf_datasets, pyfastx_on_the_fly and readshard_compressed are not run at scale "
                 "(building them for N reads takes far longer than the bench); see the default run.")
    if token_bytes <= ram:
        notes.append(f"The {token_bytes / 1e9:.1f} GB of tokens fit in RAM ({ram / 2**30:.0f} GiB): the cold "
                     "figures stand in for data larger than RAM (every random row comes from disk).")
    dataset = {"path": str(paths["mmap"]), "num_reads": N, "num_shards": open_info["num_shards"],
               "max_length": cfg.max_length, "num_classes": cfg.num_classes, "reads_per_shard": cfg.reads_per_shard,
               "synthetic": True}
    return _package(cfg, "scale", dataset, results, extras, notes, scale=scale, quality=quality, machine=machine)


# ----------------------------------------------------------------------------- output


def _fmt_rate(x: float) -> str:
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.1f} k"


def format_report(rep: dict[str, Any]) -> str:
    """The human-readable table(s) of a report."""
    m = rep["machine"]
    ds = rep["dataset"]
    lines = [
        f"readshard loader benchmark ({rep['mode']}): {ds['num_reads']:,} reads x L={ds['max_length']} int16, "
        f"{ds.get('num_shards', '?')} shards, batch {rep['batch_size']}",
        f"machine: {m['cpu_count']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM, load avg at start "
        f"{m['load_avg_at_start']}; python {m['python']}, torch {m['torch']}, numpy {m['numpy']}, "
        f"h5py {m['h5py']}, datasets {m.get('datasets')}, pyfastx {m.get('pyfastx')}; load avg at end "
        f"{rep['load_avg_at_end']}",
        "files read right before each measurement (page cache is evicted after ~30 s idle here)",
        "",
        f"{'competitor':<32}{'samples/s':>11}{'/ limit':>9}{'batched /':>11}{'per CPU-s':>11}{'peak RSS':>10}{'+RSS':>9}",
    ]
    sps, lim, sp = rep["samples_per_s"], rep["ratio_to_numpy_memmap_limit"], rep["readshard_batched_speedup_over"]
    for k in COMPETITORS:
        if k not in sps:
            continue
        spx = f"{sp[k]:.2f}x" if k in sp else "-"
        lines.append(
            f"{k:<32}{_fmt_rate(sps[k]):>11}{lim.get(k, float('nan')):>9.3f}{spx:>11}"
            f"{_fmt_rate(rep['samples_per_cpu_s'][k]):>11}{rep['peak_rss_mb'][k]:>7.0f} MB"
            f"{rep['peak_rss_delta_mb'][k]:>6.0f} MB"
        )
    if rep["extra_samples_per_s"]:
        lines.append("extra: " + ", ".join(f"{k} {_fmt_rate(v)}/s" for k, v in rep["extra_samples_per_s"].items()))
    det = rep["details"]
    if "pyfastx_on_the_fly" in det:
        d = det["pyfastx_on_the_fly"]
        lines.append(f"pyfastx index build (not in its rate): {d['index_build_s']:.2f} s ({_fmt_rate(d['index_reads_per_s'])} reads/s)")
    if "readshard_dataloader_2_workers" in det:
        lines.append(f"DataLoader start-up + 20 warm-up batches (not in its rate): "
                     f"{det['readshard_dataloader_2_workers']['startup_plus_warmup_s']:.2f} s")
    for name, q in rep["shuffle_quality"].items():
        if isinstance(q, dict):
            lines.append(f"shuffle quality {name}: mean per-batch class entropy {q['mean_entropy']:.3f} bits vs "
                         f"full shuffle {q['full_shuffle_entropy']:.3f} (ratio {q['ratio']:.3f})")
    sc = rep.get("scale")
    if sc:
        lines.append(f"open ShardDataset ({sc['num_reads']:,} reads, {sc['num_shards']} shards, fresh process): "
                     f"{sc['open_s'] * 1e3:.1f} ms, RSS +{sc['open_rss_delta_mb']:.1f} MB "
                     f"({sc['rss_before_open_mb']:.0f} -> {sc['rss_after_open_mb']:.0f} MB incl. torch); "
                     f"first batch spread over all shards {sc['first_batch_spread_over_all_shards_s'] * 1e3:.0f} ms")
        if sc["cold_samples_per_s"]:
            lines.append("cold (files evicted first; tokens " + (">" if sc["data_exceeds_ram"] else "<=") +
                         " RAM): " + ", ".join(f"{k} {_fmt_rate(v)}/s ({sc['cold_disk_kb_per_sample'][k]:,.1f} disk KB/sample)"
                                               for k, v in sc["cold_samples_per_s"].items()))
    elif "open" in ds:
        o = ds["open"]
        lines.append(f"open ShardDataset (fresh process): {o['open_s'] * 1e3:.1f} ms, RSS +{o['open_rss_delta_mb']:.1f} MB")
    if rep.get("headroom"):
        h = rep["headroom"]
        lines.append(f"headroom over the model ({h['model_reads_per_s']:,.0f} reads/s): {h['headroom']:.2f}x"
                     + ("  WARNING: below 1.5x" if h["warn"] else ""))
    lines.append("")
    lines.append("issue-3 targets:")
    for t in rep["targets"].values():
        lines.append(f"  [{'PASS' if t['pass'] else 'FAIL'}] {t['target']}: {t['value']:,.3f}")
    lines.append("")
    lines.append("notes:")
    lines.extend(f"  - {n}" for n in rep["notes"])
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def _run_convert_bench(size: int, as_json: bool) -> int:
    spec = importlib.util.spec_from_file_location("readshard_convert_bench", REPO / "benchmarks" / "convert_bench.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"bench: {REPO / 'benchmarks' / 'convert_bench.py'} not found (run from a source checkout)")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.main(["--fragments-per-species", str(size), *(["--json"] if as_json else [])]))


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m loaders.bench",
        description="readshard loaders vs numpy memmap (the limit), Hugging Face datasets and pyfastx + "
        "tokenizing on the fly, side by side in one run. Default: the embedded sample (converted "
        "into data/sample/train if absent).",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout (progress on stderr)")
    p.add_argument("--quick", action="store_true", help="tiny dataset and time boxes (smoke test, < 30 s)")
    p.add_argument("--reads", type=int, help="scale run on a synthetic dataset of N reads (kept in --cache)")
    p.add_argument("--reads-per-shard", type=int, default=65536, help="shard size of the synthetic dataset (default 65536, the converter's)")
    p.add_argument("--model-rate", type=float, help="the model's training reads/s: report the loader's headroom, warn below 1.5x")
    p.add_argument("--convert", nargs="?", const=40000, type=int, metavar="FRAGMENTS_PER_SPECIES",
                   help="converter vs Hugging Face datasets map path (benchmarks/convert_bench.py); "
                   "size in fragments per species (default 40000 = 2 M reads)")
    p.add_argument("--seconds", type=float, help="time box per measurement (default 4; --quick 0.3)")
    p.add_argument("--rounds", type=int, help="interleaved rounds of the memory-speed competitors (default 2)")
    p.add_argument("--cache", default="data/bench-cache", help="where derived data live (default data/bench-cache)")
    p.add_argument("--sample", default="data/sample", help="sample directory, as `make convert` (default data/sample)")
    p.add_argument("--skip", default="", help="comma list of dataloader,hf,pyfastx to leave out")
    p.add_argument("--no-cold", action="store_true", help="--reads: skip the cold (evicted) measurements")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.convert is not None:
        return _run_convert_bench(args.convert, args.json)
    cfg = BenchConfig(
        seconds=args.seconds if args.seconds else (0.3 if args.quick else 4.0),
        rounds=args.rounds if args.rounds else (1 if args.quick else 2),
        cache=Path(args.cache),
        sample=Path(args.sample),
        quick=args.quick,
        reads=args.reads,
        reads_per_shard=args.reads_per_shard,
        pyfastx_seconds=0.3 if args.quick and not args.seconds else 3.0 if not args.seconds else min(3.0, args.seconds),
        model_rate=args.model_rate,
        skip=tuple(s for s in args.skip.split(",") if s),
        cold=not args.no_cold,
    )
    cfg.cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    report = run_scale(cfg) if cfg.reads else run_side_by_side(cfg)
    report["wall_s"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(report, indent=1, default=float))
    else:
        print(format_report(report))
        print(f"\n(wall time {report['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
