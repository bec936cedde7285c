"""The trained classifier against Kraken2 and the 6-mer baseline, on reads none of them saw.

    python benchmarks/classifier_bench.py [--genomes DIR] [--simulator art|builtin] [--minutes N]
        [--reads-per-genome N] [--out DIR] [--threads N] [--overwrite]

1. simulate paired 150 bp reads from the genomes (``art_illumina`` HiSeq 2500 when present,
   else the built-in simulator), split by fragment (mates together) into train / val / test;
2. convert train and val (DNABERT 6-mers, ``configs/convert_sample.yaml``) and train the
   default recipe (``configs/sample.yaml``) for ``--minutes`` (val: evaluation, calibration);
3. on the test reads: ``python -m train predict`` per read and per pair (``--pairs``), and at
   the calibrated threshold; the 6-mer naive Bayes; Kraken2 built from the training reads
   only (the model's information) and from the whole genomes (it has seen the test
   fragments), single-end and ``--paired``;
4. one table: accuracy (over all reads; no call = wrong), macro-F1, classified fraction,
   precision among classified, reads/s, build time. Markdown on stdout and in
   ``OUT/results.md``; ``OUT/results.json`` with the rows, the run's settings and targets.

Kraken2 calls at the root (the reads' k-mers hit several species) are no species call and
count as unclassified. Reads/s is each tool's own processing rate after loading (Kraken2's
"processed in", ``predict``'s report), on ``--threads`` threads for Kraken2 and the
recipe's one torch thread for the model.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "benchmarks"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import kraken  # noqa: E402
from simreads import SimError, Simulated, kraken_taxids, simulate_reads  # noqa: E402

__all__ = ["BenchError", "score_calls", "markdown_table", "check_targets", "main"]

# What the bench writes into --out: --overwrite removes only these.
OUTPUTS = ("reads", "data", "run", "predict", "kraken", "logs", "results.md", "results.json")
COLUMNS = ("accuracy", "macro-F1", "classified", "precision (classified)", "reads/s", "build")


class BenchError(RuntimeError):
    """A step of the bench failed; the message names it and how to see why."""


# ------------------------------------------------------------------------------- scoring


def score_calls(truth: np.ndarray, pred: np.ndarray, class_ids: Sequence[int]) -> dict[str, float]:
    """Accuracy, macro-F1, classified fraction and precision of per-read calls.

    Args:
        truth: (n,) true class id of every read.
        pred: (n,) called class id, ``-1`` for no call (unclassified, which counts as wrong).
        class_ids: the classes (macro-F1 averages over those with reads in ``truth``).
    """
    ids = np.asarray(sorted(class_ids), dtype=np.int64)
    C = len(ids)
    t = np.searchsorted(ids, truth)
    if np.any(t >= C) or np.any(ids[np.minimum(t, C - 1)] != truth):
        raise ValueError("a true class id is not among class_ids")
    p = np.searchsorted(ids, pred)
    known = (pred >= 0) & (p < C)
    known[known] = ids[p[known]] == pred[known]
    p = np.where(known, p, C)  # column C: no call (or a class outside the table: wrong)
    cm = np.bincount(t * (C + 1) + p, minlength=C * (C + 1)).reshape(C, C + 1)
    return metrics_from_counts(cm)


def metrics_from_counts(cm: np.ndarray) -> dict[str, float]:
    """:func:`score_calls` from a (C, C+1) count matrix (rows: truth; last column: no call)."""
    C = cm.shape[0]
    n = int(cm.sum())
    tp = np.diag(cm[:, :C]).astype(float)
    called = int(cm[:, :C].sum())
    fp = cm[:, :C].sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp  # unclassified reads are missed reads
    present = cm.sum(axis=1) > 0
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros(C), where=(2 * tp + fp + fn) > 0)
    return {
        "reads": n,
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "classified": called / n if n else 0.0,
        "precision": float(tp.sum() / called) if called else 0.0,
    }


# ------------------------------------------------------------------------------- steps


def _run_step(name: str, cmd: Sequence[str], logs: Path, *, env: Mapping[str, str] | None = None) -> float:
    """Run one command of the bench, its output in ``logs/NAME.log``; returns wall seconds."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    print(f"[bench] {name}: {' '.join(cmd)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        rc = subprocess.run(list(cmd), stdout=fh, stderr=subprocess.STDOUT, cwd=REPO,
                            env=None if env is None else dict(env)).returncode
    if rc != 0:
        tail = " / ".join(log.read_text(errors="replace").strip().splitlines()[-3:])
        raise BenchError(f"step {name} failed (exit {rc}): {tail}. The whole output is in {log}; "
                         f"rerun it with: {' '.join(cmd)}")
    return time.perf_counter() - t0


def _truth(fasta: Path) -> np.ndarray:
    """The class id of every read of a one-line FASTA in the seed header format."""
    heads = fasta.read_bytes().split(b"\n")[0:-1:2]
    return np.array([int(h.split(b"|", 2)[1]) for h in heads], dtype=np.int64)


def convert_and_train(sim: Simulated, out: Path, *, minutes: float, threads: int) -> dict[str, Any]:
    """Convert train and val, train the default recipe on them; returns the run's metrics."""
    py = sys.executable
    logs = out / "logs"
    secs = {}
    for split in ("train", "val"):
        secs[f"convert_{split}"] = _run_step(f"convert_{split}", [
            py, "-m", "convert", str(sim.files[split]), "--mapping", str(sim.mapping),
            "--config", str(REPO / "configs" / "convert_sample.yaml"), "--max-length", "152",
            "--jobs", str(threads), "--out", str(out / "data" / split)], logs)
    secs["train"] = _run_step("train", [
        py, "-m", "train", "--config", str(REPO / "configs" / "sample.yaml"), "--train", str(out / "data" / "train"),
        "--val", str(out / "data" / "val"), "--out", str(out / "run"), "--max-minutes", f"{minutes:g}",
        "--no-progress", "--no-baseline"], logs)
    metrics = json.loads((out / "run" / "metrics.json").read_text())
    return {"seconds": secs, "metrics": metrics}


def _predictions(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Record numbers, called class ids (-1: unclassified) and probabilities of predictions.tsv.gz."""
    with gzip.open(path, "rt") as fh:
        header = fh.readline().rstrip("\n").split("\t")
        rows = [line.rstrip("\n").split("\t") for line in fh]
    try:
        ri, ci, ki, pi = (header.index(c) for c in ("record", "call", "class_id", "probability"))
    except ValueError:
        raise BenchError(f"{path}: its header {header} lacks record, call, class_id or probability") from None
    record = np.array([int(r[ri]) for r in rows], dtype=np.int64)
    cls = np.array([-1 if r[ci] == "unclassified" else int(r[ki]) for r in rows], dtype=np.int64)
    prob = np.array([float(r[pi]) for r in rows], dtype=np.float64)
    return record, cls, prob


def model_rows(out: Path, test_fa: Path, truth: np.ndarray, class_ids: Sequence[int], train_seconds: float, *,
               threads: int) -> list[dict[str, Any]]:
    """Per read and per pair from ``python -m train predict``; both again at the calibrated thresholds."""
    cal_path = out / "run" / "calibration.json"
    cal = json.loads(cal_path.read_text()) if cal_path.is_file() else {}
    rows = []
    for pairs, key in (("off", "threshold"), ("on", "pair_threshold")):
        dest = out / "predict" / f"pairs-{pairs}"
        wall = _run_step(f"predict_pairs_{pairs}", [
            sys.executable, "-m", "train", "predict", str(out / "run"), str(test_fa), "--out", str(dest),
            "--pairs", pairs, "--min-confidence", "0", "--threads", str(threads), "--no-progress"], out / "logs")
        record, cls, prob = _predictions(dest / "predictions.tsv.gz")
        if len(record) != len(truth):
            raise BenchError(f"{dest}: {len(record)} predictions for {len(truth)} test reads")
        pred = np.full(len(truth), -1, dtype=np.int64)
        p = np.zeros(len(truth))
        pred[record], p[record] = cls, prob
        rep = json.loads((dest / "report.json").read_text())
        rate = float(rep.get("reads_per_s") or len(truth) / wall)
        what = "per read" if pairs == "off" else "per pair (both mates, --pairs on)"
        rows.append({"method": f"readshard model, {what}", "group": "model",
                     **score_calls(truth, pred, class_ids), "reads_per_s": rate, "build_s": train_seconds})
        threshold = cal.get(key)
        if isinstance(threshold, (int, float)):
            kept = np.where(p >= threshold, pred, -1)  # what predict's default --min-confidence calls
            rows.append({"method": f"readshard model, {what}, at the calibrated threshold {threshold:.3f}",
                         "group": "model_threshold", **score_calls(truth, kept, class_ids),
                         "reads_per_s": rate, "build_s": train_seconds})
    return rows


def baseline_row(out: Path, sim: Simulated) -> dict[str, Any]:
    """The 6-mer naive Bayes fitted on the training reads, scored on the test reads."""
    from train.baseline import run_baseline

    print("[bench] 6-mer naive Bayes", file=sys.stderr, flush=True)
    # The val dataset only lends its label table: the reads come from the test FASTA.
    base = run_baseline(out / "data" / "train", out / "data" / "val", train_fasta=sim.files["train"],
                        val_fasta=sim.files["test"], max_reads=None)
    cm = np.asarray(base["confusion"], dtype=np.int64)
    cm = np.concatenate([cm, np.zeros((cm.shape[0], 1), dtype=np.int64)], axis=1)
    predict_s = max(base["total_seconds"] - base["fit_seconds"], 1e-9)
    return {"method": "6-mer naive Bayes (the project's baseline)", "group": "baseline", **metrics_from_counts(cm),
            "reads_per_s": base["val_reads"] / predict_s, "build_s": base["fit_seconds"]}


def _lookup(keys: np.ndarray, table: Mapping[int, int]) -> np.ndarray:
    """``table[k]`` for every key, ``-1`` where a key is not in the table."""
    k = np.array(sorted(table), dtype=np.int64)
    v = np.array([table[x] for x in k.tolist()], dtype=np.int64)
    i = np.minimum(np.searchsorted(k, keys), len(k) - 1)
    return np.where(k[i] == keys, v[i], -1)


def kraken_rows(out: Path, sim: Simulated, truth: np.ndarray, *, threads: int) -> list[dict[str, Any]]:
    """Kraken2 built from the training reads and from the whole genomes, single-end and --paired."""
    taxids = kraken_taxids(sim.genomes)
    to_class = {t: c for c, t in taxids.items()}
    names = {taxids[g.class_id]: g.species for g in sim.genomes}
    class_ids = sorted(taxids)
    kdir = out / "kraken"
    kdir.mkdir(parents=True, exist_ok=True)
    r1, r2 = kdir / "test_R1.fa", kdir / "test_R2.fa"
    kraken.split_mates(sim.files["test"], r1, r2)
    train_lines = sim.files["train"].read_bytes().split(b"\n")
    libs = {
        "training reads only (the model's information)":
            ((taxids[int(h.split(b"|", 2)[1])], s) for h, s in zip(train_lines[0:-1:2], train_lines[1::2])),
        "whole genomes (has seen the test fragments)":
            ((taxids[g.class_id], r) for g in sim.genomes for r in g.records),
    }
    rows = []
    for key, (label, records) in zip(("train_reads", "genomes"), libs.items()):
        db = kdir / f"db_{key}"
        lib = kdir / f"library_{key}.fa"
        kraken.write_library(lib, records)
        print(f"[bench] kraken2-build {db}", file=sys.stderr, flush=True)
        build_s = kraken.build(db, lib, names, threads=threads)
        for paired in (False, True):
            inputs = [r1, r2] if paired else [sim.files["test"]]
            calls = kraken.classify(db, inputs, kdir / f"{key}_{'paired' if paired else 'single'}.txt",
                                    threads=threads, paired=paired)
            per_read = np.repeat(calls.taxids, 2) if paired else calls.taxids
            if len(per_read) != len(truth):
                raise BenchError(f"kraken2 gave {len(per_read)} calls for {len(truth)} test reads ({db})")
            # Root (1) or anything not a species of the table: no species call.
            pred = np.where(per_read > 0, _lookup(per_read, to_class), -1)
            rows.append({"method": f"Kraken2, database of the {label}, {'paired' if paired else 'single-end'}",
                         "group": f"kraken_{key}_{'paired' if paired else 'single'}",
                         **score_calls(truth, pred, class_ids), "reads_per_s": len(truth) / max(calls.seconds, 1e-9),
                         "build_s": build_s})
    return rows


# ------------------------------------------------------------------------------- report


def _group(rows: Sequence[Mapping[str, Any]], group: str, contains: str = "") -> Mapping[str, Any] | None:
    return next((r for r in rows if r["group"] == group and contains in r["method"]), None)


def check_targets(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The issue's accuracy and precision targets, each with the figures it compares."""
    out = []
    pair, read = _group(rows, "model", "per pair"), _group(rows, "model", "per read")
    kg, kt = _group(rows, "kraken_genomes_paired"), _group(rows, "kraken_train_reads_single")
    if pair and kg:
        out.append({"target": "model per pair >= Kraken2 whole-genome DB, paired", "value": pair["accuracy"],
                    "reference": kg["accuracy"], "holds": pair["accuracy"] >= kg["accuracy"]})
    if read and kt:
        out.append({"target": "model per read >= Kraken2 training-reads DB, single-end", "value": read["accuracy"],
                    "reference": kt["accuracy"], "holds": read["accuracy"] >= kt["accuracy"]})
    thr = _group(rows, "model_threshold", "per read")
    if thr:
        out.append({"target": "precision at the calibrated threshold, on reads not calibrated on >= 0.985",
                    "value": thr["precision"], "reference": 0.985, "holds": thr["precision"] >= 0.985})
    return out


def _seconds(s: float | None) -> str:
    if s is None:
        return "–"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The results as one Markdown table (percentages, reads/s, build time)."""
    lines = ["| method (test reads) | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    for r in rows:
        rate = r.get("reads_per_s")
        lines.append(
            f"| {r['method']} | {100 * r['accuracy']:.1f}% | {100 * r['macro_f1']:.1f}% | "
            f"{100 * r['classified']:.1f}% | {100 * r['precision']:.1f}% | "
            f"{'–' if rate is None else f'{rate:,.0f}'} | {_seconds(r.get('build_s'))} |")
    return "\n".join(lines)


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise BenchError(f"--out {out}: exists and is not a directory; choose another --out")
    if not out.is_dir():
        out.mkdir(parents=True)
        return
    found = sorted(p.name for p in out.iterdir())
    if not found:
        return
    if not overwrite:
        raise BenchError(f"--out {out} already holds {', '.join(found[:4])}{', ...' if len(found) > 4 else ''}; "
                         f"choose another --out, or replace an earlier bench's results with --overwrite")
    for name in OUTPUTS:  # only what the bench writes; a link is removed, never followed
        p = out / name
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python benchmarks/classifier_bench.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--genomes", help="genome FASTA directory (default: the shipped sample/genomes)")
    p.add_argument("--simulator", choices=("art", "builtin"), default="art",
                   help="art: art_illumina HiSeq 2500 when on PATH, else builtin (default art)")
    p.add_argument("--minutes", type=float, default=8.0, help="training time budget (default 8)")
    p.add_argument("--reads-per-genome", type=int, default=4000, help="reads per genome, mates counted (default 4000)")
    p.add_argument("--out", default="out/classifier_bench", help="output directory (default out/classifier_bench)")
    p.add_argument("--threads", type=int, default=1, help="Kraken2 threads and converter jobs (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-kraken", dest="kraken", action="store_false", help="skip the Kraken2 rows")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier bench's results in --out")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the whole bench; prints the table; exit 2 on a failed step or bad argument."""
    args = _parser().parse_args(argv)
    t0 = time.perf_counter()
    load_start = os.getloadavg()  # the machine's other work skews every rate: recorded with them
    out = Path(args.out)
    try:
        if args.minutes <= 0 or args.threads < 1:
            raise BenchError("--minutes must be positive and --threads at least 1")
        _prepare_out(out, args.overwrite)
        simulator = args.simulator
        notes = []
        if simulator == "art" and shutil.which("art_illumina") is None:
            simulator = "builtin"
            notes.append("art_illumina not on PATH (apt-get install art-nextgen-simulation-tools): built-in simulator")
        print(f"[bench] simulating reads ({simulator})", file=sys.stderr, flush=True)
        sim = simulate_reads(out / "reads", simulator=simulator, genomes_dir=args.genomes,
                             reads_per_genome=args.reads_per_genome, seed=args.seed)
        trained = convert_and_train(sim, out, minutes=args.minutes, threads=args.threads)
        truth = _truth(sim.files["test"])
        class_ids = [g.class_id for g in sim.genomes]
        m = trained["metrics"]
        rows = model_rows(out, sim.files["test"], truth, class_ids, float(m.get("train_seconds", 0.0)),
                          threads=args.threads)
        rows.append(baseline_row(out, sim))
        why_not = kraken.available() if args.kraken else "--no-kraken"
        if why_not is None:
            rows += kraken_rows(out, sim, truth, threads=args.threads)
        else:
            notes.append(f"Kraken2 rows skipped: {why_not}")
    except (BenchError, SimError, kraken.KrakenError) as exc:
        print(f"classifier_bench: error: {exc}", file=sys.stderr)
        return 2
    if not rows:
        print("classifier_bench: error: no result rows", file=sys.stderr)
        return 2
    targets = check_targets(rows)
    result = {
        "command": "python benchmarks/classifier_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "simulator": simulator, "reads": sim.reads, "genomes": len(sim.genomes), "minutes": args.minutes,
        "threads": args.threads, "train": {k: m.get(k) for k in ("steps", "stopped_by", "train_seconds",
                                                                  "val_accuracy", "epochs")},
        "rows": rows, "targets": targets, "notes": notes, "wall_seconds": time.perf_counter() - t0,
        "machine": {"cpus": len(os.sched_getaffinity(0)), "platform": platform.platform(),
                    "load_avg_start": load_start, "load_avg_end": os.getloadavg()},
    }
    text = _report(result)
    (out / "results.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(text)
    return 0


def _report(result: Mapping[str, Any]) -> str:
    r = result["reads"]
    tr = result["train"]
    head = (f"{result['genomes']} genomes, {result['simulator']} reads: {r['train']:,} train / {r['val']:,} val / "
            f"{r['test']:,} test (split by fragment); the default recipe trained {tr.get('train_seconds') or 0:.0f} s "
            f"of a {result['minutes']:g} min budget ({tr.get('steps')} steps, stopped by {tr.get('stopped_by')}); "
            f"Kraken2 and the converter on "
            f"{result['threads']} thread(s).")
    lines = [head, "", markdown_table(result["rows"]), ""]
    for t in result["targets"]:
        lines.append(f"- {t['target']}: {100 * t['value']:.1f}% vs {100 * t['reference']:.1f}% -> "
                     f"{'holds' if t['holds'] else 'does NOT hold'}")
    lines += [f"- note: {n}" for n in result["notes"]]
    load = result["machine"]
    lines.append(f"- bench wall time {result['wall_seconds'] / 60:.1f} min on {load['cpus']} CPUs, load average "
                 f"{load['load_avg_start'][0]:.1f} at the start, {load['load_avg_end'][0]:.1f} at the end")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
