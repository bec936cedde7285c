"""``python -m train``: parse arguments, load the config, call :func:`train.loop.run`."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from shards import FormatError
from convert.optiontable import Option, add_arguments
from train.config import OPTIONS as CONFIG_OPTIONS
from train.config import ConfigError, apply_overrides, load_config

__all__ = ["OPTIONS", "build_parser", "overrides", "main"]

# The flags: --config, then every flag of train.config.OPTIONS (each with the config key it overrides).
OPTIONS: tuple[Option, ...] = (Option("config", "--config", required=True, help="YAML config (see configs/)"),
                               *CONFIG_OPTIONS)


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
    return {o.key: getattr(args, o.field) for o in OPTIONS if o.key and o.flag}


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
