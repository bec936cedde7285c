"""``python -m train evaluate RUN DATA``: how good a trained run is on labelled reads.

DATA is a converted readshard dataset or labelled FASTA/FASTQ. The run scores every read
(:mod:`train.inference`); then, on arrays (:mod:`train.evaluation`):

* per-class precision, recall, F1 and support, micro and macro, per read and per pair;
* the risk-coverage curve and the threshold that reaches ``--target-precision`` on DATA,
  per read and per pair, and the figures at the run's calibrated threshold;
* reads whose class id is not among the run's classes ("should be unclassified"): their
  rejection rate at the threshold and the AUROC of confidence, known vs unknown;
* ECE (15 bins) at temperature 1 and at the run's temperature;
* with ``--taxonomy DIR``: accuracy per rank and the rank where each wrong call first agrees.

Outputs in ``--out`` (default ``RUN/eval/<DATA name>``): ``metrics.json``,
``per_class.tsv``, PNGs and one self-contained ``report.html``. ``--calibrate`` fits the
temperature and threshold on DATA first and writes ``RUN/calibration.json``
(:mod:`train.calibration`); ``make train`` does that on its validation set.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from train.calibration import (CALIBRATION_NAME, CalibrationError, apply_temperature, calibrate,
                               write_calibration)
from train.evaluation import (auroc, class_metrics, expected_calibration_error, log_softmax, pair_labels,
                              pair_log_probs, predictions, reliability_bins, risk_coverage, threshold_for_precision)
from train.metrics import confusion_matrix, plot_confusion, write_json
from train.taxonomy import Taxonomy, TaxonomyError, load_taxonomy, rank_agreement

__all__ = ["EVAL_FILES", "build_parser", "evaluate_arrays", "write_evaluation", "evaluate_val", "main"]

# Everything evaluate writes into --out (it replaces only these).
EVAL_FILES = ("metrics.json", "per_class.tsv", "confusion.png", "risk_coverage.png", "class_f1.png",
              "reliability.png", "report.html")
CURVE_POINTS = 200  # risk-coverage points kept in metrics.json


def _level(log_probs: np.ndarray, labels: np.ndarray, num_classes: int, threshold: float | None,
           target: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """Metrics of one level (reads or pairs): all calls, at ``threshold``, and the curve."""
    pred, conf = predictions(log_probs)
    n = len(labels)
    known = labels >= 0
    correct = pred == labels
    kept = conf >= threshold if threshold is not None else np.ones(n, dtype=bool)
    every = class_metrics(labels, pred, num_classes)
    at = class_metrics(labels, pred, num_classes, kept)
    rc = risk_coverage(conf, correct)
    here = threshold_for_precision(conf, correct, target)
    pick = np.unique(np.linspace(0, max(len(rc["kept"]) - 1, 0), CURVE_POINTS).astype(np.int64)) \
        if len(rc["kept"]) else np.zeros(0, np.int64)
    k = int(kept.sum())
    out = {
        "count": n, "known_class": int(known.sum()), "unknown_class": int(n - known.sum()),
        "accuracy": float(correct[known].mean()) if known.any() else None,
        "micro": every["micro"], "macro": every["macro"],
        "at_threshold": {
            "threshold": threshold, "classified": k, "unclassified": n - k, "coverage": k / n if n else 0.0,
            "precision": float(correct[kept].mean()) if k else None,
            "micro": at["micro"], "macro": at["macro"],
        },
        "target_precision": target,
        "threshold_for_target_on_this_data": here,
        "risk_coverage": {key: rc[key][pick].tolist() for key in ("threshold", "coverage", "precision")},
        "unknown": {
            "rejection_rate_at_threshold": float(np.mean(~kept[~known])) if (~known).any() else None,
            "auroc_known_vs_unknown": auroc(conf[known], conf[~known]),
        },
    }
    arrays = {"pred": pred, "conf": conf, "kept": kept, "every": every, "at": at, "rc": rc, "here": here}
    return out, arrays


def evaluate_arrays(log_probs: np.ndarray, labels: np.ndarray, fragment: np.ndarray | None, *,
                    class_names: Sequence[str], class_tax_ids: Sequence[int] | np.ndarray,
                    temperature: float = 1.0, threshold: float | None = None, pair_threshold: float | None = None,
                    target_precision: float = 0.99, taxonomy: Taxonomy | None = None) -> tuple[dict, dict]:
    """All of evaluate's figures from untempered log-probabilities (T = 1).

    Args:
        log_probs: (n, C) log-softmax of the logits at temperature 1.
        labels: (n,) run label, -1 where the read's class is not the run's.
        fragment: (n,) pair key (mates share it); None: every read alone.
        class_names, class_tax_ids: the run's class table (tax id <= 0: unknown).
        temperature: applied before every figure except ``ece_at_temperature_1``.
        threshold, pair_threshold: the confidence below which a read (pair) is unclassified;
            None: every read is classified.
        target_precision: for the threshold found on this data (reported, not applied).
        taxonomy: adds per-rank agreement.

    Returns:
        (metrics dict for metrics.json, arrays for :func:`write_evaluation`'s tables and plots).
    """
    C = len(class_names)
    labels = np.asarray(labels, dtype=np.int64)
    lp1 = np.asarray(log_probs, dtype=np.float32)
    lp = apply_temperature(lp1, temperature) if temperature != 1.0 else lp1
    fragment = np.arange(len(labels), dtype=np.int64) if fragment is None else np.asarray(fragment)
    reads, ra = _level(lp, labels, C, threshold, target_precision)
    plp, _ = pair_log_probs(lp, fragment)
    plab, disagree = pair_labels(labels, fragment)
    pairs, pa = _level(plp, plab, C, pair_threshold, target_precision)
    pairs["fragments_with_mates"] = int(np.sum(np.bincount(np.unique(fragment, return_inverse=True)[1]) > 1))
    pairs["fragments_whose_mates_disagree_on_label"] = disagree
    known = labels >= 0
    pred1, conf1 = predictions(lp1)
    metrics: dict[str, Any] = {
        "counts": {"reads": int(len(labels)), "known_class": int(known.sum()), "unknown_class": int((~known).sum()),
                   "fragments": int(len(plab)), "classes": C},
        "temperature": float(temperature),
        "per_read": reads,
        "per_pair": pairs,
        "calibration": {
            "ece_at_temperature_1": expected_calibration_error(conf1[known], pred1[known] == labels[known]),
            "ece_at_run_temperature": expected_calibration_error(ra["conf"][known], ra["pred"][known] == labels[known]),
            "bins": 15,
        },
    }
    if taxonomy is not None:
        tax = np.where(np.asarray(class_tax_ids, dtype=np.int64) > 0, np.asarray(class_tax_ids, dtype=np.int64), -1)
        metrics["taxonomy"] = {
            "source": taxonomy.source,
            "per_read": rank_agreement(tax[labels[known]], tax[ra["pred"][known]], taxonomy),
            "per_pair": rank_agreement(tax[plab[plab >= 0]], tax[pa["pred"][plab >= 0]], taxonomy),
        }
    arrays = {"read": ra, "pair": pa, "labels": labels, "pair_labels": plab,
              "bins": {"T = 1": reliability_bins(conf1[known], pred1[known] == labels[known]),
                       f"T = {temperature:.3g}": reliability_bins(ra["conf"][known], ra["pred"][known] == labels[known])}}
    return metrics, arrays


def _per_class_rows(arrays: dict[str, Any], names: Sequence[str], class_ids: Sequence[int],
                    tax_ids: Sequence[int]) -> tuple[list[str], list[list[Any]]]:
    r, p = arrays["read"], arrays["pair"]
    header = ["label", "class_id", "tax_id", "name", "support", "precision", "recall", "f1",
              "pair_support", "pair_precision", "pair_recall", "pair_f1",
              "precision_at_threshold", "recall_at_threshold"]
    rows = []
    for i, name in enumerate(names):
        rows.append([i, int(class_ids[i]), int(tax_ids[i]), str(name), r["every"]["support"][i],
                     r["every"]["precision"][i], r["every"]["recall"][i], r["every"]["f1"][i],
                     p["every"]["support"][i], p["every"]["precision"][i], p["every"]["recall"][i], p["every"]["f1"][i],
                     r["at"]["precision"][i], r["at"]["recall"][i]])
    return header, rows


def _tsv(header: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.6f}"
        return str(v).replace("\t", " ").replace("\n", " ")

    return "\n".join(["\t".join(header)] + ["\t".join(cell(v) for v in row) for row in rows]) + "\n"


def _safe_out(out: Path) -> Path:
    """Create ``out`` (parents too); a link or a file there is refused (nothing is written through a link)."""
    from shards import FormatError

    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise FormatError(f"--out {out}: exists and is not a directory (or is a link); choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_evaluation(out: str | Path, metrics: dict[str, Any], arrays: dict[str, Any], *,
                     class_names: Sequence[str], class_ids: Sequence[int], class_tax_ids: Sequence[int],
                     title: str) -> list[Path]:
    """Write metrics.json, per_class.tsv, the PNGs and report.html into ``out``; returns the paths."""
    from train.report_html import plot_class_f1, plot_reliability, plot_risk_coverage, write_report

    out = _safe_out(Path(out))
    header, rows = _per_class_rows(arrays, class_names, class_ids, class_tax_ids)
    metrics = dict(metrics, per_class=[dict(zip(header, r)) for r in rows])
    write_json(out / "metrics.json", metrics)
    tsv = out / "per_class.tsv"
    tmp = tsv.with_name(f".{tsv.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.write_text(_tsv(header, rows))
    tmp.replace(tsv)
    C = len(class_names)
    known = arrays["labels"] >= 0
    cm = confusion_matrix(arrays["labels"][known], arrays["read"]["pred"][known], C)
    images = {"confusion matrix (per read, every read called)": out / "confusion.png",
              "risk-coverage": out / "risk_coverage.png", "per-class F1": out / "class_f1.png",
              "reliability": out / "reliability.png"}
    tmp = out / ".confusion.png.tmp.png"
    tmp.unlink(missing_ok=True)
    plot_confusion(cm, class_names, tmp, title=f"per read: accuracy {100 * (metrics['per_read']['accuracy'] or 0):.2f}%")
    tmp.replace(out / "confusion.png")
    target = metrics["per_read"]["target_precision"]
    applied = {lvl: metrics[key]["at_threshold"] if metrics[key]["at_threshold"]["threshold"] is not None else None
               for lvl, key in (("read", "per_read"), ("pair", "per_pair"))}
    plot_risk_coverage({lvl: {"coverage": arrays[lvl]["rc"]["coverage"], "precision": arrays[lvl]["rc"]["precision"],
                              "chosen": arrays[lvl]["here"], "applied": applied[lvl]} for lvl in ("read", "pair")},
                       out / "risk_coverage.png", target)
    plot_class_f1(class_names, {"per read": arrays["read"]["every"]["f1"], "per pair": arrays["pair"]["every"]["f1"]},
                  out / "class_f1.png")
    plot_reliability(arrays["bins"], out / "reliability.png")
    write_report(out / "report.html", title, _sections(metrics, header, rows), images)
    return [out / name for name in EVAL_FILES]


def _sections(m: dict[str, Any], header: list[str], rows: list[list[Any]]) -> list[tuple[str, list]]:
    def level(name: str) -> list[tuple[str, Any]]:
        d = m[name]
        at, here = d["at_threshold"], d["threshold_for_target_on_this_data"]
        return [("count", d["count"]), ("accuracy (every call)", d["accuracy"]),
                ("micro F1", d["micro"]["f1"]), ("macro F1", d["macro"]["f1"]),
                ("threshold applied", at["threshold"]), ("classified", at["classified"]),
                ("precision of classified", at["precision"]), ("coverage", at["coverage"]),
                (f"threshold reaching precision {d['target_precision']:g} on this data", here["threshold"]),
                ("coverage at that threshold", here["coverage"]),
                ("unknown-class reads rejected at the applied threshold", d["unknown"]["rejection_rate_at_threshold"]),
                ("AUROC of confidence, known vs unknown class", d["unknown"]["auroc_known_vs_unknown"])]

    secs: list[tuple[str, list]] = [
        ("Data and run", [("kv", [(k, v) for k, v in m.get("run", {}).items() if not isinstance(v, dict)]
                           + [(k, v) for k, v in m.get("data", {}).items()] + list(m["counts"].items()))]),
        ("Per read", [("kv", level("per_read"))]),
        ("Per pair (mates' log-probabilities summed)", [("kv", level("per_pair"))]),
        ("Calibration", [("kv", [("temperature", m["temperature"])] + list(m["calibration"].items()))]),
    ]
    if "taxonomy" in m:
        t = m["taxonomy"]["per_read"]
        secs.append(("Taxonomy (per read)", [("table", (
            ["rank", "reads", "accuracy", "wrong calls first agreeing here"],
            [[r, t["reads"][r], t["accuracy"][r], t["first_agreement"][r]] for r in t["ranks"]]
            + [["none", None, None, t["first_agreement"]["none"]],
               ["(true tax id not in the taxonomy)", t["reads_without_lineage"], None, None]]))]))
    secs.append(("Per class", [("table", (header, rows))]))
    return secs


def _collect(blocks: Any) -> dict[str, Any]:
    """Concatenate scored blocks; labels None (unlabelled input) stays None."""
    lps, labs, frags, skipped, unlabelled = [], [], [], {}, False
    for s in blocks:
        lps.append(s.log_probs)
        frags.append(np.asarray(s.fragment))
        if s.labels is None:
            unlabelled = True
        else:
            labs.append(np.asarray(s.labels, dtype=np.int64))
        for k, v in getattr(s, "skipped", {}).items():
            skipped[k] = skipped.get(k, 0) + int(v)
    if not lps:
        return {"log_probs": None, "labels": None, "fragment": None, "skipped": skipped}
    return {"log_probs": np.concatenate(lps), "labels": None if unlabelled else np.concatenate(labs),
            "fragment": np.concatenate(frags), "skipped": skipped}


def _data_name(paths: Sequence[str]) -> str:
    name = Path(paths[0].rstrip("/")).name
    for suffix in (".gz", ".fastq", ".fq", ".fasta", ".fa", ".fna"):
        name = name[: -len(suffix)] if name.endswith(suffix) else name
    return name or "data"


def _data_identity(paths: Sequence[str], dataset: bool) -> dict[str, Any]:
    if dataset:
        import json

        manifest = json.loads((Path(paths[0]) / "manifest.json").read_text())
        return {"path": str(paths[0]), "kind": "readshard dataset", "dataset_id": manifest.get("dataset_id")}
    files = []
    for p in paths:
        st = Path(p).stat()
        files.append({"path": str(p), "bytes": st.st_size, "mtime": int(st.st_mtime)})
    return {"path": ", ".join(map(str, paths)), "kind": "FASTA/FASTQ", "files": files}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m train evaluate``."""
    p = argparse.ArgumentParser(prog="python -m train evaluate",
                                description="Evaluate a trained run on labelled reads (a readshard dataset or "
                                            "labelled FASTA/FASTQ): metrics.json, per_class.tsv, PNGs, report.html.")
    p.add_argument("run", help="the --out directory of a finished `python -m train` run")
    p.add_argument("data", nargs="+", help="a readshard dataset directory, or labelled FASTA/FASTQ file(s)")
    p.add_argument("--out", help="output directory (default RUN/eval/<DATA name>)")
    p.add_argument("--taxonomy", help="directory with NCBI nodes.dmp and names.dmp: accuracy per rank")
    p.add_argument("--target-precision", type=float, default=0.99,
                   help="precision the reported (and, with --calibrate, the saved) threshold reaches (default 0.99)")
    p.add_argument("--calibrate", action="store_true",
                   help=f"fit temperature and threshold on DATA first and write RUN/{CALIBRATION_NAME} "
                        "(use the validation set, never the data you report on)")
    p.add_argument("--pairs", choices=("auto", "on", "off"), default="auto",
                   help="FASTA/FASTQ input: how mates are found (as predict)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--batch-size", type=int, help="reads per forward pass")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    return p


def _score(run: Any, args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    from train import inference

    dataset = len(args.data) == 1 and inference.is_dataset(args.data[0])
    if dataset:
        blocks = inference.score_dataset(run, args.data[0], batch_size=args.batch_size)
    else:
        blocks = inference.score_reads(run, args.data, pairs=args.pairs, batch_size=args.batch_size,
                                       progress=args.progress)
    return _collect(blocks), dataset


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m train evaluate``; returns the exit code (2: bad input)."""
    from shards import FormatError

    args = build_parser().parse_args(argv)
    try:
        if not 0 < args.target_precision <= 1:
            raise FormatError(f"--target-precision {args.target_precision}: give a precision in (0, 1], e.g. 0.99")
        from train.inference import load_run

        taxonomy = load_taxonomy(args.taxonomy) if args.taxonomy else None
        t0 = time.perf_counter()
        run = load_run(args.run, device=args.device)
        got, dataset = _score(run, args)
        if got["log_probs"] is None or len(got["log_probs"]) == 0:
            raise FormatError(f"{' '.join(args.data)}: no reads to evaluate")
        if got["labels"] is None:
            raise FormatError(f"{' '.join(args.data)}: the reads carry no class ids, so there is nothing to score "
                              f"against; classify them with `python -m train predict {args.run} "
                              f"{' '.join(args.data)} --out DIR`")
        score_s = time.perf_counter() - t0
        # scores come divided by the run's temperature: undo it (softmax(T * lp) == softmax(logits))
        lp1 = log_softmax(got["log_probs"] * np.float32(run.temperature))
        cal = dict(run.calibration)
        ident = _data_identity(args.data, dataset)
        if args.calibrate:
            cal = calibrate(lp1, got["labels"], fragment=got["fragment"], target_precision=args.target_precision,
                            fitted_on=f"{ident['path']} ({ident.get('dataset_id') or 'files'})")
            write_calibration(Path(args.run) / CALIBRATION_NAME, cal)
            print(f"wrote {Path(args.run) / CALIBRATION_NAME}: temperature {cal['temperature']:.4f}, "
                  f"threshold {cal['threshold']}, ECE {cal['ece_before']:.4f} -> {cal['ece_after']:.4f}",
                  file=sys.stderr)
        names = list(run.classes.names)
        metrics, arrays = evaluate_arrays(
            lp1, got["labels"], got["fragment"], class_names=names, class_tax_ids=run.classes.tax_ids,
            temperature=float(cal.get("temperature", 1.0)), threshold=cal.get("threshold"),
            pair_threshold=cal.get("pair_threshold"), target_precision=args.target_precision, taxonomy=taxonomy)
        metrics = {"run": run.identity(), "data": ident, "threshold_source":
                   (f"RUN/{CALIBRATION_NAME}" + (" (fitted on this data)" if args.calibrate else ""))
                   if cal.get("threshold") is not None else "none: every read classified",
                   **metrics, "skipped": got["skipped"], "scoring_seconds": score_s,
                   "reads_per_s": len(lp1) / max(score_s, 1e-9)}
        out = Path(args.out) if args.out else Path(args.run) / "eval" / _data_name(args.data)
        write_evaluation(out, metrics, arrays, class_names=names, class_ids=run.classes.class_ids,
                         class_tax_ids=run.classes.tax_ids, title=f"readshard evaluation: {ident['path']}")
    except (FormatError, TaxonomyError, CalibrationError, OSError) as exc:
        msg = f"{exc.filename}: {exc.strerror}" if isinstance(exc, OSError) and exc.filename else str(exc)
        print(f"error: {msg}", file=sys.stderr)
        return 2
    _summary(metrics, out)
    return 0


def _summary(m: dict[str, Any], out: Path) -> None:
    for name, d in (("reads", m["per_read"]), ("pairs", m["per_pair"])):
        at = d["at_threshold"]
        prec = "-" if at["precision"] is None else f"{100 * at['precision']:.2f}%"
        print(f"{name}: {d['count']:,}  accuracy {100 * (d['accuracy'] or 0):.2f}%  macro-F1 "
              f"{100 * d['macro']['f1']:.2f}%  classified {100 * at['coverage']:.1f}% at threshold "
              f"{at['threshold']}  precision {prec}")
    print(f"wrote {out}/report.html (and {', '.join(EVAL_FILES[:-1])})")


def clear_evaluation(directory: str | Path) -> None:
    """Remove the files evaluate writes (and nothing else) from ``directory``, then the
    directory and its parent if that left them empty; a link on the way is left alone."""
    d = Path(directory)
    if d.is_symlink() or d.parent.is_symlink() or not d.is_dir():
        return
    for name in EVAL_FILES:
        (d / name).unlink(missing_ok=True)  # unlink never follows a symlink
    for p in (d, d.parent):
        try:
            p.rmdir()
        except OSError:  # not empty: something else lives there
            return


def evaluate_val(run_dir: str | Path, ds: Any, log_probs: np.ndarray, *, cfg: Any, step: int,
                 target_precision: float = 0.99) -> dict[str, Any]:
    """The end of ``make train``: calibrate on the validation set's log-probabilities (T = 1,
    in dataset order) and write ``RUN/calibration.json`` and ``RUN/eval/val/`` (what
    ``python -m train evaluate RUN VAL`` writes).

    Returns the calibration's summary for ``metrics.json``.
    """
    run_dir = Path(run_dir)
    man = ds.manifest
    labels = np.asarray(ds.labels, dtype=np.int64)
    fragment = np.asarray(ds.fragment_hashes)
    data = {"path": str(ds.path), "kind": "readshard dataset", "dataset_id": man.get("dataset_id")}
    cal = calibrate(log_probs, labels, fragment=fragment, target_precision=target_precision,
                    fitted_on=f"{data['path']} ({data['dataset_id']})")
    write_calibration(run_dir / CALIBRATION_NAME, cal)
    names, cids, tax = list(man["label_names"]), list(man["label_class_ids"]), list(man["label_tax_ids"])
    metrics, arrays = evaluate_arrays(log_probs, labels, fragment, class_names=names, class_tax_ids=tax,
                                      temperature=cal["temperature"], threshold=cal["threshold"],
                                      pair_threshold=cal["pair_threshold"], target_precision=target_precision)
    tok = man["tokenizer"]
    run = {"run_dir": str(run_dir), "step": int(step), "arch": cfg.model.arch, "pretrained": cfg.model.pretrained,
           "lora": cfg.model.lora is not None, "tokenizer": {k: tok.get(k) for k in ("name", "sha256", "vocab_size")},
           "max_length": int(man["max_length"]), "num_classes": len(names), "temperature": cal["temperature"]}
    metrics = {"run": run, "data": data, "threshold_source": f"RUN/{CALIBRATION_NAME} (fitted on this data)", **metrics}
    write_evaluation(run_dir / "eval" / "val", metrics, arrays, class_names=names, class_ids=cids,
                     class_tax_ids=tax, title=f"readshard evaluation: {data['path']} (validation set)")
    prec = cal["precision_at_threshold"]
    print(f"calibrated on val: temperature {cal['temperature']:.3f}, ECE {cal['ece_before']:.4f} -> "
          f"{cal['ece_after']:.4f}; threshold {cal['threshold']} keeps {100 * cal['coverage_at_threshold']:.1f}% of "
          f"val reads at precision {'-' if prec is None else f'{100 * prec:.2f}%'} (target {target_precision:g}); "
          f"{run_dir / CALIBRATION_NAME}, {run_dir / 'eval' / 'val' / 'report.html'}")
    keys = ("temperature", "threshold", "pair_threshold", "ece_before", "ece_after", "coverage_at_threshold",
            "precision_at_threshold")
    return {k: cal.get(k) for k in keys}
