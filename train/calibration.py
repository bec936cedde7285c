"""Confidence calibration: temperature scaling fitted on the validation set, and the
abstention threshold that reaches a target precision.

How the threshold is chosen (so that the precision measured on reads *not* used for
calibration still reaches the target): the temperature T minimises the validation NLL
(one parameter: it barely overfits); the threshold is then the lowest confidence at which
the one-sided 95% Wilson lower bound of the kept reads' precision is >= the target, not
the raw precision. A two-fold check (fit T and threshold on one half of the fragments,
measure on the other half, and the other way round) is stored beside it as evidence.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from train.evaluation import (expected_calibration_error, log_softmax, pair_labels, pair_log_probs, predictions,
                              threshold_for_precision)

__all__ = [
    "CALIBRATION_NAME",
    "CalibrationError",
    "fit_temperature",
    "apply_temperature",
    "calibrate",
    "validate_calibration",
    "read_calibration",
    "write_calibration",
]

CALIBRATION_NAME = "calibration.json"
WILSON_Z = 1.645  # one-sided 95%
ECE_BINS = 15
# A validation set the model gets all right drives the NLL's optimum to T -> 0 (every
# confidence 1.0); the fit stays inside this range, as docs/training.md says.
T_RANGE = (0.25, 10.0)


class CalibrationError(ValueError):
    """A calibration.json that does not have the documented schema."""


def fit_temperature(log_probs: np.ndarray, labels: np.ndarray, *, max_iter: int = 50,
                    max_reads: int = 200_000) -> float:
    """The temperature T minimising the mean NLL of ``softmax(log_probs / T)`` at ``labels``.

    The NLL is convex in beta = 1/T (its second derivative is the variance of the logits
    under the tempered distribution), so a damped Newton iteration on beta converges to the
    global minimum; T is kept in :data:`T_RANGE` (a convex function's minimum over an
    interval is its clamped unconstrained minimum). Reads with label -1 are ignored; of more
    than ``max_reads`` labelled reads an evenly spaced sample is used (one parameter: 200,000
    reads fix it to ~0.1%, and each Newton step costs a pass over n x C values).
    Returns 1.0 without labelled reads.
    """
    y = np.asarray(labels, dtype=np.int64)
    rows = np.flatnonzero(y >= 0)
    if len(rows) == 0:
        return 1.0
    if len(rows) > max_reads:
        rows = rows[np.linspace(0, len(rows) - 1, max_reads).astype(np.int64)]
    lp, y = np.asarray(log_probs)[rows].astype(np.float64), y[rows]
    lp = np.maximum(lp - lp.max(axis=1, keepdims=True), -1e4)  # -inf rows would poison the moments
    zy = lp[np.arange(len(y)), y]

    def nll_grad_hess(beta: float) -> tuple[float, float, float]:
        s = beta * lp
        m = s.max(axis=1, keepdims=True)
        e = np.exp(s - m)
        z = e.sum(axis=1, keepdims=True)
        p = e / z
        mean = (p * lp).sum(axis=1)
        var = (p * lp * lp).sum(axis=1) - mean * mean
        nll = float(np.mean(np.log(z[:, 0]) + m[:, 0] - beta * zy))
        return nll, float(np.mean(mean - zy)), float(np.mean(np.maximum(var, 0)))

    lo, hi = 1.0 / T_RANGE[1], 1.0 / T_RANGE[0]
    beta = 1.0
    f, g, h = nll_grad_hess(beta)
    for _ in range(max_iter):
        step = -g / h if h > 1e-12 else -math.copysign(1.0, g)
        new = min(hi, max(lo, beta + step))
        step = new - beta
        if step == 0:  # at a bound, and the minimum lies beyond it
            break
        fn, gn, hn = nll_grad_hess(new)
        halvings = 0
        while fn > f and halvings < 30:
            step /= 2
            new = beta + step
            fn, gn, hn = nll_grad_hess(new)
            halvings += 1
        converged = abs(new - beta) < 1e-7 * max(1.0, beta)
        beta, f, g, h = new, fn, gn, hn
        if converged or abs(g) < 1e-10:
            break
    return float(1.0 / beta)


def apply_temperature(log_probs: np.ndarray, temperature: float) -> np.ndarray:
    """``log_softmax(log_probs / T)`` (float32)."""
    return log_softmax(np.asarray(log_probs, dtype=np.float32) / np.float32(temperature))


def _threshold(conf: np.ndarray, correct: np.ndarray, target: float) -> dict[str, Any]:
    """By the Wilson bound; a set too small for the bound to reach the target (e.g. 240 of
    240 right: bound 0.989) falls back to the plain precision, and says so in ``basis``."""
    got = threshold_for_precision(conf, correct, target, z=WILSON_Z)
    basis = "wilson_lower_bound"
    if got["threshold"] is None:
        got = threshold_for_precision(conf, correct, target)
        basis = "point_estimate (too few reads for the bound)" if got["threshold"] is not None else "none reached"
    return {**got, "basis": basis}


def _choose(lp: np.ndarray, labels: np.ndarray, fragment: np.ndarray | None, target: float) -> dict[str, Any]:
    """Threshold per read and per pair for tempered log-probabilities ``lp``."""
    pred, conf = predictions(lp)
    read = _threshold(conf, pred == labels, target)
    pair = None
    if fragment is not None:
        plp, _ = pair_log_probs(lp, fragment)
        plab, _ = pair_labels(labels, fragment)
        ppred, pconf = predictions(plp)
        pair = _threshold(pconf, ppred == plab, target)
    return {"read": read, "pair": pair}


def _precision_at(log_probs: np.ndarray, labels: np.ndarray, temperature: float,
                  threshold: float | None) -> dict[str, Any]:
    pred, conf = predictions(apply_temperature(log_probs, temperature))
    if threshold is None:
        return {"kept": 0, "reads": int(len(labels)), "precision": None}
    kept = conf >= threshold
    k = int(kept.sum())
    return {"kept": k, "reads": int(len(labels)),
            "precision": float(np.mean(pred[kept] == labels[kept])) if k else None}


def calibrate(log_probs: np.ndarray, labels: np.ndarray, *, fragment: np.ndarray | None = None,
              target_precision: float = 0.99, fitted_on: str = "") -> dict[str, Any]:
    """Fit temperature and thresholds on a labelled (validation) set; the calibration.json dict.

    Args:
        log_probs: (n, C) untempered log-probabilities (T = 1).
        labels: (n,) run label index; -1 reads are counted but never correct.
        fragment: (n,) pair key, for the per-pair threshold and the two-fold check's split.
        target_precision: the precision the threshold must reach.
        fitted_on: what the fit saw (dataset path and identity), stored as is.
    """
    lp = np.asarray(log_probs, dtype=np.float32)
    y = np.asarray(labels, dtype=np.int64)
    T = fit_temperature(lp, y)
    pred0, conf0 = predictions(lp)
    tempered = apply_temperature(lp, T)
    pred1, conf1 = predictions(tempered)
    chosen = _choose(tempered, y, fragment, target_precision)
    del tempered
    out: dict[str, Any] = {
        "temperature": T,
        "threshold": chosen["read"]["threshold"],
        "pair_threshold": None if chosen["pair"] is None else chosen["pair"]["threshold"],
        "target_precision": float(target_precision),
        "method": f"temperature: NLL minimum on the set, within {T_RANGE}; threshold: lowest confidence whose "
                  "kept reads' one-sided 95% Wilson lower bound of precision >= target (threshold_basis)",
        "ece_before": expected_calibration_error(conf0, pred0 == y, ECE_BINS),
        "ece_after": expected_calibration_error(conf1, pred1 == y, ECE_BINS),
        "ece_bins": ECE_BINS,
        "fitted_on": str(fitted_on),
        "num_reads": int(len(y)),
        "threshold_basis": chosen["read"]["basis"],
        "coverage_at_threshold": chosen["read"]["coverage"],
        "precision_at_threshold": chosen["read"]["precision"],
        "two_fold_check": _two_fold(lp, y, fragment, target_precision),
    }
    if chosen["pair"] is not None:
        out["pair_coverage_at_threshold"] = chosen["pair"]["coverage"]
        out["pair_precision_at_threshold"] = chosen["pair"]["precision"]
    validate_calibration(out)
    return out


def _two_fold(lp: np.ndarray, y: np.ndarray, fragment: np.ndarray | None, target: float) -> list[dict[str, Any]]:
    """Fit on one half, measure precision on the other (halves by fragment, mates together)."""
    key = np.asarray(fragment, dtype=np.uint64) if fragment is not None else np.arange(len(y), dtype=np.uint64)
    # a mixing hash, so a key that counts up (record numbers) still splits evenly
    half = ((key * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(63)).astype(bool)
    folds = []
    for fit_mask in (half, ~half):
        test = ~fit_mask
        if fit_mask.sum() == 0 or test.sum() == 0:
            continue
        T = fit_temperature(lp[fit_mask], y[fit_mask])
        pred, conf = predictions(apply_temperature(lp[fit_mask], T))
        thr = _threshold(conf, pred == y[fit_mask], target)["threshold"]
        folds.append({"temperature": T, "threshold": thr, "fit_reads": int(fit_mask.sum()),
                      "held_out": _precision_at(lp[test], y[test], T, thr)})
    return folds


_REQUIRED = {"temperature": (int, float), "threshold": (int, float, type(None)),
             "target_precision": (int, float), "ece_before": (int, float), "ece_after": (int, float),
             "fitted_on": (str,), "num_reads": (int,)}


def validate_calibration(obj: Any, source: str = "calibration") -> dict[str, Any]:
    """Check the schema of a calibration dict; returns it.

    Raises:
        CalibrationError: a key is missing or has the wrong type or range.
    """
    if not isinstance(obj, dict):
        raise CalibrationError(f"{source}: expected a JSON object")
    for key, types in _REQUIRED.items():
        if key not in obj or isinstance(obj[key], bool) or not isinstance(obj[key], types):
            raise CalibrationError(f"{source}: '{key}' missing or not {'/'.join(t.__name__ for t in types)}")
    T = obj["temperature"]
    if not (math.isfinite(T) and T > 0):
        raise CalibrationError(f"{source}: temperature {T} is not a positive number")
    for key in ("threshold", "pair_threshold"):
        t = obj.get(key)
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1):
            raise CalibrationError(f"{source}: {key} {t!r} is not a probability in [0, 1] or null")
    if not 0 < obj["target_precision"] <= 1:
        raise CalibrationError(f"{source}: target_precision {obj['target_precision']} is not in (0, 1]")
    return obj


def read_calibration(path: str | Path) -> dict[str, Any] | None:
    """The validated calibration.json at ``path``; None if there is none.

    Raises:
        CalibrationError: the file is not JSON or does not fit the schema.
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"{path}: not readable JSON ({exc})") from None
    return validate_calibration(obj, str(path))


def write_calibration(path: str | Path, cal: dict[str, Any]) -> None:
    """Validate and write ``cal`` (temporary file and rename: a link at ``path`` is replaced, not followed)."""
    from train.metrics import write_json

    write_json(path, validate_calibration(cal, str(path)))
