"""Converter on a local 2-worker dask cluster beside ``--jobs 2``, same input, one run.

``python benchmarks/cluster_bench.py [--fragments-per-species 5000] [--reads-per-shard 16384] [--repeats 2]``

Starts a real ``dask scheduler`` and two single-threaded ``dask worker`` processes on
127.0.0.1 (the test harness, tests/_cluster.py), simulates reads, then alternates
``--jobs 2`` and ``--scheduler`` conversions of the same file (``--repeats`` each, the file
read right before each run) and prints reads/s (from report.json: the whole run, start-up
included) with ``uptime`` before and after. It also checks that both give the same manifest.
Needs the cluster extra (``pip install -e '.[cluster]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _convert(train: Path, mapping: Path, out: Path, rps: int, extra: list[str]) -> dict:
    with open(train, "rb") as f:  # page cache warm for every run alike
        while f.read(1 << 24):
            pass
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "convert", str(train), "--mapping", str(mapping), "--out", str(out),
           "--reads-per-shard", str(rps), "--no-progress", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    report = json.loads((out / "report.json").read_text())
    return {"reads_per_s": report["reads_per_s"], "seconds": wall, "reads": report["records_in"],
            "manifest": (out / "manifest.json").read_bytes()}


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fragments-per-species", type=int, default=5000)
    ap.add_argument("--reads-per-shard", type=int, default=16384)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "tests"))  # the subprocess-cluster harness the tests use
    from _cluster import SubprocessCluster

    from sample.simulate import simulate

    work = Path(tempfile.mkdtemp(prefix="readshard-cluster-bench-"))
    try:
        simulate(work / "reads", fragments_per_species=args.fragments_per_species, seed=0, progress=False)
        train, mapping = work / "reads" / "train.fa", work / "reads" / "mapping.tsv"
        print(f"before: {_uptime()}")
        runs: dict[str, list[dict]] = {"--jobs 2": [], "--scheduler (2 dask workers)": []}
        with SubprocessCluster(work / "cluster", n_workers=2) as cluster:
            for _ in range(args.repeats):
                runs["--jobs 2"].append(_convert(train, mapping, work / "out-jobs", args.reads_per_shard, ["--jobs", "2"]))
                runs["--scheduler (2 dask workers)"].append(
                    _convert(train, mapping, work / "out-cluster", args.reads_per_shard, ["--scheduler", cluster.address]))
        print(f"after:  {_uptime()}")
        manifests = {r["manifest"] for rs in runs.values() for r in rs}
        reads = runs["--jobs 2"][0]["reads"]
        print(f"input: {train.stat().st_size / 1e6:.0f} MB, {reads:,} reads, --reads-per-shard {args.reads_per_shard}; "
              f"manifests identical: {len(manifests) == 1}")
        med = {}
        for name, rs in runs.items():
            med[name] = statistics.median(r["reads_per_s"] for r in rs)
            each = ", ".join(f"{r['reads_per_s']:,.0f}" for r in rs)
            print(f"  {name:<30} median {med[name]:>9,.0f} reads/s  (runs: {each})")
        print(f"  cluster / --jobs 2: {med['--scheduler (2 dask workers)'] / med['--jobs 2']:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
