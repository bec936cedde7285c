"""train.evaluation and train.calibration against plain (loop) reference implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from train.calibration import (CalibrationError, apply_temperature, calibrate, fit_temperature, read_calibration,
                               validate_calibration, write_calibration)
from train.evaluation import (auroc, class_metrics, expected_calibration_error, log_softmax, pair_labels,
                              pair_log_probs, predictions, risk_coverage, threshold_for_precision)


def ref_risk_coverage(conf: list[float], correct: list[bool]) -> list[tuple[float, int, float]]:
    """For every distinct confidence t: keep conf >= t, count, precision (plain loops)."""
    points = []
    for t in sorted(set(conf), reverse=True):
        kept = [c for x, c in zip(conf, correct) if x >= t]
        points.append((t, len(kept), sum(kept) / len(kept)))
    return points


def ref_threshold(conf: list[float], correct: list[bool], target: float) -> float | None:
    best = None
    for t, _, prec in ref_risk_coverage(conf, correct):
        if prec >= target:
            best = t  # thresholds fall, so the last one reaching the target keeps the most reads
    return best


def ref_auroc(pos: list[float], neg: list[float]) -> float:
    s = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return s / (len(pos) * len(neg))


def ref_ece(conf: list[float], correct: list[bool], bins: int = 15) -> float:
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        sel = [(c, k) for c, k in zip(conf, correct) if (lo < c <= hi) or (b == 0 and c == 0)]
        if sel:
            total += len(sel) * abs(sum(k for _, k in sel) / len(sel) - sum(c for c, _ in sel) / len(sel))
    return total / len(conf)


def ref_class_metrics(labels: list[int], preds: list[int], kept: list[bool], C: int) -> dict:
    out = {"precision": [], "recall": [], "f1": []}
    for c in range(C):
        tp = sum(1 for y, p, k in zip(labels, preds, kept) if k and p == c and y == c)
        fp = sum(1 for y, p, k in zip(labels, preds, kept) if k and p == c and y != c)
        fn = sum(1 for y, p, k in zip(labels, preds, kept) if y == c and not (k and p == c))
        prec = tp / (tp + fp) if tp + fp else float("nan")
        rec = tp / (tp + fn) if tp + fn else float("nan")
        out["precision"].append(prec)
        out["recall"].append(rec)
        p0 = 0.0 if math.isnan(prec) else prec
        out["f1"].append(float("nan") if math.isnan(rec) else 2 * p0 * rec / (p0 + rec) if p0 + rec else 0.0)
    TP = sum(1 for y, p, k in zip(labels, preds, kept) if k and p == y)
    called = sum(kept)
    known = sum(1 for y in labels if y >= 0)
    out["micro_precision"] = TP / called if called else 0.0
    out["micro_recall"] = TP / known if known else 0.0
    return out


# (n, ties): many ties exercise the "keep all reads tied at the threshold" rule
CASES = [(1, False), (7, False), (200, False), (200, True), (500, True)]


@pytest.mark.parametrize("n,ties", CASES)
def test_risk_coverage_matches_loop(n: int, ties: bool) -> None:
    rng = np.random.default_rng(n + ties)
    conf = rng.integers(0, 5, n) / 4 if ties else rng.random(n)
    correct = rng.random(n) < conf  # confident reads are right more often
    rc = risk_coverage(conf, correct)
    ref = ref_risk_coverage(conf.tolist(), correct.tolist())
    assert len(rc["threshold"]) == len(ref)
    for i, (t, k, p) in enumerate(ref):
        assert rc["threshold"][i] == t and rc["kept"][i] == k and math.isclose(rc["precision"][i], p)
        assert math.isclose(rc["coverage"][i], k / n)
    for target in (0.5, 0.8, 0.95, 1.0):
        got = threshold_for_precision(conf, correct, target)["threshold"]
        assert got == ref_threshold(conf.tolist(), correct.tolist(), target)


def test_threshold_with_wilson_bound_is_stricter() -> None:
    rng = np.random.default_rng(3)
    conf = rng.random(3000)
    correct = rng.random(3000) < 0.9 + 0.1 * conf
    plain = threshold_for_precision(conf, correct, 0.97)
    bound = threshold_for_precision(conf, correct, 0.97, z=1.645)
    assert plain["threshold"] is not None and bound["threshold"] is not None
    assert bound["threshold"] >= plain["threshold"] and bound["precision"] >= 0.97
    assert threshold_for_precision(conf, np.zeros(3000, bool), 0.5)["threshold"] is None


@pytest.mark.parametrize("seed,C,unknown", [(0, 2, 0), (1, 5, 0), (2, 5, 30), (3, 9, 10), (4, 40, 10)])
def test_class_metrics_match_loop(seed: int, C: int, unknown: int) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    labels = rng.integers(0, C, n)
    labels[:unknown] = -1
    preds = np.where(rng.random(n) < 0.7, np.maximum(labels, 0), rng.integers(0, C, n))
    kept = rng.random(n) < 0.8
    if C >= 5:  # a class without reads, and a class with reads that is never called
        labels[labels == C - 1] = 0
        preds[preds == 1] = 2
    got = class_metrics(labels, preds, C, kept)
    ref = ref_class_metrics(labels.tolist(), preds.tolist(), kept.tolist(), C)
    for key in ("precision", "recall", "f1"):
        np.testing.assert_allclose([np.nan if v is None else v for v in got[key]], ref[key], equal_nan=True)
    assert math.isclose(got["micro"]["precision"], ref["micro_precision"])
    assert math.isclose(got["micro"]["recall"], ref["micro_recall"])
    assert math.isclose(got["macro"]["f1"], float(np.nanmean(ref["f1"])))
    assert math.isclose(got["macro"]["precision"], float(np.nanmean(ref["precision"])))
    assert math.isclose(got["macro"]["recall"], float(np.nanmean(ref["recall"])))
    # the counts reconcile: every known read is a TP or an FN of its class; kept reads are TP or FP
    assert sum(got["tp"]) + sum(got["fn"]) == int((labels >= 0).sum())
    assert sum(got["tp"]) + sum(got["fp"]) == int(kept.sum())


@pytest.mark.parametrize("n1,n0,ties", [(1, 1, False), (10, 7, False), (50, 40, True)])
def test_auroc_matches_pairwise_count(n1: int, n0: int, ties: bool) -> None:
    rng = np.random.default_rng(n1)
    pos = rng.integers(0, 4, n1) / 3 if ties else rng.random(n1) + 0.2
    neg = rng.integers(0, 4, n0) / 3 if ties else rng.random(n0)
    assert math.isclose(auroc(pos, neg), ref_auroc(pos.tolist(), neg.tolist()))
    assert auroc(pos, []) is None


@pytest.mark.parametrize("ties", [False, True])
def test_ece_matches_loop(ties: bool) -> None:
    rng = np.random.default_rng(5)
    conf = np.round(rng.random(400), 1) if ties else rng.random(400)  # 0.0 and bin edges included
    correct = rng.random(400) < conf
    assert math.isclose(expected_calibration_error(conf, correct), ref_ece(conf.tolist(), correct.tolist()))


def test_pairs_sum_log_probs() -> None:
    lp = log_softmax(np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]], dtype=np.float32))
    frag = np.array([7, 7, 3])
    plp, inv = pair_log_probs(lp, frag)
    assert inv.tolist() == [1, 1, 0]  # rows in key order
    np.testing.assert_allclose(plp[1], log_softmax(np.array([2.0, 1.0, 0.0])), rtol=1e-6)
    lab, disagree = pair_labels(np.array([1, 2, 0]), frag)
    assert lab.tolist() == [0, 1] and disagree == 1


def _overconfident(n: int, C: int, scale: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose true posterior is softmax(2.5 z); given as softmax(scale z)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    z = rng.normal(size=(n, C))
    z[np.arange(n), y] += 2.5
    return log_softmax((scale * z).astype(np.float32)), y


def test_temperature_recovers_the_true_scale_and_lowers_ece() -> None:
    lp, y = _overconfident(20000, 8, 3.0, 0)
    T = fit_temperature(lp, y)
    assert abs(T - 3.0 / 2.5) < 0.03
    # the fitted T minimises the NLL (checked against a grid)
    def nll(t: float) -> float:
        return float(-np.mean(apply_temperature(lp, t)[np.arange(len(y)), y]))
    assert nll(T) <= min(nll(t) for t in np.linspace(0.6, 2.0, 57)) + 1e-6
    cal = calibrate(lp, y, fragment=np.arange(len(y)), target_precision=0.99, fitted_on="synthetic")
    assert cal["ece_after"] < 0.5 * cal["ece_before"]
    assert math.isclose(cal["temperature"], T)


def test_threshold_holds_on_reads_not_calibrated_on() -> None:
    """The issue's target: fitted on one set at target 0.99, precision >= 0.985 on another."""
    lp, y = _overconfident(12000, 10, 2.0, 1)
    cal = calibrate(lp, y, fragment=np.arange(len(y)), target_precision=0.99)
    test_lp, test_y = _overconfident(30000, 10, 2.0, 2)
    pred, conf = predictions(apply_temperature(test_lp, cal["temperature"]))
    kept = conf >= cal["threshold"]
    assert kept.mean() > 0.2 and np.mean(pred[kept] == test_y[kept]) >= 0.985
    for fold in cal["two_fold_check"]:
        assert fold["held_out"]["precision"] >= 0.985


def test_calibration_file_schema(tmp_path) -> None:  # noqa: ANN001
    lp, y = _overconfident(500, 3, 1.0, 4)
    cal = calibrate(lp, y, target_precision=0.9, fitted_on="x")
    path = tmp_path / "calibration.json"
    write_calibration(path, cal)
    assert read_calibration(path) == cal
    assert read_calibration(tmp_path / "absent.json") is None
    for bad in ({**cal, "temperature": -1.0}, {**cal, "threshold": 1.5}, {k: v for k, v in cal.items() if k != "ece_after"},
                {**cal, "num_reads": True}):
        with pytest.raises(CalibrationError):
            validate_calibration(bad)
    path.write_text("{not json")
    with pytest.raises(CalibrationError, match="calibration.json"):
        read_calibration(path)


def test_error_free_set_keeps_temperature_in_range_and_falls_back_to_point_estimate() -> None:
    """240 of 240 right: the NLL optimum is T -> 0 and the Wilson bound (0.989) misses 0.99."""
    lp, y = _overconfident(240, 4, 1.0, 6)
    y = np.argmax(lp, axis=1)  # every call right
    cal = calibrate(lp, y, target_precision=0.99)
    assert cal["temperature"] == 0.25
    assert cal["threshold"] is not None and cal["threshold_basis"].startswith("point_estimate")
    assert cal["coverage_at_threshold"] == 1.0
