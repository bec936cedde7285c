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
from typing import Any, Mapping

from convert.safeyaml import ConfigFileError, load_yaml

__all__ = [
    "ARCHS",
    "ConfigError",
    "DataConfig",
    "LoraConfig",
    "ModelConfig",
    "OptimConfig",
    "LoopConfig",
    "TrainConfig",
    "PRECISIONS",
    "load_config",
    "config_from_dict",
    "require_datasets",
    "apply_overrides",
    "is_training_config",
]

PRECISIONS = ("auto", "bf16", "fp32")
# The architectures train.model can build (its MODEL_BUILDERS keys, checked there): named here so
# that validating a config needs neither train.model nor torch.
ARCHS = ("bert", "dnabert2", "llama")


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


def _check_number(where: str, value: Any, *, kind: type, minimum: float | None = None,
                  allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok:
        raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{where}: must be >= {minimum}, got {value!r}")


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check types and ranges of every field; returns ``cfg`` or raises :class:`ConfigError`."""
    t, o, d, m = cfg.train, cfg.optim, cfg.data, cfg.model
    for name, minimum in (("batch_size", 1), ("grad_accum", 1), ("max_steps", 1), ("eval_batch_size", 1),
                          ("eval_every", 0), ("checkpoint_every", 0), ("log_every", 1), ("seed", 0)):
        _check_number(f"train.{name}", getattr(t, name), kind=int, minimum=minimum)
    _check_number("train.max_minutes", t.max_minutes, kind=float, minimum=0, allow_none=True)
    _check_number("train.stop_at_step", t.stop_at_step, kind=int, minimum=1, allow_none=True)
    _check_number("train.threads", t.threads, kind=int, minimum=1, allow_none=True)
    if t.precision not in PRECISIONS:
        raise ConfigError(f"train.precision: {t.precision!r}; choose one of {', '.join(PRECISIONS)}")
    if t.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"train.device: {t.device!r}; choose auto, cpu or cuda")
    for name in ("lr", "eps", "grad_clip", "weight_decay", "min_lr_ratio", "label_smoothing"):
        _check_number(f"optim.{name}", getattr(o, name), kind=float, minimum=0)
    _check_number("optim.warmup_steps", o.warmup_steps, kind=int, minimum=0)
    if o.min_lr_ratio > 1:
        raise ConfigError(f"optim.min_lr_ratio: must be <= 1, got {o.min_lr_ratio}")
    _check_number("data.num_workers", d.num_workers, kind=int, minimum=0)
    _check_number("data.eval_max_reads", d.eval_max_reads, kind=int, minimum=1, allow_none=True)
    _check_number("train.baseline_max_reads", t.baseline_max_reads, kind=int, minimum=0, allow_none=True)
    for name in ("train", "val"):
        value = getattr(d, name)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"data.{name}: expected a dataset directory path")
    if m.arch not in ARCHS:
        raise ConfigError(f"model.arch: {m.arch!r}; choose one of {', '.join(sorted(ARCHS))}")
    if not isinstance(m.config, Mapping):
        raise ConfigError("model.config: expected a mapping of transformers config overrides")
    if m.load_dtype not in (None, "bfloat16", "float16", "float32"):
        raise ConfigError(f"model.load_dtype: {m.load_dtype!r}; choose bfloat16, float16 or float32")
    if m.lora is not None:
        _check_number("model.lora.r", m.lora.r, kind=int, minimum=1)
        if not m.lora.target_modules:
            raise ConfigError("model.lora.target_modules: name at least one module")
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
