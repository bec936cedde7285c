"""``python -m loaders.bench`` / ``python -m readshard_bench``: the loader bench's command line."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Sequence

from readshard_bench.data import BenchConfig
from readshard_bench.report import format_report
from readshard_bench.runs import run_scale, run_side_by_side
from readshard_bench.workdir import claim_workdir

__all__ = ["build_parser", "main"]


def _run_convert_bench(size: int, as_json: bool) -> int:
    from readshard_bench.convert_bench import main as convert_main

    return int(convert_main(["--fragments-per-species", str(size), *(["--json"] if as_json else [])]))


def build_parser() -> argparse.ArgumentParser:
    """The benchmark's argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m loaders.bench",
        description="readshard loaders vs numpy memmap (the limit), Hugging Face datasets and pyfastx / "
        "pyfaidx + tokenizing on the fly, side by side in one run. Default: the embedded sample (converted "
        "into data/sample/train if absent). Competitors whose package is missing are skipped "
        "(pip install 'readshard[bench]' installs them).",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout (progress on stderr)")
    p.add_argument("--quick", action="store_true", help="tiny dataset and time boxes (smoke test, < 30 s)")
    p.add_argument("--reads", type=int, help="scale run on a synthetic dataset of N reads (kept in --cache)")
    p.add_argument("--reads-per-shard", type=int, default=65536, help="shard size of the synthetic dataset (default 65536, the converter's)")
    p.add_argument("--model-rate", type=float, help="the model's training reads/s: report the loader's headroom, warn below 1.5x")
    p.add_argument("--convert", nargs="?", const=40000, type=int, metavar="FRAGMENTS_PER_SPECIES",
                   help="converter vs Hugging Face datasets map path (readshard_bench.convert_bench); "
                   "size in fragments per species (default 40000 = 2 M reads)")
    p.add_argument("--seconds", type=float, help="time box per measurement (default 4; --quick 0.3)")
    p.add_argument("--rounds", type=int, help="interleaved rounds of the memory-speed competitors (default 2)")
    p.add_argument("--cache", default="data/bench-cache", help="where derived data live (default data/bench-cache)")
    p.add_argument("--sample", default="data/sample", help="sample directory, as `make convert` (default data/sample)")
    p.add_argument("--skip", default="", help="comma list of dataloader,hf,pyfastx,pyfaidx to leave out")
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
    claim_workdir(cfg.cache, "--cache")  # the bench deletes and rebuilds data inside it
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
