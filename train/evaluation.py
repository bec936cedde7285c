"""Evaluation metrics on per-read arrays (pure numpy, vectorised: no per-read Python loop).

The inputs are what scoring a labelled set gives: ``log_probs`` (n, C), ``labels`` (n,)
with -1 for reads whose class id is not among the run's classes ("should be
unclassified"), and optionally a per-read fragment key that pairs mates.

Conventions used throughout:

* a read is *kept* (classified) when its confidence (the top probability) is at least the
  threshold; a kept read is *correct* when its call equals its label, so a kept read with
  label -1 is always an error;
* precision = correct / kept; coverage = kept / all reads (unknown-class reads included).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "predictions",
    "class_metrics",
    "risk_coverage",
    "threshold_for_precision",
    "wilson_lower_bound",
    "expected_calibration_error",
    "reliability_bins",
    "auroc",
    "pair_log_probs",
    "pair_labels",
    "log_softmax",
]


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable log-softmax along ``axis`` (float64 accumulation, input dtype kept)."""
    x = np.asarray(x)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    s = x - m
    # exp in the input's precision (values in [0, 1]), summed in float64
    lse = np.log(np.sum(np.exp(s), axis=axis, keepdims=True, dtype=np.float64))
    return (s - lse).astype(x.dtype if x.dtype.kind == "f" else np.float64)


def predictions(log_probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(call (n,) int64, confidence (n,) float64): the arg-max class and its probability."""
    lp = np.asarray(log_probs)
    pred = np.argmax(lp, axis=1).astype(np.int64)
    conf = np.exp(lp[np.arange(len(lp)), pred].astype(np.float64))
    return pred, conf


def class_metrics(labels: np.ndarray, preds: np.ndarray, num_classes: int,
                  kept: np.ndarray | None = None) -> dict[str, Any]:
    """Per-class precision, recall, F1 and support, with micro and macro averages.

    A read not ``kept`` (unclassified) is a false negative of its class and nobody's false
    positive; a kept read with label -1 is a false positive of the class it was given.
    Support counts reads of the class (kept or not). The precision of a class never called
    is undefined (None); macro precision averages the classes that were called, macro recall
    and F1 the classes with support (F1 of a class with support but no call is 0). With
    abstention a 0 there would read as "wrong", when the class was only never called.

    Returns:
        ``{"precision", "recall", "f1", "support", "tp", "fp", "fn"}`` (lists of length C,
        ``None`` where undefined) and ``"micro"``/``"macro"`` dicts of precision, recall, F1.
    """
    labels = np.asarray(labels, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    kept = np.ones(len(labels), dtype=bool) if kept is None else np.asarray(kept, dtype=bool)
    known = labels >= 0
    support = np.bincount(labels[known], minlength=num_classes)[:num_classes]
    hit = kept & (preds == labels)
    tp = np.bincount(labels[hit], minlength=num_classes)[:num_classes]
    called = np.bincount(preds[kept], minlength=num_classes)[:num_classes]
    fp = called - tp
    fn = support - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(called > 0, tp / np.maximum(called, 1), 0.0)
        recall = np.where(support > 0, tp / np.maximum(support, 1), np.nan)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    present = support > 0
    f1 = np.where(present, f1, np.nan)
    precision_l = np.where(called > 0, precision, np.nan)
    TP, FP, FN = int(tp.sum()), int(fp.sum()), int(fn.sum())
    micro_p = TP / (TP + FP) if TP + FP else 0.0
    micro_r = TP / (TP + FN) if TP + FN else 0.0
    micro_f = 2 * micro_p * micro_r / (micro_p + micro_r) if micro_p + micro_r else 0.0

    def listed(a: np.ndarray) -> list[float | None]:
        return [None if np.isnan(x) else float(x) for x in a]

    def mean(a: np.ndarray, over: np.ndarray = present) -> float:
        return float(np.mean(a[over])) if over.any() else 0.0

    return {
        "precision": listed(precision_l), "recall": listed(recall), "f1": listed(f1),
        "support": support.tolist(), "tp": tp.tolist(), "fp": fp.tolist(), "fn": fn.tolist(),
        "micro": {"precision": micro_p, "recall": micro_r, "f1": micro_f},
        "macro": {"precision": mean(precision, called > 0), "recall": mean(np.nan_to_num(recall)), "f1": mean(np.nan_to_num(f1))},
    }


def risk_coverage(confidence: np.ndarray, correct: np.ndarray) -> dict[str, np.ndarray]:
    """Precision of the kept reads against the fraction kept, as the threshold moves.

    One point per distinct confidence value ``t`` (highest first): keep every read with
    confidence >= ``t``. Sorting once and a cumulative sum give every point.

    Returns:
        ``{"threshold", "kept", "coverage", "precision"}``, arrays in order of falling threshold.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    n = len(conf)
    if n == 0:
        e = np.zeros(0)
        return {"threshold": e, "kept": e.astype(np.int64), "coverage": e, "precision": e}
    order = np.argsort(-conf, kind="stable")
    c = conf[order]
    cum = np.cumsum(ok[order], dtype=np.int64)
    # a threshold keeps all reads tied at it: only the last position of each tie is a point
    ends = np.flatnonzero(np.append(c[1:] != c[:-1], True))
    kept = ends + 1
    return {"threshold": c[ends], "kept": kept, "coverage": kept / n, "precision": cum[ends] / kept}


def wilson_lower_bound(successes: np.ndarray, n: np.ndarray, z: float = 1.645) -> np.ndarray:
    """One-sided Wilson score lower bound of a binomial proportion (z=1.645: 95%)."""
    n = np.asarray(n, dtype=np.float64)
    p = np.asarray(successes, dtype=np.float64) / np.maximum(n, 1)
    z2 = z * z
    centre = p + z2 / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(n > 0, (centre - spread) / (1 + z2 / n), 0.0)


def threshold_for_precision(confidence: np.ndarray, correct: np.ndarray, target: float, *,
                            z: float | None = None) -> dict[str, Any]:
    """The lowest confidence threshold whose kept reads reach ``target`` precision.

    Among the points of :func:`risk_coverage`, the one with the most reads kept whose
    precision (or, with ``z``, its Wilson lower bound at that z) is at least ``target``.

    Returns:
        ``{"threshold", "kept", "coverage", "precision"}``; ``threshold`` is None (and
        coverage 0) when no threshold reaches the target.
    """
    rc = risk_coverage(confidence, correct)
    score = rc["precision"] if z is None else wilson_lower_bound(rc["precision"] * rc["kept"], rc["kept"], z)
    ok = np.flatnonzero(score >= target)
    if len(ok) == 0:
        return {"threshold": None, "kept": 0, "coverage": 0.0, "precision": None}
    i = int(ok[-1])
    return {"threshold": float(rc["threshold"][i]), "kept": int(rc["kept"][i]),
            "coverage": float(rc["coverage"][i]), "precision": float(rc["precision"][i])}


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> dict[str, np.ndarray]:
    """Equal-width confidence bins on [0, 1]: reads, mean confidence and accuracy per bin."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    # bin i holds (i/bins, (i+1)/bins]; confidence 0 goes to the first bin
    idx = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(idx, minlength=bins)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_conf = np.bincount(idx, weights=conf, minlength=bins) / count
        acc = np.bincount(idx, weights=ok, minlength=bins) / count
    return {"count": count, "confidence": mean_conf, "accuracy": acc}


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 15) -> float:
    """ECE: the read-weighted mean |accuracy - confidence| over equal-width bins."""
    b = reliability_bins(confidence, correct, bins)
    n = int(b["count"].sum())
    if n == 0:
        return 0.0
    used = b["count"] > 0
    return float(np.sum(b["count"][used] * np.abs(b["accuracy"][used] - b["confidence"][used])) / n)


def auroc(positive_scores: np.ndarray, negative_scores: np.ndarray) -> float | None:
    """P(a positive scores above a negative), ties counting one half (Mann-Whitney U / n1 n0).

    None when either group is empty.
    """
    pos = np.asarray(positive_scores, dtype=np.float64)
    neg = np.asarray(negative_scores, dtype=np.float64)
    n1, n0 = len(pos), len(neg)
    if n1 == 0 or n0 == 0:
        return None
    allv = np.concatenate([pos, neg])
    order = np.argsort(allv, kind="stable")
    sv = allv[order]
    # average rank (1-based) of each tie group
    starts = np.flatnonzero(np.append(True, sv[1:] != sv[:-1]))
    ends = np.append(starts[1:], len(sv))
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(len(sv))
    ranks[order] = np.repeat(avg, ends - starts)
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    return float(u / (n1 * n0))


def _groups(fragment: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(order, starts, inverse): reads sorted by fragment, each group's start, read -> group."""
    frag = np.asarray(fragment)
    order = np.argsort(frag, kind="stable")
    sf = frag[order]
    starts = np.flatnonzero(np.append(True, sf[1:] != sf[:-1])) if len(sf) else np.zeros(0, np.int64)
    group_sorted = np.cumsum(np.append(False, sf[1:] != sf[:-1])) if len(sf) else np.zeros(0, np.int64)
    inverse = np.empty(len(frag), dtype=np.int64)
    inverse[order] = group_sorted
    return order, starts, inverse


def pair_log_probs(log_probs: np.ndarray, fragment: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One call per fragment: the mates' log-probabilities summed, then renormalised.

    Returns:
        (fragment log-probabilities (m, C), inverse (n,): read -> its fragment's row), rows
        in order of fragment key.
    """
    lp = np.asarray(log_probs)
    order, starts, inverse = _groups(fragment)
    if len(lp) == 0:
        return lp.reshape(0, lp.shape[1] if lp.ndim == 2 else 0), inverse
    summed = np.add.reduceat(lp[order].astype(np.float64), starts, axis=0)
    return log_softmax(summed).astype(np.float32), inverse


def pair_labels(labels: np.ndarray, fragment: np.ndarray) -> tuple[np.ndarray, int]:
    """Each fragment's label (its first read's, in fragment-key order) and how many
    fragments have mates that disagree (those count as the first read's label)."""
    lab = np.asarray(labels, dtype=np.int64)
    order, starts, inverse = _groups(fragment)
    first = lab[order][starts] if len(lab) else lab
    disagree = int(np.count_nonzero(np.bincount(inverse, weights=lab != first[inverse], minlength=len(first)))) \
        if len(lab) else 0
    return first, disagree
