"""``python -m train``: parse arguments, load the config, call :func:`train.loop.run`."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from convert.format import FormatError
from train.config import ConfigError, apply_overrides, load_config

__all__ = ["build_parser", "main"]

# flag destination -> dotted config key
_OVERRIDES = {
    "train_dir": "data.train",
    "val_dir": "data.val",
    "out": "out",
    "resume": "resume",
    "overwrite": "overwrite",
    "max_steps": "train.max_steps",
    "max_minutes": "train.max_minutes",
    "stop_at_step": "train.stop_at_step",
    "seed": "train.seed",
    "batch_size": "train.batch_size",
    "grad_accum": "train.grad_accum",
    "eval_every": "train.eval_every",
    "checkpoint_every": "train.checkpoint_every",
    "device": "train.device",
    "precision": "train.precision",
    "threads": "train.threads",
    "log_batches": "train.log_batches",
    "progress": "train.progress",
    "baseline": "train.baseline",
    "baseline_max_reads": "train.baseline_max_reads",
    "lr": "optim.lr",
    "warmup_steps": "optim.warmup_steps",
    "num_workers": "data.num_workers",
    "eval_max_reads": "data.eval_max_reads",
    "pretrained": "model.pretrained",
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (flags override the YAML config's values)."""
    p = argparse.ArgumentParser(
        prog="python -m train",
        description="Train a read classifier on readshard datasets (torchrun --nproc_per_node N -m train ... for DDP). "
        "Subcommands: `python -m train predict RUN INPUT... --out DIR` classifies reads with a trained run; "
        "`python -m train evaluate RUN DATA --out DIR` scores it on labelled reads.",
    )
    p.add_argument("--config", required=True, help="YAML config (see configs/)")
    p.add_argument("--train", dest="train_dir", help="training dataset directory")
    p.add_argument("--val", dest="val_dir", help="validation dataset directory")
    p.add_argument("--out", help="output directory (checkpoint, metrics.json, confusion.png, log.jsonl)")
    p.add_argument("--resume", action="store_true", default=None,
                   help="continue from OUT/checkpoint.pt exactly where it stopped")
    p.add_argument("--overwrite", action="store_true", default=None,
                   help="replace the results of an earlier run in OUT (an OUT that is not empty is refused "
                   "without --resume or --overwrite)")
    p.add_argument("--max-steps", type=int, help="optimizer steps of the run (and of the LR schedule)")
    p.add_argument("--max-minutes", type=float, help="stop, checkpoint and evaluate after this many minutes "
                   "(the learning-rate decay ends then if the steps would not fit)")
    p.add_argument("--stop-at-step", type=int, help="stop after this step as if interrupted (checkpoint only)")
    p.add_argument("--seed", type=int)
    p.add_argument("--batch-size", type=int, help="reads per micro-batch per process")
    p.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step")
    p.add_argument("--lr", type=float)
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--eval-every", type=int, help="evaluate every N steps (0: only at the end)")
    p.add_argument("--eval-max-reads", type=int, help="reads used by the periodic evaluations")
    p.add_argument("--checkpoint-every", type=int, help="checkpoint every N steps (0: only at the end)")
    p.add_argument("--num-workers", type=int, help="DataLoader workers per process")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"))
    p.add_argument("--threads", type=int, help="torch threads per process")
    p.add_argument("--pretrained", help="hub id or local path of pretrained weights (overrides model.pretrained)")
    p.add_argument("--log-batches", action="store_true", default=None,
                   help="write every micro-batch's read indices to OUT/batches-rank{r}.jsonl")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None, help="no progress bar")
    p.add_argument("--no-baseline", dest="baseline", action="store_false", default=None,
                   help="skip the 6-mer naive Bayes comparison at the end")
    p.add_argument("--baseline-max-reads", type=int,
                   help="reads the baseline samples from each of train and val (default 200,000; 0 = all)")
    return p


# subcommand -> module whose main(argv) -> int runs it (imported only when used)
SUBCOMMANDS = {"predict": "train.predict", "evaluate": "train.evaluate"}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit code (2 for bad configs or data).

    ``python -m train predict ...`` and ``python -m train evaluate ...`` run those
    subcommands; anything else is a training run (``python -m train --config ...``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        return int(importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:]))
    args = build_parser().parse_args(argv)
    try:
        cfg = load_config(args.config)
        cfg = apply_overrides(cfg, {key: getattr(args, dest) for dest, key in _OVERRIDES.items()})
        from train.loop import run

        run(cfg)
    except (ConfigError, FormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
