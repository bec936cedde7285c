"""Converter throughput and memory, side by side with what a user would run instead.

Run: ``python -m loaders.bench --convert [40000]`` or ``python -m readshard_bench.convert_bench
[--fragments-per-species 40000] [--jobs 2] [--json]``
(40,000 fragments x 25 species x 2 mates = 2 M reads, 90% in train.fa, which is converted).

One process run measures, on the same simulated reads (file read right before each step,
since this VM evicts idle file pages):

* ``pure_tokenization``: the METAGENE-1 ``Tokenizer.encode`` loop alone over the same reads,
  in ``jobs`` processes (sequences extracted before timing): the rate the converter can at
  best reach.
* ``fast_tokenization``: the exact fast BPE (:mod:`convert.bpe`, what the converter uses for
  METAGENE-1) alone over the same reads, in ``jobs`` processes, in units of 65,536 reads
  (blob and offsets built before timing), ``--repeats`` passes: each process's median pass,
  the slowest process's counts; ``fast_vs_hf_encode`` is its rate over
  ``pure_tokenization``'s (same reads, same processes).
* ``readshard``: ``python -m convert --jobs N`` end to end (interpreter start, parse, label,
  tokenize, write, hash, fsync; units on N threads, the default) into a new ``--out`` (the
  bench's own earlier output is removed before timing, as for ``hf_datasets``), the median of
  ``--repeats`` runs; peak RSS of the whole process tree sampled every 0.1 s.
  ``time_vs_fast_tokenization`` is its time over ``fast_tokenization``'s: both medians, so
  one noisy run on a shared machine does not decide the ratio. ``readshard_processes`` is
  one run with ``--parallel processes`` (skip with ``--no-processes``), ``readshard_1_job``
  one with ``--jobs 1`` (skip with ``--no-1-job``).
* ``hf_datasets``: Hugging Face ``datasets``: ``Dataset.from_generator`` over pyfastx,
  ``.map(tokenize, batched=True, num_proc=N)`` with the same tokenizer through
  ``PreTrainedTokenizerFast``, ``save_to_disk`` (the ``bench`` extra; skipped with one line
  when ``datasets`` is not installed).

``--rss-only`` converts only (for the peak-RSS-vs-input-size check on 2 M and 20 M reads).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from readshard_bench.workdir import claim_workdir


__all__ = ["main", "pure_tokenization", "fast_tokenization", "run_hf_datasets", "run_readshard", "run_readshard_median",
           "load_average"]


def _tokenizer() -> Path:
    from readshard_bench.competitors.fasta import tokenizer_json

    return tokenizer_json()


def _child_env() -> dict[str, str]:
    """The environment for a converter subprocess: it imports the same ``convert`` as this one."""
    import convert

    root = str(Path(convert.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)}


def warm(path: Path) -> None:
    """Read a file so it is in page cache right before measuring."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def tree_rss_sampler(pid: int, stop: threading.Event, out: dict) -> None:
    import psutil

    peak = 0
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    while not stop.is_set():
        try:
            procs = [root, *root.children(recursive=True)]
            total = 0
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            peak = max(peak, total)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.1)
    out["peak_tree_rss_mb"] = peak / 2**20


def _encode_part(args: tuple[str, int, int]) -> tuple[int, float]:
    import pyfastx
    from tokenizers import Tokenizer

    path, part, parts = args
    seqs = [s for i, (_, s) in enumerate(pyfastx.Fastx(path)) if i % parts == part]
    tok = Tokenizer.from_file(str(_tokenizer()))
    t0 = time.perf_counter()
    for s in seqs:
        tok.encode(s).ids
    return len(seqs), time.perf_counter() - t0


def _fast_part(args: tuple[str, int, int, int]) -> tuple[int, float]:
    import statistics

    import numpy as np
    import pyfastx

    from convert.tokenizers import BpeTokenizer

    path, part, parts, repeats = args
    seqs = [s for i, (_, s) in enumerate(pyfastx.Fastx(path)) if i % parts == part]
    tok = BpeTokenizer("metagene-1", _tokenizer(), fast_min_reads=0)
    assert tok.encoder == "fast-bpe", tok.encoder_note
    units = []
    for k in range(0, len(seqs), 65536):
        chunk = seqs[k : k + 65536]
        offsets = np.zeros(len(chunk) + 1, dtype=np.int64)
        np.cumsum([len(s) for s in chunk], out=offsets[1:])
        units.append(("".join(chunk).encode(), offsets))
    tok.encode(*units[0], 64) if units else None  # tables and JIT cache loaded before timing
    passes = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        for blob, offsets in units:
            tok.encode(blob, offsets, 64)
        passes.append(time.perf_counter() - t0)
    return len(seqs), statistics.median(passes)


def fast_tokenization(path: Path, jobs: int, repeats: int = 3) -> dict:
    """The fast encoder alone, ``jobs`` processes, median of ``repeats`` passes (see the module docstring)."""
    warm(path)
    with mp.get_context("spawn").Pool(jobs, initializer=_child_path) as pool:
        results = pool.map(_fast_part, [(str(path), k, jobs, repeats) for k in range(jobs)])
    n = sum(r[0] for r in results)
    slowest = max(r[1] for r in results)
    return {"reads": n, "seconds": slowest, "reads_per_s": n / slowest}


def _child_path() -> None:
    sys.path[:0] = [p for p in _child_env()["PYTHONPATH"].split(os.pathsep) if p and p not in sys.path]


def load_average() -> str:
    """``uptime``'s load averages, printed beside every figure (the machine may be shared)."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def pure_tokenization(path: Path, jobs: int) -> dict:
    warm(path)
    with mp.get_context("spawn").Pool(jobs) as pool:
        results = pool.map(_encode_part, [(str(path), k, jobs) for k in range(jobs)])
    n = sum(r[0] for r in results)
    # The slowest process bounds the wall time of a parallel tokenization pass.
    slowest = max(r[1] for r in results)
    return {"reads": n, "seconds": slowest, "reads_per_s": n / slowest}


def run_readshard_median(path: Path, mapping: Path, out: Path, jobs: int, repeats: int) -> dict:
    """:func:`run_readshard` ``repeats`` times; the run of median time, with every run's seconds."""
    runs = sorted((run_readshard(path, mapping, out, jobs) for _ in range(max(1, repeats))), key=lambda r: r["seconds"])
    median = dict(runs[len(runs) // 2])
    median["runs_seconds"] = [r["seconds"] for r in runs]
    return median


def run_readshard(path: Path, mapping: Path, out: Path, jobs: int, extra: list[str] | None = None) -> dict:
    """One ``python -m convert`` run into a new ``out`` (an earlier run's dataset there is removed first), timed."""
    from convert.paths import UnsafePathError, check_replaceable

    try:  # only a readshard dataset or an empty directory: the converter's own --overwrite rule
        check_replaceable(out)
    except UnsafePathError as exc:
        raise SystemExit(f"convert bench: {exc}") from None
    if out.exists():
        shutil.rmtree(out)
    warm(path)
    cmd = [sys.executable, "-m", "convert", str(path), "--mapping", str(mapping), "--out", str(out),
           "--jobs", str(jobs), "--no-progress", *(extra or [])]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop, rss = threading.Event(), {}
    th = threading.Thread(target=tree_rss_sampler, args=(proc.pid, stop, rss))
    th.start()
    stdout, stderr = proc.communicate()
    elapsed = time.perf_counter() - t0
    stop.set()
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"converter failed: {stderr}")
    report = json.loads((out / "report.json").read_text())
    size = path.stat().st_size
    return {
        "reads": report["records_in"],
        "seconds": elapsed,
        "reads_per_s": report["records_in"] / elapsed,
        "mb_per_s": size / 1e6 / elapsed,
        "peak_tree_rss_mb": rss.get("peak_tree_rss_mb"),
        "peak_parent_rss_mb": report["peak_rss_mb"]["parent"],
        "peak_worker_rss_mb": report["peak_rss_mb"]["worker_max"],
        "parallel": report.get("parallel"),
        "output_bytes": sum(p.stat().st_size for p in out.glob("shard-*.h5")),
        "summary": stdout.strip(),
    }


def _hf_job(path: str, out: str, jobs: int, cache: str, queue) -> None:
    os.environ["HF_DATASETS_CACHE"] = cache
    os.environ["HF_HUB_OFFLINE"] = "1"
    import datasets
    import pyfastx
    from transformers import PreTrainedTokenizerFast

    datasets.disable_progress_bars()
    tok = PreTrainedTokenizerFast(tokenizer_file=str(_tokenizer()), pad_token="[PAD]")

    def gen():
        for name, seq in pyfastx.Fastx(path):
            yield {"name": name, "seq": seq}

    def tokenize(batch):
        return tok(batch["seq"], truncation=True, max_length=64)

    t0 = time.perf_counter()
    ds = datasets.Dataset.from_generator(gen, cache_dir=cache)
    ds = ds.map(tokenize, batched=True, num_proc=jobs, remove_columns=["seq"])
    ds.save_to_disk(out)
    queue.put((len(ds), time.perf_counter() - t0))


def run_hf_datasets(path: Path, workdir: Path, jobs: int) -> dict:
    # A fresh cache every run: from_generator would otherwise reuse an earlier run's Arrow files.
    for name in ("hf_cache", "hf_out"):
        shutil.rmtree(workdir / name, ignore_errors=True)
    warm(path)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_hf_job, args=(str(path), str(workdir / "hf_out"), jobs, str(workdir / "hf_cache"), q))
    p.start()
    stop, rss = threading.Event(), {}
    th = threading.Thread(target=tree_rss_sampler, args=(p.pid, stop, rss))
    th.start()
    n, elapsed = q.get()
    p.join()
    stop.set()
    th.join()
    size = sum(f.stat().st_size for f in (workdir / "hf_out").rglob("*") if f.is_file())
    cache = sum(f.stat().st_size for f in (workdir / "hf_cache").rglob("*") if f.is_file())
    return {"reads": n, "seconds": elapsed, "reads_per_s": n / elapsed, "peak_tree_rss_mb": rss.get("peak_tree_rss_mb"),
            "output_bytes": size, "cache_bytes": cache}


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (``python -m loaders.bench --convert`` runs it too)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fragments-per-species", type=int, default=40000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--workdir", help="keep inputs/outputs here (default: a temp dir, removed)")
    ap.add_argument("--rss-only", action="store_true", help="only the converter (throughput and peak RSS)")
    ap.add_argument("--skip-hf", action="store_true")
    ap.add_argument("--no-1-job", action="store_true", help="skip the --jobs 1 converter run")
    ap.add_argument("--no-processes", action="store_true",
                    help="skip the --parallel processes converter run (the default runs units on threads)")
    ap.add_argument("--repeats", type=int, default=3,
                    help="runs of the fast tokenizer and of the default converter run; their medians are compared")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    from sample.simulate import simulate

    from readshard_bench.measure import log

    hf_missing = importlib.util.find_spec("datasets") is None
    if hf_missing and not args.rss_only and not args.skip_hf:
        log("skipped hf_datasets: datasets is not installed (pip install 'readshard[bench]' or make bench)")

    # A typed --workdir is claimed (new, empty or the bench's own) before anything in it is deleted.
    work = claim_workdir(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="readshard-convert-bench-"))
    reads_dir = work / f"reads-{args.fragments_per_species}"
    if not (reads_dir / "train.fa").is_file():
        simulate(reads_dir, fragments_per_species=args.fragments_per_species, seed=0, progress=False)
    train, mapping = reads_dir / "train.fa", reads_dir / "mapping.tsv"
    results: dict = {"input": {"path": str(train), "bytes": train.stat().st_size}, "jobs": args.jobs}
    try:
        results["load_before"] = load_average()
        if not args.rss_only:
            results["pure_tokenization"] = pure_tokenization(train, args.jobs)
            results["fast_tokenization"] = fast_tokenization(train, args.jobs, args.repeats)
        results["readshard"] = run_readshard_median(train, mapping, work / "readshard_out", args.jobs, args.repeats)
        if not args.rss_only and not args.no_processes and args.jobs != 1:
            results["readshard_processes"] = run_readshard(train, mapping, work / "readshard_out", args.jobs,
                                                           ["--parallel", "processes"])
        if not args.rss_only and not args.no_1_job and args.jobs != 1:
            results["readshard_1_job"] = run_readshard(train, mapping, work / "readshard_out", 1)
        if not args.rss_only and not args.skip_hf and not hf_missing:
            results["hf_datasets"] = run_hf_datasets(train, work, args.jobs)
        results["load_after"] = load_average()
    finally:
        if not args.workdir:
            shutil.rmtree(work, ignore_errors=True)
    rs = results["readshard"]
    if "pure_tokenization" in results:
        results["speedup_vs_pure_tokenization"] = rs["reads_per_s"] / results["pure_tokenization"]["reads_per_s"]
    if "hf_datasets" in results:
        results["speedup_vs_hf_datasets"] = rs["reads_per_s"] / results["hf_datasets"]["reads_per_s"]
    if "fast_tokenization" in results:
        fast = results["fast_tokenization"]
        results["time_vs_fast_tokenization"] = fast["reads_per_s"] / rs["reads_per_s"]
        results["fast_vs_hf_encode"] = fast["reads_per_s"] / results["pure_tokenization"]["reads_per_s"]
    if "readshard_processes" in results:
        results["threads_vs_processes"] = rs["reads_per_s"] / results["readshard_processes"]["reads_per_s"]
    if "readshard_1_job" in results:
        results["speedup_2_vs_1_job"] = rs["reads_per_s"] / results["readshard_1_job"]["reads_per_s"]
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(f"input: {results['input']['bytes'] / 1e6:.0f} MB, {rs['reads']:,} reads, --jobs {args.jobs}")
        print(f"  load average before {results['load_before']}, after {results['load_after']}")
        for key in ("pure_tokenization", "fast_tokenization", "readshard", "readshard_processes", "readshard_1_job",
                    "hf_datasets"):
            if key in results:
                r = results[key]
                rss = f", peak tree RSS {r['peak_tree_rss_mb']:.0f} MB" if r.get("peak_tree_rss_mb") else ""
                print(f"  {key:<18} {r['reads_per_s']:>10,.0f} reads/s  {r['seconds']:>8.1f} s{rss}")
        if "runs_seconds" in rs:
            print(f"  readshard runs, s: {', '.join(f'{t:.2f}' for t in rs['runs_seconds'])} (the median is compared)")
        if "speedup_vs_pure_tokenization" in results:
            print(f"  readshard end to end / Tokenizer.encode loop alone: {results['speedup_vs_pure_tokenization']:.2f}x")
        if "speedup_vs_hf_datasets" in results:
            print(f"  readshard / hf_datasets: {results['speedup_vs_hf_datasets']:.2f}x")
        if "time_vs_fast_tokenization" in results:
            print(f"  readshard time / fast tokenization alone: {results['time_vs_fast_tokenization']:.2f}x")
            print(f"  fast encoder / Tokenizer.encode (same reads): {results['fast_vs_hf_encode']:.1f}x")
        if "threads_vs_processes" in results:
            print(f"  readshard threads / --parallel processes: {results['threads_vs_processes']:.2f}x")
        if "speedup_2_vs_1_job" in results:
            print(f"  readshard --jobs {args.jobs} / --jobs 1: {results['speedup_2_vs_1_job']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
