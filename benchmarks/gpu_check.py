"""GPU check of the RTX 4090 training configs: does each fit in 24 GB, how fast does it train,
does the loader keep up.

    python benchmarks/gpu_check.py [--json] [--steps 20] [--warmup 3] [--out-json PATH]
    python benchmarks/gpu_check.py --tiny --json     # the same path on CPU, tiny shapes (a test runs it)
    benchmarks/gpu_check.sh                          # the one-shot run for a machine with a GPU

For each ``configs/rtx4090_*.yaml``, in a fresh process of its own (clean CUDA peak counters,
and an out-of-memory in one config does not hide the others):

1. random weights of the published shapes of the config's ``model.pretrained`` (METAGENE-1:
   Llama 7B; DNABERT-2-117M: built as a BERT of its sizes, see ``train/model.py``) are built
   from a config dict, in the dtype the config loads them in (``model.load_dtype``), and
   written with ``save_pretrained`` to a temporary directory: no hub download, ever;
2. ``train.loop.run`` - the code ``make train`` runs: the same loader, precision, LoRA and
   gradient checkpointing - trains from that directory through ``model.pretrained`` (so the
   configs' ``from_pretrained`` path runs too) on the embedded sample converted with the
   config's tokenizer (``data/sample-metagene1``, ``data/sample-dnabert2`` if present, else
   simulated and converted by the project's converter in the temporary directory);
3. after ``--warmup`` optimizer steps, ``--steps`` more are timed through the loop's
   ``on_step`` hook (CUDA synchronised at both ends), then the run stops there.

Reported per config: ``name``, ``peak_memory_gib`` (``torch.cuda.max_memory_allocated`` and
``max_memory_reserved`` over the whole run; ``null`` on CPU), ``train_reads_per_s`` and
``loader_wait_fraction`` over the timed steps, ``fits_24gib`` (peak reserved <= 22 GiB,
leaving room for the CUDA context on a 24 GB card; ``null`` on CPU), and what was measured.
A data-center GPU's memory figures carry over to a 4090; its speed does not.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(REPO))

__all__ = ["PUBLISHED_SHAPES", "FITS_GIB", "StepTimer", "main"]

FITS_GIB = 22.0  # of a 24 GB (22.5 GiB) card, leaving room for the CUDA context and cuBLAS workspaces
GIB = float(1 << 30)

# The published architectures, by the hub id the configs name (their hub config.json files).
PUBLISHED_SHAPES: dict[str, dict[str, Any]] = {
    "metagene-ai/METAGENE-1": {  # Llama 7B, vocab 1024
        "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
        "num_key_value_heads": 32, "head_dim": 128, "max_position_embeddings": 512, "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
    },
    "zhihan1996/DNABERT-2-117M": {  # BERT-base sizes, vocab 4096 (ALiBi and GEGLU live in its hub code)
        "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
        "max_position_embeddings": 512, "type_vocab_size": 2,
    },
}


def sample_dir(tokenizer: str) -> Path:
    """Where ``make convert SAMPLE=... CONVERT_FLAGS="--tokenizer T"`` puts the sample for ``tokenizer``."""
    return REPO / "data" / f"sample-{tokenizer.replace('-', '')}"


# ---------------------------------------------------------------------------------------------
# Parent: data, one child process per config, the report


def _run_tool(cmd: Sequence[str], env: Mapping[str, str]) -> None:
    proc = subprocess.run(list(cmd), cwd=REPO, env=dict(env), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd[1:])}` failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")


def prepare_data(tokenizers: set[str], work: Path, *, tiny: bool, jobs: int,
                 env: Mapping[str, str]) -> dict[str, tuple[Path, Path]]:
    """Train/val datasets of the embedded sample for each tokenizer: the converted sample if it
    is there (full runs), else simulated and converted with the project's converter under ``work``."""
    found: dict[str, tuple[Path, Path]] = {}
    reads: Path | None = None
    for tok in sorted(tokenizers):
        existing = sample_dir(tok)
        if not tiny and all((existing / s / "manifest.json").is_file() for s in ("train", "val")):
            found[tok] = (existing / "train", existing / "val")
            continue
        if reads is None:
            reads = work / "reads"
            _run_tool([sys.executable, "-m", "sample.simulate", "--out", str(reads), "--quiet",
                       "--fragments-per-species", "40" if tiny else "1000"], env)
        for split in ("train", "val"):
            print(f"gpu_check: converting the sample's {split} reads with {tok}", file=sys.stderr)
            _run_tool([sys.executable, "-m", "convert", str(reads / f"{split}.fa"), "--mapping",
                       str(reads / "mapping.tsv"), "--config", str(REPO / "configs" / "convert_sample.yaml"),
                       "--tokenizer", tok, "--jobs", str(jobs), "--no-progress",
                       "--out", str(work / f"sample-{tok}" / split)], env)
        found[tok] = (work / f"sample-{tok}" / "train", work / f"sample-{tok}" / "val")
    return found


def _child_command(args: argparse.Namespace, config: Path, data: tuple[Path, Path], work: Path,
                   result: Path) -> list[str]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(config), "--train", str(data[0]),
           "--val", str(data[1]), "--work", str(work), "--result", str(result),
           "--steps", str(args.steps), "--warmup", str(args.warmup)]
    for flag in ("batch_size", "grad_accum", "num_workers"):
        if getattr(args, flag) is not None:
            cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    return cmd + (["--tiny"] if args.tiny else [])


def run_config(args: argparse.Namespace, config: Path, data: tuple[Path, Path], work: Path,
               env: Mapping[str, str]) -> dict[str, Any]:
    """Run one config's check in a child process (its own session, killed whole on timeout)."""
    work.mkdir(parents=True)
    result = work / "result.json"
    print(f"gpu_check: {config.stem}: building random weights and training", file=sys.stderr)
    # The child's output goes to our stderr: progress stays visible, stdout stays JSON.
    proc = subprocess.Popen(_child_command(args, config, data, work, result), cwd=REPO, env=dict(env),
                            stdout=sys.stderr, start_new_session=True)
    try:
        code = proc.wait(timeout=args.config_timeout)
    except subprocess.TimeoutExpired:
        return {"name": config.stem, "config": _rel(config), "error": f"timed out after {args.config_timeout} s",
                "fits_24gib": None}
    finally:
        if proc.poll() is None:  # timeout, or we were told to stop: the child and its DataLoader workers go too
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if result.is_file():
        return json.loads(result.read_text())
    return {"name": config.stem, "config": _rel(config), "fits_24gib": None,
            "error": f"the check process exited with code {code} and no result (its output is above)"}


def _rel(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(REPO))
    return str(path)


def _gib(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _format_table(report: dict[str, Any]) -> str:
    lines = [f"device: {report['device']}" + (f" ({report['gpu_memory_gib']:.1f} GiB)"
                                               if report.get("gpu_memory_gib") else "")]
    head = (f"{'config':<22}{'params':>9}{'trainable':>11}{'reads/step':>12}{'alloc GiB':>11}{'reserved GiB':>14}"
            f"{'reads/s':>10}{'wait':>7}  fits 24 GiB")
    lines.append(head)
    for r in report["configs"]:
        if r.get("error"):
            lines.append(f"{r['name']:<22}error: {r['error']}")
            continue
        mem = r["peak_memory_gib"]
        fits = {True: "yes", False: "NO", None: "n/a (CPU)"}[r["fits_24gib"]]
        lines.append(f"{r['name']:<22}{r['model']['parameters'] / 1e6:>8.2f}M{r['model']['trainable_parameters'] / 1e6:>10.2f}M"
                     f"{r['reads_per_step']:>12}{_gib(mem['allocated']):>11}{_gib(mem['reserved']):>14}"
                     f"{r['train_reads_per_s']:>10.1f}{100 * r['loader_wait_fraction']:>6.1f}%  {fits}")
    return "\n".join(lines)


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["HF_HUB_OFFLINE"] = "1"  # belt and braces: the weights are local, nothing may be fetched
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return env


def _load_configs(paths: Sequence[Path], tiny: bool) -> list[tuple[Path, Any]]:
    from train.config import ConfigError, load_config

    out = []
    for path in paths:
        cfg = load_config(path)
        if not cfg.data.tokenizer:
            raise ConfigError(f"{path}: data.tokenizer is not set; the check converts the sample with it")
        if not tiny and cfg.model.pretrained not in PUBLISHED_SHAPES:
            raise ConfigError(f"{path}: model.pretrained {cfg.model.pretrained!r} has no published shapes here; "
                              f"known: {', '.join(PUBLISHED_SHAPES)}")
        out.append((path, cfg))
    return out


def parent(args: argparse.Namespace) -> int:
    """Check every config; print the report; 0 if every config ran, 1 if one failed, 2 for bad input."""
    import torch

    from train.config import ConfigError

    if not args.tiny and not torch.cuda.is_available():
        print("error: no CUDA device is visible to torch; the GPU check needs one. On a CPU machine run "
              "`python benchmarks/gpu_check.py --tiny` (the same path with tiny shapes).", file=sys.stderr)
        return 2
    paths = [Path(p) for p in args.configs] if args.configs else sorted((REPO / "configs").glob("rtx4090_*.yaml"))
    try:
        configs = _load_configs(paths, args.tiny)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not configs:
        print("error: no configs to check (configs/rtx4090_*.yaml is empty; name some with --configs)", file=sys.stderr)
        return 2
    env = _child_env()
    # `timeout` sends TERM: exit through the finally blocks (children killed, temp dir removed).
    signal.signal(signal.SIGTERM, lambda signum, _frame: sys.exit(128 + signum))
    work = Path(tempfile.mkdtemp(prefix="readshard-gpu-check-", dir=args.workdir))
    report: dict[str, Any] = {"device": None, "tiny": args.tiny, "steps": args.steps, "warmup_steps": args.warmup,
                              "fits_limit_gib": FITS_GIB, "torch": torch.__version__, "configs": []}
    try:
        jobs = 1 if args.tiny else max(1, min(8, os.cpu_count() or 1))
        data = prepare_data({c.data.tokenizer for _, c in configs}, work, tiny=args.tiny, jobs=jobs, env=env)
        for i, (path, cfg) in enumerate(configs):
            res = run_config(args, path, data[cfg.data.tokenizer], work / f"config-{i}", env)
            report["configs"].append(res)
            report["device"] = report["device"] or res.get("device")
            report["gpu_memory_gib"] = report.get("gpu_memory_gib") or res.get("gpu_memory_gib")
            if args.out_json:  # after every config: a later timeout keeps what was measured
                Path(args.out_json).write_text(json.dumps(report, indent=2) + "\n")
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep_work:
            print(f"gpu_check: kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)  # created above by mkdtemp, never a user path
    report["device"] = report["device"] or ("cpu" if args.tiny else torch.cuda.get_device_name(0))
    print(json.dumps(report, indent=2) if args.json else _format_table(report))
    return 1 if any(r.get("error") for r in report["configs"]) else 0


# ---------------------------------------------------------------------------------------------
# Child: one config


@dataclasses.dataclass
class StepTimer:
    """``on_step`` hook of :func:`train.loop.run`: marks the end of warm-up and of the timed
    steps (synchronising CUDA so queued kernels are counted), reads the peak memory, stops."""

    warmup: int
    steps: int
    device: Any  # torch.device
    start: tuple[float, float, float] | None = None
    end: tuple[float, float, float] | None = None
    memory: dict[str, float | None] = dataclasses.field(default_factory=lambda: {"allocated": None, "reserved": None})

    def __call__(self, step: int, counters: Mapping[str, float]) -> bool:
        if step not in (self.warmup, self.warmup + self.steps):
            return False
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        mark = (time.perf_counter(), float(counters["reads"]), float(counters["wait_s"]))
        if step == self.warmup:
            self.start = mark
            return False
        self.end = mark
        self.memory = peak_memory(self.device)
        return True

    def summary(self) -> dict[str, float]:
        """Reads/s, loader wait fraction and seconds per step over the timed steps."""
        if self.start is None or self.end is None:
            raise RuntimeError("the run stopped before the timed steps ended")
        seconds = max(self.end[0] - self.start[0], 1e-9)
        return {"train_reads_per_s": (self.end[1] - self.start[1]) / seconds,
                "loader_wait_fraction": min(1.0, (self.end[2] - self.start[2]) / seconds),
                "seconds_per_step": seconds / self.steps, "timed_seconds": seconds}


def peak_memory(device: Any) -> dict[str, float | None]:
    """Peak CUDA memory of this process in GiB (``None`` on CPU)."""
    import torch

    if device.type != "cuda":
        return {"allocated": None, "reserved": None}
    return {"allocated": torch.cuda.max_memory_allocated(device) / GIB,
            "reserved": torch.cuda.max_memory_reserved(device) / GIB}


@contextlib.contextmanager
def _default_dtype(dtype: Any) -> Iterator[None]:
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def save_random_weights(arch: str, shapes: Mapping[str, Any], spec: Any, dtype: str, device: Any,
                        directory: Path) -> Path:
    """Random weights of ``shapes`` (built in ``dtype`` on ``device``), written with ``save_pretrained``."""
    import torch

    from train.config import ModelConfig
    from train.model import build_model

    with _default_dtype(getattr(torch, dtype)), torch.device(device):
        model = build_model(ModelConfig(arch=arch, config=dict(shapes)), spec)
    model.save_pretrained(directory)
    del model
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return directory


def _parameter_counts(cfg: Any, shapes: Mapping[str, Any], spec: Any) -> tuple[int, int]:
    """(total, trainable) of the configured model, counted on the meta device (no memory)."""
    import torch

    from train.model import build_model, count_parameters

    with torch.device("meta"):
        model = build_model(dataclasses.replace(cfg.model, pretrained=None, config=dict(shapes)), spec)
    return count_parameters(model)


def _overrides(args: argparse.Namespace, cfg: Any, model_dir: Path, device: Any) -> dict[str, Any]:
    o: dict[str, Any] = {
        "data.train": args.train, "data.val": args.val, "out": str(Path(args.work) / "out"),
        "model.pretrained": str(model_dir),
        # the configured schedule, stopped by the hook after the timed steps
        "train.max_steps": max(cfg.train.max_steps, args.warmup + args.steps + 1),
        "train.eval_every": 0, "train.checkpoint_every": 0, "train.progress": False, "train.baseline": False,
        "train.device": device.type,
    }
    if args.tiny:
        o.update({"train.batch_size": 8, "data.num_workers": 1, "train.threads": 1})
    for flag, key in (("batch_size", "train.batch_size"), ("grad_accum", "train.grad_accum"),
                      ("num_workers", "data.num_workers")):
        if getattr(args, flag) is not None:
            o[key] = getattr(args, flag)
    return o


def worker(args: argparse.Namespace) -> int:
    """Check one config (``--worker CONFIG``) and write its result to ``--result``."""
    import torch

    from shards import FormatError
    from loaders import ShardDataset
    from train.config import ConfigError, apply_overrides, load_config
    from train.loop import run
    from train.model import SMOKE_CONFIGS, DataSpec

    t0 = time.perf_counter()
    cfg = load_config(args.worker)
    device = torch.device("cpu") if args.tiny else torch.device("cuda", 0)
    ds = ShardDataset(args.train)
    spec = DataSpec(vocab_size=int(ds.tokenizer_info["vocab_size"]), pad_id=int(ds.pad_id),
                    num_labels=int(ds.num_classes), max_length=int(ds.max_length))
    base = SMOKE_CONFIGS[cfg.model.arch] if args.tiny else PUBLISHED_SHAPES[cfg.model.pretrained]
    shapes = {**base, **cfg.model.config}  # what from_pretrained builds: the config's overrides apply on top
    dtype = cfg.model.load_dtype or "float32"
    model_dir = save_random_weights(cfg.model.arch, shapes, spec, dtype, device, Path(args.work) / "weights")
    build_s = time.perf_counter() - t0
    total, trainable = _parameter_counts(cfg, shapes, spec)
    published = cfg.model.pretrained
    cfg = apply_overrides(cfg, _overrides(args, cfg, model_dir, device))
    before_gib = None
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)  # the weight building above is not training
        before_gib = torch.cuda.memory_allocated(device) / GIB  # ~0: nothing of it may stay on the GPU
    timer = StepTimer(args.warmup, args.steps, device)
    error, fits, timing = None, None, {}
    try:
        run(cfg, on_step=timer)
        timing = timer.summary()
    except torch.cuda.OutOfMemoryError as exc:
        error, fits = f"CUDA out of memory: {str(exc).splitlines()[0]}", False
        timer.memory = peak_memory(device)
    except (ConfigError, FormatError) as exc:
        error = str(exc)
    if device.type == "cuda" and error is None:
        fits = timer.memory["reserved"] <= FITS_GIB
    tc, mc = cfg.train, cfg.model
    result = {
        "name": Path(args.worker).stem, "config": _rel(Path(args.worker)),
        "device": "cpu" if device.type == "cpu" else torch.cuda.get_device_name(device),
        "gpu_memory_gib": None if device.type == "cpu" else torch.cuda.get_device_properties(device).total_memory / GIB,
        "model": {"arch": mc.arch, "stands_for": published, "random_weights": True, "shapes": dict(shapes),
                  "weights_dtype": dtype,
                  "parameters": total, "trainable_parameters": trainable,
                  "lora_r": mc.lora.r if mc.lora else None, "gradient_checkpointing": mc.gradient_checkpointing},
        "precision": "bf16" if device.type == "cuda" and tc.precision != "fp32" else "fp32",
        "batch_size": tc.batch_size, "grad_accum": tc.grad_accum, "reads_per_step": tc.batch_size * tc.grad_accum,
        "max_length": spec.max_length, "num_workers": cfg.data.num_workers,
        "warmup_steps": args.warmup, "steps": args.steps,
        "peak_memory_gib": timer.memory, "allocated_before_run_gib": before_gib, **timing, "fits_24gib": fits,
        "setup_seconds": build_s, "wall_seconds": time.perf_counter() - t0, "error": error,
    }
    Path(args.result).write_text(json.dumps(result, indent=2) + "\n")
    return 0


# ---------------------------------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line (``--worker`` and the options after it are internal)."""
    p = argparse.ArgumentParser(prog="python benchmarks/gpu_check.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help='print {"device": ..., "configs": [...]} as JSON')
    p.add_argument("--tiny", action="store_true", help="run the same path on CPU with tiny shapes")
    p.add_argument("--steps", type=_positive, default=None, help="timed optimizer steps (default 20; --tiny 2)")
    p.add_argument("--warmup", type=_positive, default=None, help="untimed steps first (default 3; --tiny 1)")
    p.add_argument("--configs", nargs="+", help="configs to check (default: configs/rtx4090_*.yaml)")
    p.add_argument("--batch-size", type=_positive, help="override train.batch_size (e.g. if 7B does not fit)")
    p.add_argument("--grad-accum", type=_positive, help="override train.grad_accum")
    p.add_argument("--num-workers", type=int, help="override data.num_workers")
    p.add_argument("--out-json", help="also write the report here, updated after every config")
    p.add_argument("--config-timeout", type=_positive, default=900, help="seconds per config (default 900)")
    p.add_argument("--workdir", help="parent of the temporary directory (weights: ~13 GB for 7B)")
    p.add_argument("--keep-work", action="store_true", help="keep the temporary directory")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    for internal in ("--train", "--val", "--work", "--result"):
        p.add_argument(internal, help=argparse.SUPPRESS)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    args.steps = args.steps or (2 if args.tiny else 20)
    args.warmup = args.warmup or (1 if args.tiny else 3)
    os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: nothing is ever fetched
    return worker(args) if args.worker else parent(args)


if __name__ == "__main__":
    sys.exit(main())
