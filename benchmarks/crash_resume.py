"""Crash and resume at random kill points: ``kill -9`` the converter, ``--resume``, compare bytes.

Run: ``python benchmarks/crash_resume.py --trials 20 --seed 0 [--json]``

1. Simulates a small labeled input (``sample.simulate``, 25 species) and inserts a few bad
   records, so the quarantine is exercised too.
2. Converts it once, uninterrupted (``--jobs 2 --reads-per-shard small``): the reference,
   and its duration ``D``.
3. Each trial starts the same command in its own session and, after a random delay, sends
   SIGKILL to one of the targets below (drawn per trial). The delay is uniform within a
   window of the reference run, drawn per trial: start-up until its plan was written
   (1/4), first units in flight until its first shard (1/4), first shard to the end:
   shards landing and finalisation (1/2).

   * ``group`` (with ``--parallel threads``): the whole process group (the converter and
     its unit threads);
   * ``worker`` (with ``--parallel processes``): one pool worker only; the parent must then exit non-zero with a one-paragraph
     message and no traceback (or 0 if the worker had nothing left to do);
   * ``parent`` (with ``--parallel processes``): the parent only; its orphaned pool workers keep running, and the
     ``--resume`` that follows at once must not let them interfere.

   During every run (the killed one and the resumes) ``--out`` is polled: it must not exist,
   or hold ``manifest.json`` (the staging directory is renamed into place only when
   complete). At the kill, every published name ``shard-NNNNN.h5`` in staging must be a
   readable, complete shard (shards appear only by rename).
4. ``--resume`` is run (up to 3 times) until it succeeds; then every shard's sha256,
   ``manifest.json`` and ``quarantine.fa`` must equal the reference's byte for byte and no
   other file may be present.

Output: per trial the mode, the delay, where the kill landed (phase and shards present)
and the outcome; a summary with counts per mode and phase; exit 1 if any trial failed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psutil  # noqa: E402

import shards as fmt  # noqa: E402
from convert.pipeline import staging_dir  # noqa: E402
from readshard_bench.workdir import claim_workdir  # noqa: E402

MODES = ("group", "worker", "parent")
MODE_WEIGHTS = (0.6, 0.2, 0.2)
BAD_RECORDS = (
    b">not_the_seed_format\nACGTACGTACGT\n",
    b">lbl|999999||12|unknown/1\nACGTACGTACGT\n",
    b">lbl|17||12|digits/1\nACGT1234ACGT\n",
)


def make_input(directory: Path, fragments_per_species: int, seed: int) -> tuple[Path, Path]:
    """Simulated reads with a few bad records inserted at 1/3 and 2/3 of the file."""
    from sample.simulate import simulate

    info = simulate(directory / "sim", fragments_per_species=fragments_per_species, seed=seed, progress=False)
    data = Path(info["files"]["train"]).read_bytes()
    parts, start = [], 0
    for frac in (1 / 3, 2 / 3):
        cut = data.index(b"\n>", int(len(data) * frac)) + 1
        parts += [data[start:cut], *BAD_RECORDS]
        start = cut
    parts.append(data[start:])
    reads = directory / "reads.fa"
    reads.write_bytes(b"".join(parts))
    return reads, Path(info["files"]["mapping"])


def _cmd(reads: Path, mapping: Path, out: Path, reads_per_shard: int, jobs: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "convert", str(reads), "--mapping", str(mapping), "--out", str(out),
        "--jobs", str(jobs), "--reads-per-shard", str(reads_per_shard), "--no-progress", *extra,
    ]


def _visible_ok(out: Path) -> bool:
    # The staging dir is renamed to --out only after manifest.json is in it.
    return not out.exists() or (out / fmt.MANIFEST_NAME).is_file()


def _workers(pid: int) -> list[psutil.Process]:
    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    out = []
    for k in kids:
        try:
            if "popen_loky_posix" in " ".join(k.cmdline()):
                out.append(k)
        except psutil.Error:
            pass
    return out


def snapshot(out: Path) -> dict[str, Any]:
    """Where a run stands, from the files: phase and shard counts."""
    staging = staging_dir(out)
    if out.exists():
        return {"phase": "published", "shards": len(list(out.glob("shard-*.h5"))), "tmp": 0, "units": 0}
    if not staging.exists():
        return {"phase": "startup", "shards": 0, "tmp": 0, "units": 0}
    shards = len(list(staging.glob("shard-*.h5")))
    tmp = len(list(staging.glob(".shard-*.tmp")))
    units = len(list((staging / ".units").glob("u-*.json"))) if (staging / ".units").is_dir() else 0
    if (staging / fmt.MANIFEST_NAME).exists() or (staging / fmt.QUARANTINE_NAME).exists() or (
        shards and not (staging / ".units").exists()
    ):
        phase = "finalising"
    elif tmp:
        phase = "shard_write"
    elif shards:
        phase = "between_shards"
    elif (staging / "plan.json").exists():
        phase = "parsing"  # plan written, first units being parsed and tokenized
    else:
        phase = "setup"  # lock taken, max length being sampled
    return {"phase": phase, "shards": shards, "tmp": tmp, "units": units}


def _check_published_shards(out: Path) -> list[str]:
    """Every shard-NNNNN.h5 under its final name must be a complete shard."""
    staging = staging_dir(out)
    where = out if out.exists() else staging
    problems = []
    for p in sorted(where.glob("shard-*.h5")):
        try:
            fmt.read_shard_attrs(p)
        except fmt.FormatError as exc:
            problems.append(f"partial shard visible under its final name: {exc}")
    return problems


def run_polled(
    cmd: list[str], out: Path, log: Path, *, kill_at: float | None = None, mode: str = "group",
    timeout: float = 300.0, track_phases: bool = False,
) -> dict[str, Any]:
    """Run ``cmd`` in its own session, polling ``out``; optionally SIGKILL at ``kill_at`` s.

    With ``track_phases``, also record when each phase (see :func:`snapshot`) was first seen.
    """
    phases: dict[str, float] = {}
    with open(log, "wb") as logf:
        t0 = time.monotonic()
        proc = subprocess.Popen(
            cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
        violations: list[str] = []
        killed: dict[str, Any] | None = None
        while proc.poll() is None:
            now = time.monotonic() - t0
            if not _visible_ok(out):
                violations.append(f"{out} visible without manifest.json at {now:.3f} s")
            if track_phases:
                phases.setdefault(snapshot(out)["phase"], now)
            if kill_at is not None and killed is None and now >= kill_at:
                snap = snapshot(out)
                if mode == "group":
                    os.killpg(proc.pid, signal.SIGKILL)
                    killed = {"target": "group", **snap}
                elif mode == "parent":
                    os.kill(proc.pid, signal.SIGKILL)
                    killed = {"target": "parent", **snap}
                else:
                    workers = _workers(proc.pid)
                    if workers:
                        victim = random.Random(proc.pid).choice(workers)
                        try:
                            victim.send_signal(signal.SIGKILL)
                            killed = {"target": "worker", **snap}
                        except psutil.NoSuchProcess:
                            pass
            if now > timeout:
                os.killpg(proc.pid, signal.SIGKILL)
                violations.append(f"run did not finish in {timeout:.0f} s (hang)")
                break
            time.sleep(0.003)
        rc = proc.wait()
        elapsed = time.monotonic() - t0
    if not _visible_ok(out):
        violations.append(f"{out} visible without manifest.json after exit")
    text = log.read_text(errors="replace")
    return {"rc": rc, "seconds": elapsed, "killed": killed, "violations": violations, "log": text, "pgid": proc.pid,
            "phases": phases}


def _reap_session(pgid: int) -> None:
    # Stragglers of a killed session (idle orphaned pool workers live ~5 min otherwise).
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _digest(out: Path) -> dict[str, Any]:
    files = sorted(p.name for p in out.iterdir() if p.name != ".lock")
    return {
        "files": files,
        "shards": {p.name: fmt.file_sha256(p) for p in sorted(out.glob("shard-*.h5"))},
        "manifest": (out / fmt.MANIFEST_NAME).read_bytes(),
        "quarantine": (out / fmt.QUARANTINE_NAME).read_bytes(),
    }


def compare(out: Path, ref: dict[str, Any]) -> list[str]:
    """Differences between a finished dataset and the reference digest."""
    got = _digest(out)
    problems = []
    if got["files"] != ref["files"]:
        problems.append(f"files differ: {sorted(set(got['files']) ^ set(ref['files']))}")
    bad = [n for n in ref["shards"] if got["shards"].get(n) != ref["shards"][n]]
    if bad:
        problems.append(f"shard hashes differ: {bad}")
    if got["manifest"] != ref["manifest"]:
        problems.append("manifest.json bytes differ")
    if got["quarantine"] != ref["quarantine"]:
        problems.append("quarantine.fa bytes differ")
    return problems


def run_trials(
    trials: int, seed: int, workdir: Path, *, fragments_per_species: int = 200,
    reads_per_shard: int = 500, jobs: int = 2, modes: tuple[str, ...] | None = None,
    log=print,
) -> dict[str, Any]:
    """Reference conversion, then ``trials`` kill/resume trials; returns the summary."""
    rng = random.Random(seed)
    reads, mapping = make_input(workdir, fragments_per_species, seed)
    ref_out = workdir / "ref"
    ref_run = run_polled(_cmd(reads, mapping, ref_out, reads_per_shard, jobs), ref_out, workdir / "ref.log",
                         track_phases=True)
    if ref_run["rc"] != 0:
        raise RuntimeError(f"reference conversion failed:\n{ref_run['log']}")
    duration = ref_run["seconds"]
    # Start-up (imports, lock, max-length sample, pool start) takes much of a small run, so
    # the delay is drawn from three windows: start-up, first units in flight, shards landing
    # and finalisation (half the trials).
    ph = ref_run["phases"]
    plan_t = min(ph.get("parsing", 0.0), duration)
    shard_t = min([ph[k] for k in ("shard_write", "between_shards", "finalising") if k in ph] + [duration])
    windows = ((0.0, plan_t), (plan_t, shard_t), (shard_t, duration))
    ref = _digest(ref_out)
    n_shards = len(ref["shards"])
    results = []
    for t in range(trials):
        mode = modes[t % len(modes)] if modes else rng.choices(MODES, MODE_WEIGHTS)[0]
        delay = rng.uniform(*rng.choices(windows, (0.25, 0.25, 0.5))[0])
        out = workdir / f"out-{t}"
        # Killing "one worker" or "the parent only" needs worker processes; group kills run the
        # units on threads (forced: the small units here would pick processes), so both
        # executors are killed at random moments.
        cmd = _cmd(reads, mapping, out, reads_per_shard, jobs,
                   "--parallel", "processes" if mode in ("worker", "parent") else "threads")
        first = run_polled(cmd, out, workdir / f"t{t}-0.log", kill_at=delay, mode=mode)
        problems = list(first["violations"])
        problems += _check_published_shards(out)
        if mode == "worker" and first["killed"] is not None:
            # The parent outlives its worker: a clean, explained, non-zero exit (or 0 when
            # the worker had nothing left to do), never a traceback or a hang.
            if "Traceback" in first["log"]:
                problems.append(f"traceback after a worker was killed:\n{first['log'][-2000:]}")
            if first["rc"] not in (0, 2) or (first["rc"] == 2 and "worker process died" not in first["log"]):
                problems.append(f"parent exit {first['rc']} after a worker kill: {first['log'][-500:]}")
        if mode != "parent":
            _reap_session(first["pgid"])  # in parent mode the orphans are left to the resume
        if first["killed"] is None and first["rc"] != 0:
            problems.append(f"run exited {first['rc']} without being killed: {first['log'][-500:]}")
        resumes = 0
        while not (out / fmt.MANIFEST_NAME).is_file() and resumes < 3:
            resumes += 1
            r = run_polled([*cmd, "--resume"], out, workdir / f"t{t}-{resumes}.log")
            problems += r["violations"]
            if r["rc"] != 0:
                problems.append(f"resume {resumes} exited {r['rc']}: {r['log'][-800:]}")
        _reap_session(first["pgid"])
        if (out / fmt.MANIFEST_NAME).is_file():
            problems += compare(out, ref)
        else:
            problems.append("no dataset after 3 resumes")
        where = first["killed"] or {"target": "none (finished first)", **snapshot(out)}
        row = {
            "trial": t, "mode": mode, "delay_s": round(delay, 3), "first_rc": first["rc"],
            "kill_phase": where["phase"] if first["killed"] else "not_killed",
            "shards_at_kill": where["shards"], "tmp_at_kill": where["tmp"], "resumes": resumes,
            "lock_left_in_out": (out / ".lock").exists(), "ok": not problems, "problems": problems,
        }
        results.append(row)
        log(
            f"trial {t:3d} {mode:6s} kill at {delay:6.3f}s phase {row['kill_phase']:14s} "
            f"shards {row['shards_at_kill']:3d}/{n_shards} first rc {first['rc']:4d} resumes {resumes} "
            f"{'OK' if row['ok'] else 'FAIL: ' + '; '.join(problems)[:400]}"
        )
        shutil.rmtree(out, ignore_errors=True)
    return {
        "trials": trials,
        "seed": seed,
        "reference": {"seconds": round(duration, 3), "shards": n_shards,
                      "phases_s": {k: round(v, 3) for k, v in ref_run["phases"].items()},
                      "records": json.loads((ref_out / fmt.REPORT_NAME).read_text())["records_in"]},
        "all_equal": all(r["ok"] for r in results),
        "failed": [r["trial"] for r in results if not r["ok"]],
        "by_mode": dict(Counter(r["mode"] for r in results)),
        "by_phase": dict(Counter(r["kill_phase"] for r in results)),
        "shards_at_kill": sorted(r["shards_at_kill"] for r in results if r["kill_phase"] != "not_killed"),
        "resumes": dict(Counter(r["resumes"] for r in results)),
        "results": results,
    }


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fragments-per-species", type=int, default=200, help="input size (2 reads per fragment, 25 species)")
    p.add_argument("--reads-per-shard", type=int, default=500)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--workdir", help="keep files here (default: a temporary directory, removed)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = p.parse_args(argv)
    tmp = None
    if args.workdir:
        # Claimed (new, empty or this bench's own) before any trial output in it is deleted.
        workdir = claim_workdir(args.workdir)
    else:
        tmp = tempfile.mkdtemp(prefix="crash-resume-")
        workdir = Path(tmp)
    try:
        summary = run_trials(args.trials, args.seed, workdir, fragments_per_species=args.fragments_per_species,
                             reads_per_shard=args.reads_per_shard, jobs=args.jobs,
                             log=(lambda *_: None) if args.json else print)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps({k: v for k, v in summary.items()}, indent=1))
    else:
        print(
            f"{summary['trials']} trials (seed {summary['seed']}), reference {summary['reference']['records']:,} records, "
            f"{summary['reference']['shards']} shards in {summary['reference']['seconds']} s "
            f"(phases first seen at {summary['reference']['phases_s']}); "
            f"{summary['trials'] - summary['by_phase'].get('not_killed', 0)} killed; "
            f"kills by mode {summary['by_mode']}, by phase {summary['by_phase']}; "
            f"shards present at kill {summary['shards_at_kill']}; resumes needed {summary['resumes']}; "
            f"all equal to the reference: {summary['all_equal']}"
        )
    return 0 if summary["all_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
