"""The loader bench's report: ratios to the numpy limit, the performance targets, headroom
over the model, and the human-readable table."""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np

from readshard_bench.competitors import COMPETITORS
from readshard_bench.data import BenchConfig
from readshard_bench.measure import BATCH_SIZE, Measurement, log

__all__ = ["HEADROOM_WARN", "TARGETS", "UNSUPPORTED", "format_report", "machine_info", "package"]

# The loader's performance targets: name -> (description, threshold).
TARGETS = {
    "batched_vs_memmap_limit": ("readshard_batched >= 50% of numpy_memmap_limit", 0.5),
    "batched_vs_hf_datasets": ("readshard_batched >= 10x hf_datasets", 10.0),
    "batched_vs_pyfastx": ("readshard_batched >= 100x pyfastx_on_the_fly", 100.0),
    "dataloader_2_workers": ("DataLoader, 2 workers, batch 256 >= 300k reads/s", 300_000.0),
    "open_time_s": ("open the dataset in < 1 s (target stated for 100 M reads)", 1.0),
    "open_rss_mb": ("open the dataset in < 300 MB RSS (target stated for 100 M reads)", 300.0),
}
HEADROOM_WARN = 1.5
# Competitors never run here, and why.
UNSUPPORTED = {"mosaicml_streaming": "not installed: needs torchvision and a CUDA torch (torch>=2.14) "
               "over the pinned CPU torch 2.13"}


def machine_info() -> dict[str, Any]:
    """CPU, RAM, load and library versions of this machine."""
    import h5py
    import torch

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "h5py": h5py.__version__,
    }
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    for mod in ("datasets", "pyfastx", "tokenizers"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:
            info[mod] = None
    return info


def _ratios(rates: dict[str, float]) -> tuple[dict[str, float], dict[str, float]]:
    limit = rates.get("numpy_memmap_limit")
    batched = rates.get("readshard_batched")
    to_limit = {k: v / limit for k, v in rates.items() if limit} if limit else {}
    speedup = {k: batched / v for k, v in rates.items() if batched and v > 0} if batched else {}
    return to_limit, speedup


def _targets(rates: dict[str, float], scale: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def add(key: str, value: float | None, higher_is_better: bool = True) -> None:
        if value is None:
            return
        desc, thr = TARGETS[key]
        ok = value >= thr if higher_is_better else value < thr
        out[key] = {"target": desc, "value": round(float(value), 4), "threshold": thr, "pass": bool(ok)}

    b = rates.get("readshard_batched")
    if b and rates.get("numpy_memmap_limit"):
        add("batched_vs_memmap_limit", b / rates["numpy_memmap_limit"])
    if b and rates.get("hf_datasets"):
        add("batched_vs_hf_datasets", b / rates["hf_datasets"])
    if b and rates.get("pyfastx_on_the_fly"):
        add("batched_vs_pyfastx", b / rates["pyfastx_on_the_fly"])
    add("dataloader_2_workers", rates.get("readshard_dataloader_2_workers"))
    if scale:
        add("open_time_s", scale.get("open_s"), higher_is_better=False)
        add("open_rss_mb", scale.get("open_rss_delta_mb"), higher_is_better=False)
    return out


def _headroom(cfg: BenchConfig, rates: dict[str, float], notes: list[str]) -> dict[str, Any] | None:
    if not cfg.model_rate:
        return None
    dl = rates.get("readshard_dataloader_2_workers")
    if not dl:
        return None
    h = dl / cfg.model_rate
    res = {"model_reads_per_s": cfg.model_rate, "dataloader_reads_per_s": dl, "headroom": h,
           "warn": h < HEADROOM_WARN}
    if h < HEADROOM_WARN:
        msg = (f"WARNING: loader headroom {h:.2f}x over the model's {cfg.model_rate:,.0f} reads/s is below "
               f"{HEADROOM_WARN}x: the GPU may wait on data (more workers, bigger batches, or the mmap layout)")
        notes.append(msg)
        log(msg)
    return res


def package(cfg: BenchConfig, mode: str, dataset: dict[str, Any], results: dict[str, Measurement],
             extras: dict[str, Measurement], notes: list[str], scale: dict[str, Any] | None = None,
             quality: dict[str, Any] | None = None, machine: dict[str, Any] | None = None,
             skipped: dict[str, str] | None = None) -> dict[str, Any]:
    """The JSON report of one run: rates, ratios, memory, targets, notes and what was skipped."""
    rates = {k: results[k].rate for k in COMPETITORS if k in results}
    to_limit, speedup = _ratios(rates)
    report: dict[str, Any] = {
        "mode": mode,
        "dataset": dataset,
        "batch_size": BATCH_SIZE,
        "samples_per_s": {k: round(v, 1) for k, v in rates.items()},
        "ratio_to_numpy_memmap_limit": {k: round(v, 4) for k, v in to_limit.items()},
        "readshard_batched_speedup_over": {k: round(v, 3) for k, v in speedup.items() if k != "readshard_batched"},
        "peak_rss_mb": {k: round(m.peak_rss_mb, 1) for k, m in results.items()},
        "peak_rss_delta_mb": {k: round(m.delta_mb, 1) for k, m in results.items()},
        "peak_anon_rss_mb": {k: round(m.peak_anon_mb, 1) for k, m in results.items()},
        "samples_per_cpu_s": {k: round(m.per_cpu_s, 1) for k, m in {**results, **extras}.items()},
        "load_avg_at_end": [round(x, 2) for x in os.getloadavg()],
        "seconds_measured": {k: round(m.seconds, 2) for k, m in results.items()},
        "warm_read_s": {k: round(m.warm_s, 3) for k, m in results.items()},
        "extra_samples_per_s": {k: round(m.rate, 1) for k, m in extras.items()},
        "details": {k: m.extra for k, m in {**results, **extras}.items() if m.extra},
        "shuffle_quality": quality or {},
        "targets": _targets(rates, scale),
        "machine": machine or machine_info(),
        "notes": notes,
        "skipped": {**(skipped or {}), **UNSUPPORTED},
    }
    if scale:
        report["scale"] = scale
    headroom = _headroom(cfg, rates, notes)
    if headroom:
        report["headroom"] = headroom
    return report



def _fmt_rate(x: float) -> str:
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.1f} k"


def format_report(rep: dict[str, Any]) -> str:
    """The human-readable table(s) of a report."""
    m = rep["machine"]
    ds = rep["dataset"]
    lines = [
        f"readshard loader benchmark ({rep['mode']}): {ds['num_reads']:,} reads x L={ds['max_length']} int16, "
        f"{ds.get('num_shards', '?')} shards, batch {rep['batch_size']}",
        f"machine: {m['cpu_count']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM, load avg at start "
        f"{m['load_avg_at_start']}; python {m['python']}, torch {m['torch']}, numpy {m['numpy']}, "
        f"h5py {m['h5py']}, datasets {m.get('datasets')}, pyfastx {m.get('pyfastx')}; load avg at end "
        f"{rep['load_avg_at_end']}",
        "files read right before each measurement (page cache is evicted after ~30 s idle here)",
        "",
        f"{'competitor':<32}{'samples/s':>11}{'/ limit':>9}{'batched /':>11}{'per CPU-s':>11}{'peak RSS':>10}{'+RSS':>9}",
    ]
    sps, lim, sp = rep["samples_per_s"], rep["ratio_to_numpy_memmap_limit"], rep["readshard_batched_speedup_over"]
    for k in COMPETITORS:
        if k not in sps:
            continue
        spx = f"{sp[k]:.2f}x" if k in sp else "-"
        lines.append(
            f"{k:<32}{_fmt_rate(sps[k]):>11}{lim.get(k, float('nan')):>9.3f}{spx:>11}"
            f"{_fmt_rate(rep['samples_per_cpu_s'][k]):>11}{rep['peak_rss_mb'][k]:>7.0f} MB"
            f"{rep['peak_rss_delta_mb'][k]:>6.0f} MB"
        )
    if rep["extra_samples_per_s"]:
        lines.append("extra: " + ", ".join(f"{k} {_fmt_rate(v)}/s" for k, v in rep["extra_samples_per_s"].items()))
    det = rep["details"]
    if "pyfastx_on_the_fly" in det:
        d = det["pyfastx_on_the_fly"]
        lines.append(f"pyfastx index build (not in its rate): {d['index_build_s']:.2f} s ({_fmt_rate(d['index_reads_per_s'])} reads/s)")
    if "readshard_dataloader_2_workers" in det:
        lines.append(f"DataLoader start-up + 20 warm-up batches (not in its rate): "
                     f"{det['readshard_dataloader_2_workers']['startup_plus_warmup_s']:.2f} s")
    for name, q in rep["shuffle_quality"].items():
        if isinstance(q, dict):
            lines.append(f"shuffle quality {name}: mean per-batch class entropy {q['mean_entropy']:.3f} bits vs "
                         f"full shuffle {q['full_shuffle_entropy']:.3f} (ratio {q['ratio']:.3f})")
    sc = rep.get("scale")
    if sc:
        lines.append(f"open ShardDataset ({sc['num_reads']:,} reads, {sc['num_shards']} shards, fresh process): "
                     f"{sc['open_s'] * 1e3:.1f} ms, RSS +{sc['open_rss_delta_mb']:.1f} MB "
                     f"({sc['rss_before_open_mb']:.0f} -> {sc['rss_after_open_mb']:.0f} MB incl. torch); "
                     f"first batch spread over all shards {sc['first_batch_spread_over_all_shards_s'] * 1e3:.0f} ms")
        if sc["cold_samples_per_s"]:
            lines.append("cold (files evicted first; tokens " + (">" if sc["data_exceeds_ram"] else "<=") +
                         " RAM): " + ", ".join(f"{k} {_fmt_rate(v)}/s ({sc['cold_disk_kb_per_sample'][k]:,.1f} disk KB/sample)"
                                               for k, v in sc["cold_samples_per_s"].items()))
    elif "open" in ds:
        o = ds["open"]
        lines.append(f"open ShardDataset (fresh process): {o['open_s'] * 1e3:.1f} ms, RSS +{o['open_rss_delta_mb']:.1f} MB")
    if rep.get("headroom"):
        h = rep["headroom"]
        lines.append(f"headroom over the model ({h['model_reads_per_s']:,.0f} reads/s): {h['headroom']:.2f}x"
                     + ("  WARNING: below 1.5x" if h["warn"] else ""))
    if rep.get("skipped"):
        lines.append("skipped: " + "; ".join(f"{k} ({v})" for k, v in rep["skipped"].items()))
    lines.append("")
    lines.append("performance targets:")
    for t in rep["targets"].values():
        lines.append(f"  [{'PASS' if t['pass'] else 'FAIL'}] {t['target']}: {t['value']:,.3f}")
    lines.append("")
    lines.append("notes:")
    lines.extend(f"  - {n}" for n in rep["notes"])
    return "\n".join(lines)
