"""PNG plots of an evaluation (matplotlib, Agg: no display) and one self-contained
``report.html`` (images embedded as base64 data URIs; no script, stylesheet or link that
would need the network)."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["plot_risk_coverage", "plot_class_f1", "plot_reliability", "write_report"]


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    # a temporary name and rename: a link planted at the final name is replaced, not written through
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fig.savefig(tmp, dpi=100, format="png")
    _plt().close(fig)
    tmp.replace(path)


def plot_risk_coverage(curves: Mapping[str, Mapping[str, Any]], path: str | Path, target: float) -> None:
    """Precision of kept reads vs coverage, one line per curve (``{"coverage", "precision",
    "chosen": point | None, "applied": point | None}``, a point being ``{"coverage",
    "precision"}``: o where the target is reached on this data, x the threshold applied),
    with the target as a dashed line."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for label, c in curves.items():
        ax.plot(np.asarray(c["coverage"]), np.asarray(c["precision"]), label=label)
        for key, marker in (("chosen", "o"), ("applied", "x")):
            pt = c.get(key)
            if pt and pt.get("precision") is not None:
                ax.plot([pt["coverage"]], [pt["precision"]], marker, color="k", ms=7)
    ax.axhline(target, ls="--", color="grey", lw=1, label=f"target {target:g}")
    ax.set_xlabel("coverage (fraction of reads classified)")
    ax.set_ylabel("precision of classified reads")
    ax.set_xlim(0, 1.01)
    ax.set_title("risk-coverage (o: target reached here, x: threshold applied)", fontsize=10)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    _save(fig, Path(path))


def plot_class_f1(names: Sequence[str], series: Mapping[str, Sequence[float | None]], path: str | Path) -> None:
    """Horizontal bars of per-class F1, one bar group per class, one colour per series."""
    plt = _plt()
    n = len(names)
    fig, ax = plt.subplots(figsize=(6.5, max(2.5, 0.28 * n * max(1, len(series)) ** 0.5 + 1.2)))
    width = 0.8 / max(1, len(series))
    y = np.arange(n)
    for i, (label, vals) in enumerate(series.items()):
        v = np.array([np.nan if x is None else x for x in vals], dtype=np.float64)
        ax.barh(y + i * width, v, height=width, label=label)
    ax.set_yticks(y + width * (len(series) - 1) / 2)
    ax.set_yticklabels([str(s)[:32] for s in names], fontsize=7 if n > 30 else 9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.set_title("per-class F1")
    # below the axes: inside, it would cover the bars of the last classes
    fig.legend(fontsize=8, loc="lower center", ncol=max(1, len(series)), frameon=False)
    fig.tight_layout(rect=(0, 0.35 / fig.get_figheight(), 1, 1))
    _save(fig, Path(path))


def plot_reliability(bins: Mapping[str, Mapping[str, Any]], path: str | Path) -> None:
    """Reliability diagram: accuracy vs mean confidence per bin, one line per temperature."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    for label, b in bins.items():
        used = np.asarray(b["count"]) > 0
        ax.plot(np.asarray(b["confidence"], dtype=float)[used], np.asarray(b["accuracy"], dtype=float)[used],
                "o-", label=label, ms=3)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title("reliability (15 bins)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, Path(path))


def _cell(v: Any, identifier: bool = False) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4f}"
    if isinstance(v, int) and not identifier:  # counts get separators, ids do not
        return f"{v:,}"
    return html.escape(str(v))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    ids = [h == "label" or h.endswith("id") for h in header]
    body = "".join("<tr>" + "".join(f"<td>{_cell(v, i)}</td>" for v, i in zip(r, ids)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


_STYLE = ("body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin:.5em 0 1.5em}"
          "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#eee}"
          "td:first-child,th:first-child{text-align:left}img{max-width:100%;display:block;margin:.5em 0 1.5em}")


def write_report(path: str | Path, title: str, sections: Sequence[tuple[str, Sequence[tuple[str, Any]]]],
                 images: Mapping[str, str | Path]) -> None:
    """Write one self-contained HTML page.

    Args:
        path: where to write ``report.html``.
        title: page title.
        sections: ``(heading, parts)``; a part is ``("p", text)``, ``("kv", [(key, value), ...])``
            or ``("table", (header, rows))``.
        images: caption -> PNG file, embedded as ``data:image/png;base64``.
    """
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    for heading, parts in sections:
        out.append(f"<h2>{html.escape(heading)}</h2>")
        for kind, content in parts:
            if kind == "p":
                out.append(f"<p>{html.escape(str(content))}</p>")
            elif kind == "kv":
                out.append(_table(("", "value"), [(k, v) for k, v in content]))
            else:
                out.append(_table(*content))
    out.append("<h2>Plots</h2>")
    for caption, png in images.items():
        data = base64.b64encode(Path(png).read_bytes()).decode("ascii")
        out.append(f"<h3>{html.escape(caption)}</h3><img alt='{html.escape(caption, quote=True)}' "
                   f"src='data:image/png;base64,{data}'>")
    out.append("</body></html>\n")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.write_text("".join(out), encoding="utf-8")
    tmp.replace(path)
