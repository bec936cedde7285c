"""The training loop: shards -> shuffled batches -> model -> checkpoints and metrics.

One function, :func:`run`, does a whole run from a :class:`~train.config.TrainConfig`:

* data: :class:`loaders.ShardDataset` for train and val (the val set must use the same
  tokenizer, max length and labels), :class:`loaders.ShuffleBatchSampler` (full shuffle per
  epoch, split over ranks) and :class:`loaders.ReadLoader` (the documented fast path: a real
  DataLoader whose workers gather and trim numpy batches; tensors are made in this process);
* model: :func:`train.model.build_model`; AdamW (no decay on biases and norms), linear
  warmup then cosine decay (:func:`lr_factor`), gradient accumulation, clipping, bf16
  autocast on CUDA;
* evaluation every ``eval_every`` steps (on at most ``eval_max_reads`` reads) and on the
  whole validation set at the end: ``OUT/metrics.json``, ``OUT/confusion.png``;
* checkpoints (``OUT/checkpoint.pt``) with model, optimizer, scheduler, every rank's RNG
  and the sampler's global cursor for the batches actually consumed, so ``resume`` replays
  exactly the batches an uninterrupted run would have seen;
* DDP when started by ``torchrun`` (gloo on CPU, nccl on CUDA): each rank takes its
  interleaved share of the same global order, so the union of the ranks' micro-batches at
  each step is the single-process batch of ``batch_size * world_size`` reads.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from shards import FormatError
from convert.tokenizers import TokenizerError
from convert.tokenizers import identity as _tokenizer_identity
from loaders import ReadLoader, ShardDataset, ShuffleBatchSampler
from train.checkpoint import load_checkpoint, rng_state, save_checkpoint as _save_checkpoint, set_rng_state
from train.config import ConfigError, TrainConfig, require_datasets
from train.metrics import (confusion_matrix, format_per_class_table, metrics_from_confusion, per_class_table,
                           plot_confusion, write_json)
from train.model import DataSpec, build_model, count_parameters
from train.ngram import token_stride

__all__ = [
    "CHECKPOINT_NAME",
    "OUTPUT_NAMES",
    "METRICS_NAME",
    "DistInfo",
    "StepHook",
    "check_out_dir",
    "train_loader",
    "lr_factor",
    "TimeBudget",
    "setup_distributed",
    "evaluate",
    "run",
]

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.json"
LOG_NAME = "log.jsonl"
# What a run writes into OUT (batches-rank*.jsonl too): --overwrite removes only these.
OUTPUT_NAMES = (CHECKPOINT_NAME, f".{CHECKPOINT_NAME}.tmp", METRICS_NAME, LOG_NAME, "config.json", "confusion.png",
                "calibration.json")

# The clock of --max-minutes (deadline and time-driven schedule); tests inject a fake one.
_clock: Callable[[], float] = time.perf_counter

# on_step(step, counters) -> stop?: called after every optimizer step (see run()).
StepHook = Callable[[int, Mapping[str, float]], bool]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: rank, world size, device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def lr_factor(step: int, *, warmup_steps: int, total_steps: int, min_ratio: float,
              time_progress: float = 0.0) -> float:
    """Learning-rate multiplier at optimizer step ``step`` (0-based): linear warmup, cosine decay.

    Rises linearly to 1 over ``warmup_steps``, then follows a half cosine down to
    ``min_ratio`` at ``total_steps``; stays at ``min_ratio`` afterwards. ``time_progress``
    (0..1, see :class:`TimeBudget`) moves the decay on when the time budget runs out
    before the steps do: the decay's progress is the larger of the two.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, max((step - warmup_steps) / span, time_progress))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class TimeBudget:
    """How far a ``--max-minutes`` run is through the time left for its decay (0..1).

    The decay's time starts when warmup ends (or when a resumed run starts, from the
    progress its checkpoint reached) and ends at the deadline, so a run cut by time ends
    at the end of its schedule whatever the machine's load. ``driven_by`` says which
    budget set the last learning rate: ``"steps"`` or ``"time"``.
    """

    def __init__(self, deadline: float | None, *, clock: Callable[[], float]) -> None:
        self.deadline = deadline
        self.clock = clock
        self.start: float | None = None  # when the decay's time segment began
        self.last: float | None = None  # the previous measurement
        self.start_progress = 0.0
        self.by_time = 0.0
        self.progress = 0.0  # the largest decay progress applied so far (checkpointed)
        self.driven_by = "steps"

    def measure(self, step: int, warmup_steps: int) -> float:
        """Read the clock before step ``step``'s learning rate is set; returns the time progress.

        Kept apart from :meth:`factor` so that DDP ranks can agree on one value first.
        """
        if self.deadline is not None and step >= warmup_steps:
            now = self.clock()
            if self.start is None:
                self.start = now
            # One step ahead (the last step's duration): the step that will cross the deadline
            # is trained at the floor, not a little above it.
            ahead = 0.0 if self.last is None else now - self.last
            self.last = now
            left = self.deadline - self.start
            frac = 1.0 if left <= 0 else min(1.0, max(0.0, (now + ahead - self.start) / left))
            self.by_time = self.start_progress + (1 - self.start_progress) * frac
        return self.by_time

    def factor(self, step: int, *, warmup_steps: int, total_steps: int, min_ratio: float) -> float:
        """:func:`lr_factor` at ``step`` with the time progress last measured."""
        by_steps = min(1.0, max(0.0, (step - warmup_steps) / max(1, total_steps - warmup_steps)))
        self.driven_by = "time" if self.by_time > by_steps else "steps"
        self.progress = max(self.progress, self.by_time, by_steps)
        return lr_factor(step, warmup_steps=warmup_steps, total_steps=total_steps, min_ratio=min_ratio,
                         time_progress=max(self.by_time, self.start_progress))

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs: the decay progress reached and which budget drove it."""
        return {"progress": self.progress, "driven_by": self.driven_by}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state``: the rest of the decay spreads over this run's time budget."""
        self.progress = self.start_progress = self.by_time = float(state.get("progress", 0.0))
        self.driven_by = str(state.get("driven_by", "steps"))
        self.start = self.last = None


def setup_distributed(device: str = "auto") -> DistInfo:
    """Join the process group ``torchrun`` describes in the environment, if any.

    Uses nccl on CUDA and gloo on CPU. A plain ``python -m train`` is rank 0 of 1.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is cuda but no CUDA device is available (use auto or cpu)")
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


class _RecordingBatchSampler:
    """Passes the sampler's batches to the DataLoader and remembers them in order.

    The DataLoader iterates its batch sampler in the main process and returns batches in
    the same order, so popping the oldest entry when a batch arrives names its indices.
    """

    def __init__(self, sampler: ShuffleBatchSampler) -> None:
        self.sampler = sampler
        self.pending: deque[np.ndarray] = deque()

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[np.ndarray]:
        self.pending.clear()
        for batch in self.sampler:
            self.pending.append(batch)
            yield batch


def _model_state(model: nn.Module, trainable_only: bool) -> dict[str, torch.Tensor]:
    # With LoRA only the adapters and the head change: do not write 14 GB of frozen weights.
    if not trainable_only:
        return model.state_dict()
    keep = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v for k, v in model.state_dict().items() if k in keep}


def _autocast(dev: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if dev.type == "cuda" and precision in ("auto", "bf16"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # Biases, norms (1-D) and nothing else escape weight decay.
        (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _to_device(batch: dict[str, torch.Tensor], dev: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(dev, non_blocking=True) for k, v in batch.items()}


@torch.no_grad()
def evaluate(model: nn.Module, ds: ShardDataset, *, batch_size: int, info: DistInfo, precision: str,
             max_reads: int | None = None, log_probs: list[np.ndarray] | None = None) -> np.ndarray:
    """Confusion matrix of ``model`` on ``ds`` (all ranks share the work; summed over ranks).

    Args:
        model: the (unwrapped) classifier.
        ds: validation dataset.
        batch_size: reads per forward pass.
        info: rank/world/device.
        precision: autocast policy (see :class:`~train.config.LoopConfig`).
        max_reads: evaluate on this many reads spread evenly over the set (None = all).
        log_probs: if a list, rank 0 gets the (n, C) float32 log-softmax of every evaluated
            read appended, in index order (calibration reuses them instead of a second pass).

    Returns:
        (C, C) int64 confusion matrix (rows: true label).
    """
    n = len(ds)
    idx = np.arange(n) if max_reads is None or max_reads >= n else np.linspace(0, n - 1, max_reads).astype(np.int64)
    batches = [idx[i : i + batch_size] for i in range(0, len(idx), batch_size)][info.rank :: info.world_size]
    C = ds.num_classes
    cm = np.zeros((C, C), dtype=np.int64)
    was_training = model.training
    model.eval()
    # Workers are not worth their start-up here: one __getitems__ gather per batch is cheap.
    loader = ReadLoader(ds, batches, num_workers=0)
    kept: list[np.ndarray] = []
    for batch in loader:
        batch = _to_device(batch, info.device)
        with _autocast(info.device, precision):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        cm += confusion_matrix(batch["labels"].cpu().numpy(), logits.argmax(-1).cpu().numpy(), C)
        if log_probs is not None:
            kept.append(torch.log_softmax(logits.float(), dim=-1).cpu().numpy())
    if info.distributed:
        t = torch.from_numpy(cm).to(info.device)
        dist.all_reduce(t)
        cm = t.cpu().numpy()
    if log_probs is not None:
        _gather_log_probs(kept, batches, info, log_probs, C)
    model.train(was_training)
    return cm


def _gather_log_probs(kept: list[np.ndarray], batches: list[np.ndarray], info: DistInfo,
                      into: list[np.ndarray], num_classes: int) -> None:
    """Rank 0 appends every rank's log-probabilities to ``into`` in read-index order."""
    mine = (np.concatenate(kept) if kept else np.zeros((0, num_classes), np.float32),
            np.concatenate(batches) if batches else np.zeros(0, np.int64))
    parts = [mine]
    if info.distributed:
        parts = [None] * info.world_size
        dist.all_gather_object(parts, mine)
    if info.is_main:
        lp = np.concatenate([p[0] for p in parts])
        order = np.argsort(np.concatenate([p[1] for p in parts]), kind="stable")
        into.append(lp[order])


def tokenizer_identity(spec: str) -> dict[str, Any]:
    """``{"name", "sha256"}`` of the config's ``data.tokenizer`` (a ConfigError if unknown)."""
    try:
        return _tokenizer_identity(spec)
    except TokenizerError as exc:
        raise ConfigError(f"data.tokenizer: {exc}") from None


def _open_datasets(cfg: TrainConfig) -> tuple[ShardDataset, ShardDataset]:
    # By content: the config's tokenizer (registry name or path) -> its sha256.
    expect = tokenizer_identity(cfg.data.tokenizer) if cfg.data.tokenizer else None
    train_ds = ShardDataset(cfg.data.train, verify=cfg.data.verify, expect_tokenizer=expect)
    val_ds = ShardDataset(cfg.data.val, verify=cfg.data.verify, expect_tokenizer=train_ds.tokenizer_info,
                          expect_max_length=train_ds.max_length)
    if list(val_ds.class_names) != list(train_ds.class_names):
        raise FormatError(
            f"{cfg.data.val}: its labels differ from {cfg.data.train}'s; convert both with the same --mapping"
        )
    return train_ds, val_ds


def check_out_dir(cfg: TrainConfig) -> None:
    """Refuse to start in an ``--out`` that already holds something unless told what to do with it.

    Runs on every rank before any of them writes (so all ranks refuse alike).

    Raises:
        ConfigError: ``out`` exists and is not an empty directory, and neither ``resume`` nor
            ``overwrite`` is set; or both are set.
    """
    out = Path(cfg.out)
    if cfg.resume and cfg.overwrite:
        raise ConfigError("--resume continues the run in --out and --overwrite replaces it: pass one of them")
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise ConfigError(f"--out {out}: exists and is not a directory; choose another --out")
    if cfg.resume or cfg.overwrite or not out.is_dir():
        return
    found = sorted(p.name for p in out.iterdir())
    if found:
        shown = ", ".join(found[:4]) + (", ..." if len(found) > 4 else "")
        raise ConfigError(
            f"--out {out} already exists ({shown}). Continue that run with --resume, replace its results "
            f"with --overwrite (e.g. `make train TRAIN_FLAGS=--overwrite`), or choose another --out.")


def _clear_previous_run(out: Path) -> None:
    """``--overwrite``: remove what an earlier run wrote into ``out`` (and nothing else)."""
    for name in OUTPUT_NAMES:
        (out / name).unlink(missing_ok=True)  # unlink never follows a symlink
    for p in out.glob("batches-rank*.jsonl"):
        p.unlink()
    from train.evaluate import clear_evaluation

    clear_evaluation(out / "eval" / "val")


def train_loader(ds: ShardDataset, batch_sampler: Any, *, num_workers: int, seed: int, pin_memory: bool) -> ReadLoader:
    """The training loader: :class:`loaders.ReadLoader` over ``batch_sampler``'s batches.

    Workers gather and trim numpy batches; the int64 tensors are made in this process.
    """
    return ReadLoader(ds, batch_sampler, num_workers=num_workers, pin_memory=pin_memory,
                      persistent_workers=num_workers > 0, prefetch_factor=4 if num_workers > 0 else None,
                      # its own generator: starting an epoch must not draw from the global RNG
                      # (dropout), or a resumed run would diverge from an uninterrupted one
                      generator=torch.Generator().manual_seed(seed))


def _log(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _schedule_note(log_path: Path, bar: Any, step: int, max_steps: int, max_minutes: float | None) -> None:
    """Say in log.jsonl and on stderr when the time budget takes over the learning-rate decay."""
    _log(log_path, {"event": "schedule", "step": step, "driven_by": "time"})
    bar.write(f"step {step} of {max_steps}: the learning-rate decay now follows --max-minutes {max_minutes:g} "
              "(at this pace the steps would not fit in time), so the run ends at the end of its schedule")


@dataclass
class _Run:
    """A training run's state, shared by its stages (setup, steps, evaluation, finish)."""

    cfg: TrainConfig
    info: DistInfo
    out: Path
    ckpt_path: Path
    log_path: Path
    batch_log: Path | None
    train_ds: ShardDataset
    val_ds: ShardDataset
    model: nn.Module  # DDP-wrapped when distributed
    raw_model: nn.Module
    lora: bool
    total_params: int
    trainable: int
    opt: torch.optim.Optimizer
    sched: Any
    budget: TimeBudget
    deadline: float | None
    sampler: ShuffleBatchSampler
    recorder: _RecordingBatchSampler
    loader: ReadLoader | None
    t_start: float
    step: int = 0
    epoch: int = 0
    stats: dict[str, Any] = field(default_factory=lambda: {"reads": 0, "wait_s": 0.0, "train_s": 0.0})
    history: list[dict[str, Any]] = field(default_factory=list)
    bar: Any = None
    consumed: int = 0  # batches of the running iteration that were trained on


def run(cfg: TrainConfig, *, on_step: StepHook | None = None) -> dict[str, Any]:
    """Train (or resume) the run ``cfg`` describes; returns the metrics written to ``metrics.json``.

    Returns ``{"interrupted": True, ...}`` without evaluating when ``stop_at_step`` or
    ``on_step`` stops it.

    Args:
        cfg: the run.
        on_step: called on every rank after each optimizer step with the step number and a
            copy of the running counters (``reads``, ``wait_s``: seconds spent waiting for
            the loader); returning True (the same on every rank) stops the run there as
            ``stop_at_step`` does (checkpoint, no final evaluation).
            ``benchmarks/gpu_check.py`` times steps with it.

    Raises:
        ConfigError: the config does not fit the data (e.g. a batch bigger than the dataset).
        FormatError: the datasets are missing, incompatible or corrupt.
    """
    r = _setup(cfg)
    stopped_by, interrupted = _train(r, on_step)
    if interrupted:
        return {"interrupted": True, "step": r.step}
    return _finish(r, stopped_by)


def _setup(cfg: TrainConfig) -> _Run:
    """Processes, output directory, data, model, optimizer, schedule and loader (resumed if asked)."""
    t_start = time.perf_counter()
    t_budget = _clock()
    tc, oc = cfg.train, cfg.optim
    require_datasets(cfg)
    check_out_dir(cfg)  # every rank, before any rank writes
    info = setup_distributed(tc.device)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    elif info.distributed and info.device.type == "cpu":
        # N processes on one machine: split the cores rather than oversubscribe them.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", info.world_size))))
    # The data first: a run refused for its data (missing, another tokenizer) leaves no output
    # behind that would make the corrected command look like a rerun of an earlier run.
    train_ds, val_ds = _open_datasets(cfg)
    out = Path(cfg.out)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if cfg.overwrite:
            _clear_previous_run(out)
        write_json(out / "config.json", cfg.to_dict())
    if info.distributed:
        dist.barrier()

    tok = train_ds.tokenizer_info
    spec = DataSpec(vocab_size=int(tok["vocab_size"]), pad_id=int(train_ds.pad_id),
                    num_labels=int(train_ds.num_classes), max_length=int(train_ds.max_length),
                    token_stride=token_stride(tok))
    torch.manual_seed(tc.seed)  # identical initial weights on every rank
    model = build_model(cfg.model, spec).to(info.device)
    model.train()
    total_params, trainable = count_parameters(model)
    opt = torch.optim.AdamW(_param_groups(model, oc.weight_decay), lr=oc.lr, betas=oc.betas, eps=oc.eps)
    deadline = None if tc.max_minutes is None else t_budget + 60 * tc.max_minutes
    budget = TimeBudget(deadline, clock=_clock)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: budget.factor(s, warmup_steps=oc.warmup_steps, total_steps=tc.max_steps,
                                     min_ratio=oc.min_lr_ratio))
    sampler = ShuffleBatchSampler(len(train_ds), tc.batch_size, seed=tc.seed, rank=info.rank,
                                  world_size=info.world_size, drop_last=True)
    if len(train_ds) < tc.batch_size * info.world_size:
        raise ConfigError(f"train.batch_size {tc.batch_size} x {info.world_size} process(es) is more than the "
                          f"{len(train_ds)} training reads; lower --batch-size")
    # Different dropout masks per rank; the weights are already identical.
    torch.manual_seed(tc.seed * 1000 + info.rank + 1)
    recorder = _RecordingBatchSampler(sampler)
    r = _Run(cfg=cfg, info=info, out=out, ckpt_path=out / CHECKPOINT_NAME, log_path=out / LOG_NAME,
             batch_log=out / f"batches-rank{info.rank}.jsonl" if tc.log_batches else None,
             train_ds=train_ds, val_ds=val_ds, model=model, raw_model=model, lora=cfg.model.lora is not None,
             total_params=total_params, trainable=trainable, opt=opt, sched=sched, budget=budget,
             deadline=deadline, sampler=sampler, recorder=recorder, loader=None, t_start=t_start)
    _resume(r)
    if info.distributed:
        r.model = nn.parallel.DistributedDataParallel(
            model, device_ids=[info.local_rank] if info.device.type == "cuda" else None)
    r.loader = train_loader(train_ds, recorder, num_workers=cfg.data.num_workers, seed=tc.seed,
                            pin_memory=info.device.type == "cuda")
    return r


def _resume(r: _Run) -> None:
    """With ``resume``, load the checkpoint (weights, optimizer, schedule, sampler cursor, RNG) if there is one."""
    cfg, info, ckpt_path = r.cfg, r.info, r.ckpt_path
    if cfg.resume and ckpt_path.is_file():
        ck = load_checkpoint(ckpt_path)  # weights_only: never runs pickled code
        try:
            missing, unexpected = r.model.load_state_dict(ck["model"], strict=not r.lora)
            if unexpected:
                raise FormatError(f"{ckpt_path}: checkpoint does not fit this model (unexpected {unexpected[:3]}...)")
            r.opt.load_state_dict(ck["optimizer"])
            r.sched.load_state_dict(ck["scheduler"])
            r.budget.load_state_dict(ck.get("schedule", {}))
            r.sampler.load_state_dict(ck["sampler"])
            r.step, r.epoch, r.stats, r.history = ck["step"], ck["epoch"], ck["stats"], ck.get("history", [])
            rng = ck["rng"]
            if len(rng) == info.world_size:
                set_rng_state(rng[info.rank])
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise FormatError(f"{ckpt_path}: checkpoint does not fit this run ({type(exc).__name__}: {first}); "
                              "delete it to start over, or resume with the config that wrote it") from None
        if info.is_main:
            print(f"resumed from {ckpt_path} at step {r.step} (epoch {r.epoch}, cursor {ck['sampler']['cursor']})",
                  file=sys.stderr)
    elif cfg.resume and info.is_main:
        print(f"--resume: no checkpoint at {ckpt_path}; starting from scratch", file=sys.stderr)


def _save(r: _Run) -> None:
    """Write the checkpoint (every rank's RNG gathered; the main rank writes)."""
    info = r.info
    rng = [rng_state()]
    if info.distributed:
        rng = [None] * info.world_size
        dist.all_gather_object(rng, rng_state())
    if info.is_main:
        ck = {
            "step": r.step, "epoch": r.epoch, "sampler": r.sampler.state_dict(consumed=r.consumed),
            "model": _model_state(r.raw_model, r.lora), "optimizer": r.opt.state_dict(),
            "scheduler": r.sched.state_dict(), "schedule": r.budget.state_dict(), "rng": rng, "stats": r.stats,
            "history": r.history,
            "config": json.loads(json.dumps(r.cfg.to_dict(), default=str)), "world_size": info.world_size,
            # predict/evaluate read the class table and tokenizer here, not from a dataset that may move
            "data": {k: r.train_ds.manifest.get(k) for k in ("tokenizer", "max_length", "label_names",
                                                             "label_class_ids", "label_tax_ids")},
        }
        _save_checkpoint(r.ckpt_path, ck)
    if info.distributed:
        dist.barrier()


def _run_eval(r: _Run, max_reads: int | None, log_probs: list[np.ndarray] | None = None) -> np.ndarray:
    """Evaluate on (at most ``max_reads`` of) the validation set; log it; return the confusion matrix."""
    tc = r.cfg.train
    cm = evaluate(r.raw_model, r.val_ds, batch_size=tc.eval_batch_size, info=r.info, precision=tc.precision,
                  max_reads=max_reads, log_probs=log_probs)
    m = metrics_from_confusion(cm)
    rec = {"step": r.step, "val_accuracy": m["accuracy"], "val_macro_f1": m["macro_f1"], "val_reads": m["num_reads"]}
    r.history.append(rec)
    if r.info.is_main:
        _log(r.log_path, {"event": "eval", **rec})
        if r.bar is not None:
            r.bar.write(f"step {r.step}: val accuracy {100 * m['accuracy']:.2f}% macro-F1 "
                        f"{100 * m['macro_f1']:.2f}% on {m['num_reads']} reads")
    return cm


def _train(r: _Run, on_step: StepHook | None) -> tuple[str, bool]:
    """The steps until ``max_steps`` or a stop; checkpoints at the end. Returns (stopped_by, interrupted)."""
    from tqdm.auto import tqdm

    cfg, tc, info = r.cfg, r.cfg.train, r.info
    r.bar = tqdm(total=tc.max_steps, initial=r.step, desc="train", unit="step", dynamic_ncols=True,
                 disable=not (info.is_main and tc.progress), mininterval=1.0)
    stopped_by = "max_steps"
    time_noted = r.budget.driven_by == "time"
    interrupted = False
    r.sampler.set_epoch(r.epoch)  # same epoch after a resume: the loaded cursor is kept
    it = iter(r.loader)
    r.consumed = 0
    loss_sum = torch.zeros((), device=info.device)
    loss_count = 0
    t_phase = time.perf_counter()
    while r.step < tc.max_steps:
        it = _step(r, it, loss_sum)
        loss_count += tc.grad_accum
        if r.step % tc.log_every == 0 or r.step == tc.max_steps:
            _log_step(r, loss_sum / max(loss_count, 1), t_phase)
            loss_sum.zero_()
            loss_count = 0
        if r.budget.driven_by == "time" and not time_noted:  # said once: near a tie the two budgets alternate
            time_noted = True
            if info.is_main:
                _schedule_note(r.log_path, r.bar, r.step, tc.max_steps, tc.max_minutes)
        stop, why, by_request = _stop(r, on_step)
        if stop:
            stopped_by, interrupted = why, by_request
        pause = stop or (tc.eval_every and r.step % tc.eval_every == 0 and r.step < tc.max_steps) or \
            (tc.checkpoint_every and r.step % tc.checkpoint_every == 0)
        if pause:  # evaluation and checkpoints do not count as training time
            r.stats["train_s"] += time.perf_counter() - t_phase
            if tc.checkpoint_every and r.step % tc.checkpoint_every == 0 and not stop:
                _save(r)
            if tc.eval_every and r.step % tc.eval_every == 0 and r.step < tc.max_steps and not stop:
                _run_eval(r, cfg.data.eval_max_reads)
            t_phase = time.perf_counter()
        if stop:
            break
    else:
        r.stats["train_s"] += time.perf_counter() - t_phase
    r.bar.close()
    if info.is_main:  # which budget the schedule ended on, and how far it got (1.0: at its floor)
        _log(r.log_path, {"event": "schedule_end", "step": r.step, "driven_by": r.budget.driven_by,
                          "progress": r.budget.progress, "lr": r.sched.get_last_lr()[0], "stopped_by": stopped_by})
    _save(r)
    del it  # stop the workers before the evaluation
    return stopped_by, interrupted


def _step(r: _Run, it: Iterator[Any], loss_sum: torch.Tensor) -> Iterator[Any]:
    """One optimizer step over ``grad_accum`` micro-batches; adds their losses to ``loss_sum``.

    Returns the loader iterator to go on with (a new one when an epoch ended).
    """
    tc, oc, info = r.cfg.train, r.cfg.optim, r.info
    for micro in range(tc.grad_accum):
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            r.epoch += 1
            r.sampler.set_epoch(r.epoch)
            it = iter(r.loader)
            r.consumed = 0
            batch = next(it)
        r.stats["wait_s"] += time.perf_counter() - t0
        indices = r.recorder.pending.popleft()
        r.consumed += 1
        if r.batch_log is not None:
            _log(r.batch_log, {"step": r.step, "micro": micro, "epoch": r.epoch, "indices": indices.tolist()})
        batch = _to_device(batch, info.device)
        sync = not info.distributed or micro == tc.grad_accum - 1
        ctx = contextlib.nullcontext() if sync else r.model.no_sync()
        with ctx:
            with _autocast(info.device, tc.precision):
                logits = r.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            loss = F.cross_entropy(logits.float(), batch["labels"], label_smoothing=oc.label_smoothing)
            (loss / tc.grad_accum).backward()
        loss_sum += loss.detach()
    if oc.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_([p for p in r.raw_model.parameters() if p.requires_grad], oc.grad_clip)
    r.opt.step()
    if r.deadline is not None:
        r.budget.measure(r.step + 1, oc.warmup_steps)  # the step whose learning rate sched.step() sets
        if info.distributed:  # one learning rate on every rank: their clocks differ, take the furthest
            t = torch.tensor([r.budget.by_time], dtype=torch.float64, device=info.device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            r.budget.by_time = float(t.item())
    r.sched.step()
    r.opt.zero_grad(set_to_none=True)
    r.step += 1
    r.stats["reads"] += tc.batch_size * tc.grad_accum * info.world_size
    r.bar.update(1)
    return it


def _log_step(r: _Run, mean_loss: torch.Tensor, t_phase: float) -> None:
    """Log the mean loss since the last log line (averaged over ranks), the rate and the loader wait."""
    info = r.info
    if info.distributed:  # SUM then divide: gloo has no AVG
        dist.all_reduce(mean_loss)
        mean_loss /= info.world_size
    elapsed = r.stats["train_s"] + time.perf_counter() - t_phase
    rate = r.stats["reads"] / max(elapsed, 1e-9)
    wait = r.stats["wait_s"] / max(elapsed, 1e-9)
    if info.is_main:
        lv = float(mean_loss)
        lr = r.sched.get_last_lr()[0]
        _log(r.log_path, {"step": r.step, "epoch": r.epoch, "loss": lv, "lr": lr,
                          "schedule": r.budget.driven_by, "reads_per_s": rate, "loader_wait_fraction": wait})
        r.bar.set_postfix_str(f"loss {lv:.4f} lr {lr:.2e} {rate:,.0f} reads/s wait {100 * wait:.1f}%", refresh=False)


def _stop(r: _Run, on_step: StepHook | None) -> tuple[bool, str, bool]:
    """Whether to stop after this step: (stop, stopped_by, interrupted), the same on every rank."""
    tc, info = r.cfg.train, r.info
    stop, stopped_by, interrupted = False, "max_steps", False
    if r.deadline is not None and _clock() > r.deadline:
        stop, stopped_by = True, "max_minutes"
    if tc.stop_at_step is not None and r.step >= tc.stop_at_step and r.step < tc.max_steps:
        stop, stopped_by, interrupted = True, "stop_at_step", True
    if on_step is not None and on_step(r.step, dict(r.stats)) and not stop:
        stop, stopped_by, interrupted = True, "on_step", True
    if info.distributed:  # every rank must leave the loop at the same step
        flag = torch.tensor([int(stop)], device=info.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        if flag.item() and not stop:
            stop, stopped_by = True, "max_minutes"
    return stop, stopped_by, interrupted


def _finish(r: _Run, stopped_by: str) -> dict[str, Any]:
    """The final evaluation on the whole validation set: metrics.json, calibration, the plot and summary."""
    val_log_probs: list[np.ndarray] = []
    cm = _run_eval(r, None, val_log_probs)
    result: dict[str, Any] = {}
    if r.info.is_main:
        m = metrics_from_confusion(cm)
        names = list(r.val_ds.class_names)
        table = per_class_table(cm, names)
        result = _result(r, stopped_by, cm, m, table)
        if r.cfg.train.baseline:
            _add_baseline(r, result, m)
        from train.evaluate import evaluate_val

        try:  # RUN/calibration.json and RUN/eval/val/ from the logits just computed
            result["calibration"] = evaluate_val(r.out, r.val_ds, val_log_probs[0], cfg=r.cfg, step=r.step)
        except (ValueError, OSError) as exc:  # FormatError and CalibrationError are ValueErrors
            result["calibration_error"] = f"{type(exc).__name__}: {exc}"
            print(f"warning: calibration and RUN/eval/val not written: {exc}", file=sys.stderr)
        write_json(r.out / METRICS_NAME, result)
        plot_confusion(cm, names, r.out / "confusion.png",
                       title=f"val accuracy {100 * m['accuracy']:.2f}%, macro-F1 {100 * m['macro_f1']:.2f}%")
        print(format_per_class_table(table))
        print(_summary_line(result))
    if r.info.distributed:
        dist.barrier()
    return result


def _result(r: _Run, stopped_by: str, cm: np.ndarray, m: dict[str, Any], table: Any) -> dict[str, Any]:
    """``metrics.json`` before the baseline and calibration are added."""
    tc, info, stats = r.cfg.train, r.info, r.stats
    return {
        "val_accuracy": m["accuracy"],
        "val_macro_f1": m["macro_f1"],
        "val_reads": m["num_reads"],
        "train_reads_per_s": stats["reads"] / max(stats["train_s"], 1e-9),
        "loader_wait_fraction": stats["wait_s"] / max(stats["train_s"], 1e-9),
        "steps": r.step,
        "epochs": stats["reads"] / len(r.train_ds),
        "train_reads_seen": stats["reads"],
        "train_seconds": stats["train_s"],
        "wall_seconds": time.perf_counter() - r.t_start,
        "stopped_by": stopped_by,
        "world_size": info.world_size,
        "device": str(info.device),
        "precision": "bf16" if info.device.type == "cuda" and tc.precision != "fp32" else "fp32",
        "model": {"arch": r.cfg.model.arch, "pretrained": r.cfg.model.pretrained, "parameters": r.total_params,
                  "trainable_parameters": r.trainable},
        "chance_accuracy": float(np.max(m["support"]) / max(m["num_reads"], 1)),
        "eval_history": r.history,
        "per_class": table,
        "confusion": cm.tolist(),
    }


def _add_baseline(r: _Run, result: dict[str, Any], m: dict[str, Any]) -> None:
    """The 6-mer naive Bayes baseline on the same data, into ``result`` (or its error)."""
    from train.baseline import BaselineError, run_baseline

    tc = r.cfg.train
    try:
        base = run_baseline(r.cfg.data.train, r.cfg.data.val, max_reads=tc.baseline_max_reads or None, seed=tc.seed)
        result["baseline"] = {k: v for k, v in base.items() if k not in ("confusion",)}
        result["baseline_val_accuracy"] = base["val_accuracy"]
        result["baseline_val_macro_f1"] = base["val_macro_f1"]
        result["beats_baseline"] = m["accuracy"] > base["val_accuracy"]
    except (BaselineError, FormatError) as exc:
        result["baseline_error"] = str(exc)


def _summary_line(result: dict[str, Any]) -> str:
    """The one line printed at the end of a run."""
    line = (f"val accuracy {100 * result['val_accuracy']:.2f}%  macro-F1 {100 * result['val_macro_f1']:.2f}%  "
            f"{result['train_reads_per_s']:,.0f} reads/s  loader wait {100 * result['loader_wait_fraction']:.1f}%  "
            f"{result['wall_seconds']:.0f} s")
    if "baseline_val_accuracy" in result:
        b = result["baseline"]
        line += (f"  (6-mer naive Bayes: {100 * result['baseline_val_accuracy']:.2f}% on "
                 f"{b['train_reads']:,} of {b['train_reads_total']:,} train and "
                 f"{b['val_reads']:,} of {b['val_reads_total']:,} val reads)")
    return line
