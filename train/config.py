"""Training configuration: typed dataclasses read from YAML, validated with clear errors.

A config file has four sections (``data``, ``model``, ``optim``, ``train``) plus ``out``::

    data:  {train: data/sample/train, val: data/sample/val, num_workers: 2}
    model: {arch: llama, config: {hidden_size: 192, num_hidden_layers: 2, ...}}
    optim: {lr: 1.0e-3, warmup_steps: 100, grad_clip: 1.0}
    train: {batch_size: 128, max_steps: 1500, eval_every: 500, max_minutes: 9}
    out: out/sample

Unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from convert.optiontable import Option
from convert.safeyaml import ConfigFileError, load_yaml

__all__ = [
    "NGRAM_DEFAULTS",
    "ARCHS",
    "ConfigError",
    "DataConfig",
    "LoraConfig",
    "ModelConfig",
    "OptimConfig",
    "LoopConfig",
    "TrainConfig",
    "PRECISIONS",
    "DEVICES",
    "OPTIONS",
    "validate",
    "load_config",
    "config_from_dict",
    "require_datasets",
    "apply_overrides",
    "is_training_config",
]

PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")
# The architectures train.model can build (its MODEL_BUILDERS keys, checked there): named here so
# that validating a config needs neither train.model nor torch.
ARCHS = ("bert", "dnabert2", "llama", "ngram")
#: ``model.config`` keys of ``arch: ngram`` (:mod:`train.ngram`) and their defaults; ``stride``
#: None takes the tokenizer's (k for overlapping k-mers, else 1).
NGRAM_DEFAULTS: dict[str, Any] = {"ngram_sizes": [1, 2, 3], "hash_bits": 18, "hidden_size": 32, "stride": None}


class ConfigError(ValueError):
    """A config file or override that cannot be used; the message says which key and why."""


@dataclass
class DataConfig:
    """Where the shards are and how to load them.

    Attributes:
        train: training dataset directory (a converter output with ``manifest.json``);
            required (the config or ``--train``): there is no default dataset.
        val: validation dataset directory (same tokenizer and max length as ``train``);
            required (the config or ``--val``): a run never falls back to another val set.
        num_workers: DataLoader worker processes per training process.
        verify: check every shard's sha256 when opening (slow on big datasets).
        eval_max_reads: cap on validation reads for the periodic evaluations (the final
            evaluation always uses the whole validation set); ``None`` = all.
        tokenizer: tokenizer name the model expects (e.g. ``metagene-1``); datasets
            converted with another one are refused with a message. ``None`` = no check.
    """

    train: str | None = None
    val: str | None = None
    num_workers: int = 2
    verify: bool = False
    eval_max_reads: int | None = None
    tokenizer: str | None = None


@dataclass
class LoraConfig:
    """LoRA adapters through ``peft`` (optional extra ``lora``)."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class ModelConfig:
    """Which model to build (see :data:`train.model.MODEL_BUILDERS`).

    Attributes:
        arch: registry key: ``llama`` (METAGENE-1's architecture), ``bert``, ``dnabert2``.
        pretrained: hub id or local path for ``from_pretrained``; ``None`` builds a fresh
            model from ``config`` (no download).
        config: keyword overrides for the architecture's ``transformers`` config class
            (fresh models) or for the pretrained config (e.g. dropout).
        trust_remote_code: needed for models whose code lives on the hub (DNABERT-2).
        load_dtype: dtype the pretrained weights are loaded in (``bfloat16`` halves memory).
        gradient_checkpointing: recompute activations in backward (memory for time).
        lora: LoRA adapter settings, or ``None`` for full fine-tuning.
    """

    arch: str = "llama"
    pretrained: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    trust_remote_code: bool = False
    load_dtype: str | None = None
    gradient_checkpointing: bool = False
    lora: LoraConfig | None = None


@dataclass
class OptimConfig:
    """AdamW with linear warmup then cosine decay to ``min_lr_ratio * lr``."""

    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-8
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    label_smoothing: float = 0.0


@dataclass
class LoopConfig:
    """The training loop.

    Attributes:
        batch_size: reads per micro-batch per process; the global batch of one optimizer
            step is ``batch_size * grad_accum * world_size``.
        grad_accum: micro-batches accumulated per optimizer step.
        max_steps: optimizer steps of the whole run (also the cosine schedule's length).
        max_minutes: wall-clock budget: stop (checkpoint, evaluate) after this long. The cosine
            decay then follows whichever of steps and time runs out first (from the end of
            warmup), so a run cut by time ends at ``min_lr_ratio`` whatever the machine's load;
            ``log.jsonl`` records which budget drove it (``schedule``).
        stop_at_step: stop after this optimizer step as if interrupted (checkpoint only,
            no final evaluation); resume later with ``--resume``.
        eval_every: evaluate every N optimizer steps (0 = only at the end).
        eval_batch_size: reads per evaluation batch.
        checkpoint_every: checkpoint every N optimizer steps (0 = only at the end/stop).
        log_every: write a ``log.jsonl`` line every N optimizer steps.
        seed: seed of the model init, the shuffle and every RNG.
        precision: ``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``bf16`` or ``fp32``.
        device: ``auto`` (CUDA if available), ``cpu`` or ``cuda``.
        log_batches: also write the sampled read indices of every micro-batch to
            ``OUT/batches-rank{r}.jsonl`` (for tests and debugging the shuffle).
        baseline: after training, fit the 6-mer naive Bayes baseline on the same data and
            record ``baseline_val_accuracy`` in ``metrics.json``.
        baseline_max_reads: reads the baseline samples (seeded, uniformly) from each of train
            and val; ``None`` or 0 = all (hours at 558 M reads). metrics.json records how many
            it used.
        progress: show a tqdm progress bar (rank 0).
        threads: torch intra-op threads per process (``None`` = torch's default).
    """

    batch_size: int = 64
    grad_accum: int = 1
    max_steps: int = 1000
    max_minutes: float | None = None
    stop_at_step: int | None = None
    eval_every: int = 0
    eval_batch_size: int = 512
    checkpoint_every: int = 0
    log_every: int = 10
    seed: int = 0
    precision: str = "auto"
    device: str = "auto"
    log_batches: bool = False
    baseline: bool = True
    baseline_max_reads: int | None = 200_000
    progress: bool = True
    threads: int | None = None


@dataclass
class TrainConfig:
    """A whole training run (see the module docstring for the YAML layout)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    out: str = "out/run"
    resume: bool = False
    overwrite: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (written to ``OUT/config.json`` and into checkpoints)."""
        return dataclasses.asdict(self)


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "train": LoopConfig,
}


def _build(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        return cls()
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    kwargs = dict(raw)
    if cls is ModelConfig and kwargs.get("lora") is not None:
        kwargs["lora"] = _build(LoraConfig, kwargs["lora"], f"{where}.lora")
    if cls is OptimConfig and "betas" in kwargs:
        betas = kwargs["betas"]
        if not (isinstance(betas, (list, tuple)) and len(betas) == 2):
            raise ConfigError(f"{where}.betas: expected two numbers, got {betas!r}")
        try:
            kwargs["betas"] = (float(betas[0]), float(betas[1]))
        except (TypeError, ValueError):
            raise ConfigError(f"{where}.betas: expected two numbers, got {betas!r}") from None
    return cls(**kwargs)


def _number(kind: type, minimum: float | None = None, *, maximum: float | None = None,
            allow_none: bool = False) -> Callable[[Any], str | None]:
    """A check: an ``int`` (``float`` also takes ints; never a bool) within the bounds."""
    def check(value: Any) -> str | None:
        if value is None and allow_none:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
            return f"expected {kind.__name__}, got {value!r}"
        if minimum is not None and value < minimum:
            return f"must be >= {minimum}, got {value!r}"
        if maximum is not None and value > maximum:
            return f"must be <= {maximum}, got {value}"
        return None
    return check


def _num(field: str, flag: str | None, key: str, kind: type, minimum: float | None = None, *,
         maximum: float | None = None, allow_none: bool = False, help: str = "") -> Option:
    """A number option: the flag parses ``kind`` and the config value is checked as one."""
    return Option(field, flag, key, help=help, type=kind if flag else None,
                  check=_number(kind, minimum, maximum=maximum, allow_none=allow_none))


def _choice(choices: tuple[str | None, ...], words: str) -> Callable[[Any], str | None]:
    return lambda value: None if value in choices else f"{value!r}; choose {words}"


def _path(value: Any) -> str | None:
    return None if value is None or (isinstance(value, str) and value) else "expected a dataset directory path"


#: Every checked config key once: its flag (if any), help, type and limits. ``python -m train``'s
#: parser and overrides and :func:`validate` come from it (the flags in ``--help`` order).
OPTIONS: tuple[Option, ...] = (
    Option("train_dir", "--train", "data.train", help="training dataset directory", check=_path),
    Option("val_dir", "--val", "data.val", help="validation dataset directory", check=_path),
    Option("out", "--out", "out", help="output directory (checkpoint, metrics.json, confusion.png, log.jsonl)"),
    Option("resume", "--resume", "resume", action="store_true",
           help="continue from OUT/checkpoint.pt exactly where it stopped"),
    Option("overwrite", "--overwrite", "overwrite", action="store_true",
           help="replace the results of an earlier run in OUT (an OUT that is not empty is refused "
           "without --resume or --overwrite)"),
    _num("max_steps", "--max-steps", "train.max_steps", int, 1,
         help="optimizer steps of the run (and of the LR schedule)"),
    _num("max_minutes", "--max-minutes", "train.max_minutes", float, 0, allow_none=True,
         help="stop, checkpoint and evaluate after this many minutes "
         "(the learning-rate decay ends then if the steps would not fit)"),
    _num("stop_at_step", "--stop-at-step", "train.stop_at_step", int, 1, allow_none=True,
         help="stop after this step as if interrupted (checkpoint only)"),
    _num("seed", "--seed", "train.seed", int, 0),
    _num("batch_size", "--batch-size", "train.batch_size", int, 1, help="reads per micro-batch per process"),
    _num("grad_accum", "--grad-accum", "train.grad_accum", int, 1, help="micro-batches per optimizer step"),
    _num("lr", "--lr", "optim.lr", float, 0),
    _num("warmup_steps", "--warmup-steps", "optim.warmup_steps", int, 0),
    _num("eval_every", "--eval-every", "train.eval_every", int, 0, help="evaluate every N steps (0: only at the end)"),
    _num("eval_max_reads", "--eval-max-reads", "data.eval_max_reads", int, 1, allow_none=True,
         help="reads used by the periodic evaluations"),
    _num("checkpoint_every", "--checkpoint-every", "train.checkpoint_every", int, 0,
         help="checkpoint every N steps (0: only at the end)"),
    _num("num_workers", "--num-workers", "data.num_workers", int, 0, help="DataLoader workers per process"),
    Option("device", "--device", "train.device", choices=DEVICES, check=_choice(DEVICES, "auto, cpu or cuda")),
    Option("precision", "--precision", "train.precision", choices=PRECISIONS,
           check=_choice(PRECISIONS, f"one of {', '.join(PRECISIONS)}")),
    _num("threads", "--threads", "train.threads", int, 1, allow_none=True, help="torch threads per process"),
    Option("pretrained", "--pretrained", "model.pretrained",
           help="hub id or local path of pretrained weights (overrides model.pretrained)"),
    Option("log_batches", "--log-batches", "train.log_batches", action="store_true",
           help="write every micro-batch's read indices to OUT/batches-rank{r}.jsonl"),
    Option("progress", "--no-progress", "train.progress", action="store_false", help="no progress bar"),
    Option("baseline", "--no-baseline", "train.baseline", action="store_false",
           help="skip the 6-mer naive Bayes comparison at the end"),
    _num("baseline_max_reads", "--baseline-max-reads", "train.baseline_max_reads", int, 0, allow_none=True,
         help="reads the baseline samples from each of train and val (default 200,000; 0 = all)"),
    # Config only (no flag).
    _num("eval_batch_size", None, "train.eval_batch_size", int, 1),
    _num("log_every", None, "train.log_every", int, 1),
    *(_num(name, None, f"optim.{name}", float, 0) for name in ("eps", "grad_clip", "weight_decay", "label_smoothing")),
    _num("min_lr_ratio", None, "optim.min_lr_ratio", float, 0, maximum=1),
    Option("arch", None, "model.arch", check=_choice(ARCHS, f"one of {', '.join(sorted(ARCHS))}")),
    Option("model_config", None, "model.config",
           check=lambda v: None if isinstance(v, Mapping) else "expected a mapping of transformers config overrides"),
    Option("load_dtype", None, "model.load_dtype",
           check=_choice((None, "bfloat16", "float16", "float32"), "bfloat16, float16 or float32")),
    _num("lora_r", None, "model.lora.r", int, 1),
    Option("lora_target_modules", None, "model.lora.target_modules",
           check=lambda v: None if v else "name at least one module"),
)


def _value(cfg: TrainConfig, key: str) -> Any:
    """``cfg``'s value under a dotted key; ``_ABSENT`` below an unset section (``model.lora``)."""
    node: Any = cfg
    for part in key.split("."):
        if node is None:
            return _ABSENT
        node = getattr(node, part)
    return node


_ABSENT = object()


def _int_in(c: Mapping[str, Any], key: str, lo: int, hi: int) -> str | None:
    v = c[key]
    return None if type(v) is int and lo <= v <= hi else f"{key} must be an integer {lo}..{hi}, not {v!r}"


def _check_ngram(mc: ModelConfig) -> str | None:
    """Why ``arch: ngram`` cannot be built from ``mc``, or None."""
    for key in ("pretrained", "lora", "load_dtype"):
        if getattr(mc, key) is not None:
            return f"model.{key}: arch ngram has no pretrained weights, LoRA or load dtype; remove model.{key}"
    if mc.gradient_checkpointing or mc.trust_remote_code:
        return "arch ngram has no activation checkpointing or remote code; remove those model keys"
    unknown = sorted(set(mc.config) - set(NGRAM_DEFAULTS))
    if unknown:
        return f"model.config: unknown key(s) {', '.join(unknown)} for arch ngram; known: {', '.join(NGRAM_DEFAULTS)}"
    c = {**NGRAM_DEFAULTS, **mc.config}
    sizes = c["ngram_sizes"]
    if not (isinstance(sizes, list) and sizes and all(type(n) is int and 1 <= n <= 8 for n in sizes)
            and len(set(sizes)) == len(sizes)):
        return f"model.config.ngram_sizes must be a list of distinct integers 1..8, not {sizes!r}"
    for key, lo, hi in (("hash_bits", 8, 26), ("hidden_size", 1, 4096)):
        error = _int_in(c, key, lo, hi)
        if error:
            return f"model.config.{error}"
    if c["stride"] is not None and _int_in(c, "stride", 1, 64):
        return f"model.config.stride must be null (the tokenizer's) or an integer 1..64, not {c['stride']!r}"
    return None


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check types and ranges of every field (:data:`OPTIONS`); returns ``cfg`` or raises :class:`ConfigError`."""
    for o in OPTIONS:
        value = _value(cfg, o.key) if o.check and o.key else _ABSENT
        error = None if value is _ABSENT else o.check(value)  # type: ignore[misc]
        if error:
            raise ConfigError(f"{o.key}: {error}")
    error = _check_ngram(cfg.model) if cfg.model.arch == "ngram" else None
    if error:
        raise ConfigError(error)
    return cfg


def require_datasets(cfg: TrainConfig, *, where: str = "config") -> None:
    """Check that the run names both its datasets (after the command line's overrides).

    Raises:
        ConfigError: ``data.train`` or ``data.val`` is not set; the message says how to set it.
    """
    for name, flag in (("train", "--train"), ("val", "--val")):
        if getattr(cfg.data, name) is None:
            raise ConfigError(
                f"{where}: data.{name} is not set: name the {'training' if name == 'train' else 'validation'} "
                f"dataset with `data: {{{name}: DIR}}` in the config or `{flag} DIR` on the command line "
                f"(a converter output; `make convert` writes data/sample/{name})")


def config_from_dict(raw: Mapping[str, Any], *, where: str = "config") -> TrainConfig:
    """Build and validate a :class:`TrainConfig` from a parsed YAML mapping."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping at the top level")
    if "model" not in raw:
        raise ConfigError(f"{where}: no `model:` section; this is not a training config")
    allowed = set(_SECTIONS) | {"out", "resume", "overwrite"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
    try:
        sections = {name: _build(cls, raw.get(name), f"{where}: {name}") for name, cls in _SECTIONS.items()}
        cfg = TrainConfig(**sections, out=str(raw.get("out", "out/run")), resume=bool(raw.get("resume", False)),
                          overwrite=bool(raw.get("overwrite", False)))
    except TypeError as exc:  # a dataclass rejected a value shape
        raise ConfigError(f"{where}: {exc}") from None
    try:
        return validate(cfg)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def is_training_config(path: str | Path) -> bool:
    """True if the YAML file has a ``model:`` section (converter configs do not)."""
    try:
        raw = load_yaml(path)
    except ConfigFileError as exc:
        raise ConfigError(str(exc)) from None
    return isinstance(raw, Mapping) and "model" in raw


def load_config(path: str | Path) -> TrainConfig:
    """Read a YAML training config.

    Raises:
        ConfigError: missing file, YAML syntax error, unknown keys or bad values.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file (see configs/ for examples)")
    try:
        raw = load_yaml(path)  # bounded: an alias bomb is refused before anything walks it
    except ConfigFileError as exc:
        raise ConfigError(str(exc)) from None
    return config_from_dict(raw or {}, where=str(path))


def apply_overrides(cfg: TrainConfig, overrides: Mapping[str, Any]) -> TrainConfig:
    """Return a copy of ``cfg`` with dotted-key overrides (``train.max_steps``) applied.

    ``None`` values are skipped so that unset CLI flags keep the file's values.
    """
    raw = cfg.to_dict()
    for key, value in overrides.items():
        if value is None:
            continue
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"override {key}: no section {part!r}")
            node = node[part]
        if leaf not in node:
            raise ConfigError(f"override {key}: unknown key {leaf!r}")
        node[leaf] = value
    return config_from_dict(raw, where="config (with overrides)")
