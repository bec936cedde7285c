"""``python -m train predict RUN INPUT... --out DIR``: classify reads with a trained run.

INPUT is FASTA/FASTQ (plain or gzip, any headers: labels are not needed) or a readshard
dataset directory. Writes into DIR:

* ``predictions.tsv.gz``: one line per read (input, record, read id, fragment, call, label,
  class id, tax id, species, probability, runner-up and its probability); the call is
  ``unclassified`` where the probability is below ``--min-confidence``;
* ``report.tsv``: a Kraken-style sample report (per species: % of all reads, reads, % of
  classified reads, tax id, class id, name; the unclassified row first);
* ``report.json``: the same counts, the run's identity and how the reads were read.

Mates of one fragment (adjacent ``/1`` ``/2`` reads, or two files R1/R2) get one call from
their summed log-probabilities (``--pairs``), as Kraken2's ``--paired`` does.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from shards import FormatError
from train.inference import PAIR_MODES, LoadedRun, Scores, check_inputs, load_run, pair_log_probs, score_reads

__all__ = ["OUTPUT_NAMES", "build_parser", "main", "predict"]

PREDICTIONS_NAME = "predictions.tsv.gz"
REPORT_TSV = "report.tsv"
REPORT_JSON = "report.json"
OUTPUT_NAMES = (PREDICTIONS_NAME, REPORT_TSV, REPORT_JSON)
COLUMNS = ("input", "record", "read_id", "fragment", "call", "label", "class_id", "tax_id", "species", "probability",
           "runner_up", "runner_up_probability")
UNCLASSIFIED = "unclassified"


def build_parser() -> argparse.ArgumentParser:
    """The ``predict`` argument parser."""
    p = argparse.ArgumentParser(
        prog="python -m train predict",
        description="Classify reads with a trained run: per-read calls, a Kraken-style report and report.json.")
    p.add_argument("run", help="the --out directory of a `python -m train` run (config.json, checkpoint.pt)")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="FASTA/FASTQ files (plain or gzip, any headers) or readshard dataset directories")
    p.add_argument("--out", required=True, help="output directory (predictions.tsv.gz, report.tsv, report.json)")
    p.add_argument("--min-confidence", type=float, default=None,
                   help="calls below this probability are 'unclassified' (default: the run's calibrated threshold "
                   "from calibration.json, else 0)")
    p.add_argument("--pairs", choices=PAIR_MODES, default="auto",
                   help="one call per fragment from both mates: auto (when names show mates), on, off")
    p.add_argument("--batch-size", type=int, default=None, help="reads per forward pass (default 1024 GPU, 64 CPU)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: all cores but one, which parses and writes)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the outputs of an earlier predict in --out (other files there are left alone)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` that is a link or a file, or that already holds files, unless ``overwrite``.

    Raises:
        FormatError: with what to do.
    """
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise FormatError(f"--out {out}: exists and is not a directory (or is a link, never written through); "
                          "choose another --out")
    if not out.is_dir() or overwrite:
        return
    found = sorted(p.name for p in out.iterdir())
    if found:
        shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        ours = set(found) <= set(OUTPUT_NAMES)
        raise FormatError(
            f"--out {out} already holds {shown}. " + (
                "Replace those predictions with --overwrite, or choose another --out." if ours else
                "Choose an empty or new --out (with --overwrite predict writes its three files there and leaves "
                "the others alone)."))


def _open_new(path: Path) -> Any:
    """A fresh temporary beside ``path`` (never through a link); renamed over it when complete."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    return os.fdopen(fd, "wb"), tmp


def _write_text(path: Path, text: str) -> None:
    f, tmp = _open_new(path)
    with f:
        f.write(text.encode())
    os.replace(tmp, path)


class _Calls:
    """Per-read calls of one block: best and runner-up label and probability, after pairing."""

    def __init__(self, s: Scores, pairs: bool, min_conf: float, pair_min_conf: float) -> None:
        lp = s.log_probs
        self.in_pair = np.zeros(len(s), dtype=bool)
        if pairs and len(s):
            frag_lp, inv = pair_log_probs(lp, s.fragment)
            lp = frag_lp[inv]
            self.in_pair = np.bincount(inv, minlength=frag_lp.shape[0])[inv] > 1
        C = lp.shape[1]
        if C >= 2:
            top2 = np.argpartition(-lp, 1, axis=1)[:, :2]
            v = np.take_along_axis(lp, top2, axis=1)
            swap = v[:, 1] > v[:, 0]
            top2[swap] = top2[swap][:, ::-1]
            self.best, self.second = top2[:, 0], top2[:, 1]
        else:
            self.best = np.zeros(lp.shape[0], dtype=np.int64)
            self.second = np.full(lp.shape[0], -1, dtype=np.int64)
        rows = np.arange(lp.shape[0])
        self.p_best = np.exp(lp[rows, self.best].astype(np.float64))
        self.p_second = np.where(self.second >= 0, np.exp(lp[rows, np.maximum(self.second, 0)].astype(np.float64)), 0.0)
        self.classified = self.p_best >= np.where(self.in_pair, pair_min_conf, min_conf)


def _format_block(s: Scores, c: _Calls, run: LoadedRun, inputs: list[str]) -> bytes:
    """The block's TSV lines (column arrays joined once; no per-read branching)."""
    n = len(s)
    names = np.asarray(list(run.classes.names) + ["-"], dtype=object)
    label = np.where(c.classified, c.best, -1)
    call = names[np.where(c.classified, c.best, -1)].copy()
    call[~c.classified] = UNCLASSIFIED
    cid = np.where(c.classified, run.classes.class_ids[c.best], 0)
    tax = np.where(c.classified, run.classes.tax_ids[c.best], 0)
    src = np.asarray(inputs, dtype=object)[s.source]
    ids = s.read_ids if s.read_ids is not None else ["-"] * n
    cols = (src, map(str, s.record.tolist()), ids, map(str, s.fragment.tolist()), call, map(str, label.tolist()),
            map(str, cid.tolist()), map(str, tax.tolist()), names[c.best], (f"{p:.8g}" for p in c.p_best.tolist()),
            names[c.second], (f"{p:.8g}" for p in c.p_second.tolist()))
    return ("\n".join(map("\t".join, zip(*cols))) + "\n").encode() if n else b""


class _Writer:
    """gzip TSV written by a thread, so formatting and compression overlap the model."""

    def __init__(self, path: Path) -> None:
        self.path = path
        raw, self.tmp = _open_new(path)
        self.gz = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=3, mtime=0)
        self._raw = raw
        self.gz.write(("\t".join(COLUMNS) + "\n").encode())
        self.q: queue.Queue = queue.Queue(4)
        self.error: BaseException | None = None
        self.t = threading.Thread(target=self._work, name="readshard-predict-writer", daemon=True)
        self.t.start()

    def _work(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            if self.error is None:
                try:
                    self.gz.write(_format_block(*item))
                except BaseException as exc:  # noqa: BLE001 - raised in the main thread by close()
                    self.error = exc

    def put(self, *item: Any) -> None:
        if self.error is not None:
            raise self.error
        self.q.put(item)

    def close(self, ok: bool) -> None:
        """Finish the file (renamed into place when ``ok``), or drop the temporary."""
        self.q.put(None)
        self.t.join()
        self.gz.close()
        self._raw.close()
        if ok and self.error is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
        if self.error is not None:
            raise self.error


def _report(run: LoadedRun, counts: np.ndarray, unclassified: int) -> tuple[str, list[dict[str, Any]]]:
    total = int(counts.sum()) + unclassified
    classified = int(counts.sum())
    rows = [{"label": -1, "name": UNCLASSIFIED, "class_id": 0, "tax_id": 0, "reads": unclassified}]
    for k in np.argsort(-counts, kind="stable").tolist():
        rows.append({"label": k, "name": run.classes.names[k], "class_id": int(run.classes.class_ids[k]),
                     "tax_id": int(run.classes.tax_ids[k]), "reads": int(counts[k])})
    for r in rows:
        r["pct_all"] = round(100 * r["reads"] / total, 4) if total else 0.0
        r["pct_classified"] = (round(100 * r["reads"] / classified, 4) if classified else 0.0) if r["label"] >= 0 else None
    lines = ["pct_all\treads\tpct_classified\ttax_id\tclass_id\tname"]
    for r in rows:
        pc = "-" if r["pct_classified"] is None else f"{r['pct_classified']:.2f}"
        lines.append(f"{r['pct_all']:.2f}\t{r['reads']}\t{pc}\t{r['tax_id']}\t{r['class_id']}\t{r['name']}")
    return "\n".join(lines) + "\n", rows


def predict(run: LoadedRun, inputs: Sequence[str], out: Path, *, min_confidence: float | None = None,
            pairs: str = "auto", batch_size: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Classify ``inputs`` with ``run`` and write the three outputs into ``out`` (which must be checked).

    Returns:
        The ``report.json`` dict.
    """
    t0 = time.perf_counter()
    thr_source = "--min-confidence"
    pair_min = min_confidence
    if min_confidence is None:
        min_confidence, thr_source = (run.threshold, "calibration.json") if run.threshold is not None else (0.0, "default")
        # pairs have their own calibrated threshold when evaluate fitted one
        pair_min = run.calibration.get("pair_threshold", min_confidence) if run.threshold is not None else 0.0
    check_inputs(run, inputs, pairs)  # before anything is written
    out.mkdir(parents=True, exist_ok=True)
    C = len(run.classes)
    counts = np.zeros(C, dtype=np.int64)
    unclassified = reads = paired = 0
    skipped: dict[str, int] = {}
    writer = _Writer(out / PREDICTIONS_NAME)
    ok = False
    try:
        for s in score_reads(run, inputs, pairs=pairs, batch_size=batch_size, progress=progress):
            c = _Calls(s, pairs != "off", float(min_confidence), float(pair_min))
            writer.put(s, c, run, list(inputs))
            counts += np.bincount(c.best[c.classified], minlength=C)
            unclassified += int((~c.classified).sum())
            reads += len(s)
            paired += int(c.in_pair.sum())
            for k, v in s.skipped.items():
                skipped[k] = skipped.get(k, 0) + v
        ok = True
    finally:
        writer.close(ok)
    seconds = time.perf_counter() - t0
    tsv, rows = _report(run, counts, unclassified)
    report = {
        "run": run.identity(), "inputs": [str(p) for p in inputs], "device": str(run.device),
        "reads_in": reads, "classified": int(counts.sum()), "unclassified": unclassified,
        "records_skipped": skipped, "records_in": reads + sum(skipped.values()),
        "paired_reads": paired, "pairs": pairs,
        "min_confidence": float(min_confidence), "pair_min_confidence": float(pair_min), "min_confidence_from": thr_source,
        "seconds": round(seconds, 3), "reads_per_s": round(reads / seconds, 1) if seconds > 0 else None,
        "species": rows, "outputs": list(OUTPUT_NAMES),
    }
    _write_text(out / REPORT_TSV, tsv)
    _write_text(out / REPORT_JSON, json.dumps(report, indent=1) + "\n")
    return report


def _set_threads(threads: int | None) -> None:
    """``--threads``, else all cores but one: the parsing thread and the writer need the last one,
    and OpenMP barriers stall when a torch thread shares a core with them."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    elif "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) - 1) if hasattr(os, "sched_getaffinity")
                              else max(1, (os.cpu_count() or 2) - 1))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m train predict``; returns the exit code (2 for bad input)."""
    args = build_parser().parse_args(argv)
    try:
        if args.min_confidence is not None and not 0 <= args.min_confidence <= 1:
            raise FormatError(f"--min-confidence {args.min_confidence}: give a probability in [0, 1]")
        if args.batch_size is not None and args.batch_size < 1:
            raise FormatError(f"--batch-size {args.batch_size}: give a positive number of reads")
        out = Path(args.out)
        check_out_dir(out, args.overwrite)
        import torch

        threads = torch.get_num_threads()
        _set_threads(args.threads)
        try:
            run = load_run(args.run, device=args.device)
            rep = predict(run, args.inputs, out, min_confidence=args.min_confidence, pairs=args.pairs,
                          batch_size=args.batch_size, progress=args.progress)
        finally:
            torch.set_num_threads(threads)  # main() also runs in-process (tests, notebooks)
    except FormatError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    pct = 100 * rep["classified"] / rep["reads_in"] if rep["reads_in"] else 0.0
    skipped = sum(rep["records_skipped"].values())
    print(f"{rep['reads_in']:,} reads ({rep['paired_reads']:,} in pairs) in {rep['seconds']:.1f} s "
          f"({rep['reads_per_s'] or 0:,.0f} reads/s on {rep['device']}): {rep['classified']:,} classified ({pct:.1f}%), "
          f"{rep['unclassified']:,} unclassified at min-confidence {rep['min_confidence']:g}"
          + (f", {skipped:,} records skipped {rep['records_skipped']}" if skipped else "")
          + f"; wrote {out / PREDICTIONS_NAME}, {out / REPORT_TSV}, {out / REPORT_JSON}", file=sys.stderr)
    return 0
