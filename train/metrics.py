"""Classification metrics from a confusion matrix; JSON and a PNG plot.

Everything is computed from the (C, C) confusion matrix (rows: true label, columns:
prediction), so distributed evaluation only has to sum one small integer matrix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

__all__ = [
    "confusion_matrix",
    "metrics_from_confusion",
    "per_class_table",
    "format_per_class_table",
    "plot_confusion",
    "write_json",
]


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> np.ndarray:
    """(C, C) int64 counts; row = true label, column = predicted label."""
    labels = np.asarray(labels, dtype=np.int64)
    preds = np.asarray(preds, dtype=np.int64)
    flat = np.bincount(labels * num_classes + preds, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def metrics_from_confusion(cm: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1 and per-class precision/recall/F1 from a confusion matrix.

    Classes without validation reads are left out of the macro average (their recall is
    undefined); a class never predicted has precision 0.

    Returns:
        ``{"accuracy", "macro_f1", "num_reads", "precision", "recall", "f1", "support"}``;
        the last four are lists of length C (``None`` where undefined).
    """
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    total = int(cm.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, tp / np.maximum(support, 1), np.nan)
        precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), 0.0)
        denom = precision + recall
        f1 = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1), 0.0)
    present = support > 0
    f1 = np.where(present, f1, np.nan)
    macro_f1 = float(np.mean(f1[present])) if present.any() else 0.0

    def listed(a: np.ndarray) -> list[float | None]:
        return [None if np.isnan(x) else float(x) for x in a]

    return {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_f1": macro_f1,
        "num_reads": total,
        "precision": listed(np.where(present | (predicted > 0), precision, np.nan)),
        "recall": listed(recall),
        "f1": listed(f1),
        "support": [int(x) for x in support],
    }


def per_class_table(cm: np.ndarray, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per class: name, support, accuracy (recall), precision, F1."""
    m = metrics_from_confusion(cm)
    return [
        {"label": i, "name": str(name), "support": m["support"][i], "accuracy": m["recall"][i],
         "precision": m["precision"][i], "f1": m["f1"][i]}
        for i, name in enumerate(class_names)
    ]


def format_per_class_table(rows: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of :func:`per_class_table` rows (for logs and reports)."""

    def pct(x: float | None) -> str:
        return "   -  " if x is None else f"{100 * x:6.2f}"

    width = max([len(r["name"]) for r in rows] + [5])
    lines = [f"{'label':>5}  {'class':<{width}}  {'reads':>6}  {'acc%':>6}  {'prec%':>6}  {'F1%':>6}"]
    for r in rows:
        lines.append(f"{r['label']:>5}  {r['name']:<{width}}  {r['support']:>6}  {pct(r['accuracy'])}  "
                     f"{pct(r['precision'])}  {pct(r['f1'])}")
    return "\n".join(lines)


def plot_confusion(cm: np.ndarray, class_names: Sequence[str], path: str | Path, title: str = "") -> None:
    """Save a row-normalised confusion matrix as a PNG (matplotlib, Agg backend: no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, dtype=np.float64)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    n = len(class_names)
    size = max(5.0, 0.32 * n + 2.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    fontsize = 8 if n <= 30 else 5
    ax.set_xticklabels([str(c)[:28] for c in class_names], rotation=90, fontsize=fontsize)
    ax.set_yticklabels([str(c)[:28] for c in class_names], fontsize=fontsize)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (row-normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON via a temporary file and rename."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)  # a link planted at the temporary name is removed, not written through
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    tmp.replace(path)
