"""``predict`` against the model's bare forward pass, and its memory against the read count.

    python benchmarks/predict_bench.py RUN [--reads 100000 1000000] [--out out/predict_bench]

For each read count: writes that many unlabelled 150 bp reads (``>rN/1`` headers, windows of the
shipped genomes with 1% substitutions) to ``OUT/reads_N.fa``; runs ``python -m train predict RUN``
on them in a child process (peak RSS: the child's ``VmHWM``, reads/s from its
``report.json``); then, in this process, the bare forward pass of the same model on the same reads
already tokenized (the converter's tokenizer, untimed), at predict's batch size and thread count.
Prints one table and writes ``OUT/results.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sample.simulate import load_genomes  # noqa: E402


def write_reads(path: Path, n: int, seed: int = 0) -> None:
    """``n`` unlabelled 150 bp reads: random windows of the shipped genomes, 1% substitutions."""
    seqs = [np.frombuffer(r, dtype=np.uint8) for g in load_genomes(None) for r in g.records]
    seqs = [s for s in seqs if len(s) > 200]
    rng = np.random.default_rng(seed)
    with open(path, "wb") as fh:
        for a in range(0, n, 50_000):
            m = min(50_000, n - a)
            g = rng.integers(0, len(seqs), size=m)
            rows = []
            for i, gi in enumerate(g):
                s = seqs[gi]
                start = int(rng.integers(0, len(s) - 150))
                read = s[start : start + 150].copy()
                err = rng.random(150) < 0.01
                read[err] = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, size=int(err.sum()))]
                rows.append(b">r%d/1\n" % (a + i) + read.tobytes() + b"\n")
            fh.write(b"".join(rows))


def _peak_rss_mb(pid: int, proc: subprocess.Popen) -> float:
    """The child's VmHWM, read until it exits (``ru_maxrss`` would count the parent's pages that
    the child had before its exec)."""
    peak = 0.0
    while proc.poll() is None:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return peak


def run_predict(run: Path, reads: Path, out: Path, threads: int) -> dict[str, Any]:
    """``python -m train predict`` in a child: wall seconds, its reads/s and its peak RSS."""
    t0 = time.perf_counter()
    log = out.parent / f"{out.name}.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "train", "predict", str(run), str(reads), "--out", str(out),
                                 "--no-progress", "--threads", str(threads), "--overwrite"], cwd=REPO,
                                stdout=fh, stderr=subprocess.STDOUT)
        peak_mb = _peak_rss_mb(proc.pid, proc)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"predict_bench: predict failed (exit {proc.returncode}); its output is in {log}")
    rep = json.loads((out / "report.json").read_text())
    return {"wall_s": wall, "reads_per_s": float(rep.get("reads_per_s") or 0.0), "peak_rss_mb": peak_mb}


def bare_forward(run_dir: Path, reads: Path, threads: int) -> float:
    """Reads/s of the model's forward pass alone on ``reads`` tokenized beforehand."""
    import torch

    from train.inference import default_batch_size, forward_log_probs, load_run, run_tokenizer

    torch.set_num_threads(threads)
    run = load_run(run_dir, device="cpu")
    tok = run_tokenizer(run)
    seqs = reads.read_bytes().split(b"\n")[1::2]
    offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in seqs], out=offsets[1:])
    ids, lengths = tok.encode(b"".join(seqs), offsets, run.max_length)
    t0 = time.perf_counter()
    forward_log_probs(run, ids, lengths, default_batch_size(run))
    return len(seqs) / (time.perf_counter() - t0)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/predict_bench.py", description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a finished training run (make train writes out/sample)")
    p.add_argument("--reads", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--out", default="out/predict_bench")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in sorted(args.reads):
        reads = out / f"reads_{n}.fa"
        if not reads.is_file():
            write_reads(reads, n)
        pred = run_predict(Path(args.run), reads, out / f"predict_{n}", args.threads)
        fwd = bare_forward(Path(args.run), reads, args.threads)
        rows.append({"reads": n, **pred, "forward_reads_per_s": fwd, "ratio": pred["reads_per_s"] / fwd})
        r = rows[-1]
        print(f"{n:>10,} reads: predict {r['reads_per_s']:,.0f} reads/s ({r['wall_s']:.1f} s wall), bare forward "
              f"{fwd:,.0f} reads/s, ratio {r['ratio']:.2f}, predict peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    (out / "results.json").write_text(json.dumps({"run": args.run, "threads": args.threads, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
