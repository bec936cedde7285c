"""``python -m train``: parse arguments, load the config, call :func:`train.loop.run`."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from convert.format import FormatError
from convert.optiontable import Option, add_arguments
from train.config import PRECISIONS, ConfigError, apply_overrides, load_config

__all__ = ["OPTIONS", "build_parser", "overrides", "main"]

# Every flag once: its destination, the dotted config key it overrides, its help.
OPTIONS: tuple[Option, ...] = (
    Option("config", "--config", required=True, help="YAML config (see configs/)"),
    Option("train_dir", "--train", "data.train", help="training dataset directory"),
    Option("val_dir", "--val", "data.val", help="validation dataset directory"),
    Option("out", "--out", "out", help="output directory (checkpoint, metrics.json, confusion.png, log.jsonl)"),
    Option("resume", "--resume", "resume", action="store_true",
           help="continue from OUT/checkpoint.pt exactly where it stopped"),
    Option("overwrite", "--overwrite", "overwrite", action="store_true",
           help="replace the results of an earlier run in OUT (an OUT that is not empty is refused "
           "without --resume or --overwrite)"),
    Option("max_steps", "--max-steps", "train.max_steps", type=int,
           help="optimizer steps of the run (and of the LR schedule)"),
    Option("max_minutes", "--max-minutes", "train.max_minutes", type=float,
           help="stop, checkpoint and evaluate after this many minutes "
           "(the learning-rate decay ends then if the steps would not fit)"),
    Option("stop_at_step", "--stop-at-step", "train.stop_at_step", type=int,
           help="stop after this step as if interrupted (checkpoint only)"),
    Option("seed", "--seed", "train.seed", type=int),
    Option("batch_size", "--batch-size", "train.batch_size", type=int, help="reads per micro-batch per process"),
    Option("grad_accum", "--grad-accum", "train.grad_accum", type=int, help="micro-batches per optimizer step"),
    Option("lr", "--lr", "optim.lr", type=float),
    Option("warmup_steps", "--warmup-steps", "optim.warmup_steps", type=int),
    Option("eval_every", "--eval-every", "train.eval_every", type=int, help="evaluate every N steps (0: only at the end)"),
    Option("eval_max_reads", "--eval-max-reads", "data.eval_max_reads", type=int,
           help="reads used by the periodic evaluations"),
    Option("checkpoint_every", "--checkpoint-every", "train.checkpoint_every", type=int,
           help="checkpoint every N steps (0: only at the end)"),
    Option("num_workers", "--num-workers", "data.num_workers", type=int, help="DataLoader workers per process"),
    Option("device", "--device", "train.device", choices=("auto", "cpu", "cuda")),
    Option("precision", "--precision", "train.precision", choices=PRECISIONS),
    Option("threads", "--threads", "train.threads", type=int, help="torch threads per process"),
    Option("pretrained", "--pretrained", "model.pretrained",
           help="hub id or local path of pretrained weights (overrides model.pretrained)"),
    Option("log_batches", "--log-batches", "train.log_batches", action="store_true",
           help="write every micro-batch's read indices to OUT/batches-rank{r}.jsonl"),
    Option("progress", "--no-progress", "train.progress", action="store_false", help="no progress bar"),
    Option("baseline", "--no-baseline", "train.baseline", action="store_false",
           help="skip the 6-mer naive Bayes comparison at the end"),
    Option("baseline_max_reads", "--baseline-max-reads", "train.baseline_max_reads", type=int,
           help="reads the baseline samples from each of train and val (default 200,000; 0 = all)"),
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (flags override the YAML config's values; unset flags are ``None``)."""
    p = argparse.ArgumentParser(
        prog="python -m train",
        description="Train a read classifier on readshard datasets (torchrun --nproc_per_node N -m train ... for DDP). "
        "Subcommands: `python -m train predict RUN INPUT... --out DIR` classifies reads with a trained run; "
        "`python -m train evaluate RUN DATA --out DIR` scores it on labelled reads.",
    )
    add_arguments(p, OPTIONS)
    return p


def overrides(args: argparse.Namespace) -> dict[str, object]:
    """Dotted config key -> the flag's value (``None``: not given, the config's value stays)."""
    return {o.key: getattr(args, o.field) for o in OPTIONS if o.key}


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
        cfg = apply_overrides(cfg, overrides(args))
        from train.loop import run

        run(cfg)
    except (ConfigError, FormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
