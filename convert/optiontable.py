"""Option tables: each command-line / config option written once, as an :class:`Option` record.

A tool lists its options in one tuple of records; its argparse flags, its YAML key mapping
(with unknown-key and type errors naming the file), its ``--config`` help listing, its value
checks and its README option table all come from that tuple. Used by the converter
(:mod:`convert.options`) and by training (:mod:`train.cli`). Standard library only, so
importing it costs nothing beyond ``import convert``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Sequence

__all__ = ["Option", "add_arguments", "flatten", "fields_from_yaml", "given_fields", "config_keys_help",
           "markdown_table", "coerce_values", "check_values"]


@dataclass(frozen=True)
class Option:
    """One option of a tool.

    Attributes:
        field: the attribute it fills (argparse ``dest`` and the options object's field).
        flag: the command-line flag (``--max-length``), or ``None`` for a config-only key.
        key: the dotted YAML key (``tokenizer.max_length``), or ``None`` for a flag-only option.
        help: the ``--help`` text (argparse ``%`` escapes included).
        doc: the README table's "meaning" cell; ``None`` keeps the option out of that table.
        label: the README table's option cell (default: the flag and its metavar).
        type: argparse ``type`` (a parser of the flag's text).
        choices: the values the flag accepts.
        metavar: argparse ``metavar``.
        action: argparse ``action`` (``store_true``, ...); ``None`` takes a value.
        default: argparse default. ``None`` (the usual) means "not given", so a config file's
            value or the library default applies and ``--resume`` knows what was given.
        required: argparse ``required``.
        positional: a positional argument (``nargs="+"``) named by ``metavar``.
        yaml_types: the YAML value types accepted under ``key`` (``bool`` never is).
        expected: what a wrong YAML value's error says is expected (default: the choices).
        nullable: ``None`` passes the choices check (an unset option with no default value).
        coerce: turns a value from the flag or the config file into the field's type
            (raises ``ValueError`` or ``argparse.ArgumentTypeError`` naming what is wrong).
        check: ``check(value)`` -> an error message naming the flag, or ``None`` when valid
            (default, with ``choices``: the value must be one of them).
    """

    field: str
    flag: str | None
    key: str | None = None
    help: str = ""
    doc: str | None = None
    label: str | None = None
    type: Callable[[str], Any] | None = None
    choices: tuple[Any, ...] | None = None
    metavar: str | None = None
    action: str | None = None
    default: Any = None
    required: bool = False
    positional: bool = False
    yaml_types: tuple[type, ...] = (str,)
    expected: str = ""
    nullable: bool = False
    coerce: Callable[[Any], Any] | None = None
    check: Callable[[Any], str | None] | None = None

    def expects(self) -> str:
        """What a config value must be, in words (``mmap or compressed``)."""
        if self.expected or not self.choices:
            return self.expected
        return ", ".join(self.choices[:-1]) + " or " + self.choices[-1]

    def error(self, value: Any) -> str | None:
        """Why ``value`` is not valid for this option (naming its flag), or ``None``."""
        if self.check is not None:
            return self.check(value)
        if self.choices is None or value in self.choices or (self.nullable and value is None):
            return None
        return f"{self.flag} must be one of {', '.join(self.choices)}, got {value!r}"

    def cell(self) -> str:
        """The README table's option cell: ``--flag METAVAR`` (or the explicit label)."""
        if self.label is not None:
            return self.label
        value = "" if self.action else f" {self.metavar or '|'.join(self.choices or ()) or 'VALUE'}"
        return f"`{self.flag}{value}`".replace("|", "\\|")


def add_arguments(parser: argparse.ArgumentParser, options: Iterable[Option]) -> None:
    """Add every option that has a flag (or is positional) to ``parser``, in table order."""
    for o in options:
        if o.positional:
            parser.add_argument(o.field, nargs="+", metavar=o.metavar, help=o.help)
            continue
        if o.flag is None:
            continue
        kwargs: dict[str, Any] = {"dest": o.field, "help": o.help, "default": o.default}
        if o.action:
            kwargs["action"] = o.action
        else:
            kwargs.update(type=o.type, choices=o.choices, metavar=o.metavar)
        if o.required:
            kwargs["required"] = True
        parser.add_argument(o.flag, **kwargs)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """A nested YAML mapping as ``{"section.key": value}`` (lists and scalars are leaves)."""
    if not isinstance(node, dict):
        return {prefix: node}
    flat: dict[str, Any] = {}
    for k, v in node.items():
        flat.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return flat


def fields_from_yaml(raw: Any, options: Sequence[Option], path: str) -> dict[str, Any]:
    """Map a parsed YAML config onto option fields.

    Raises:
        ValueError: naming ``path`` and the key: not a mapping, an unknown key (with the
            known ones), or a value of the wrong type (with what is expected).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of sections (data:, tokenizer:, ...), got a {type(raw).__name__}")
    by_key = {o.key: o for o in options if o.key}
    flat = flatten(raw)
    unknown = sorted(k for k in flat if k not in by_key)
    if unknown:
        raise ValueError(f"{path}: unknown config keys {unknown}; known: {sorted(by_key)}")
    for key, value in flat.items():
        if not _yaml_value_ok(by_key[key], value):
            raise ValueError(f"{path}: {key}: expected {by_key[key].expects()}, got {value!r}")
    return {by_key[k].field: v for k, v in flat.items()}


def _yaml_value_ok(option: Option, value: Any) -> bool:
    """Whether ``value`` has a type ``option`` accepts; a string where a number is expected
    must be one its ``coerce`` reads (``auto``, ``2G``)."""
    if not isinstance(value, option.yaml_types) or isinstance(value, bool):
        return False
    if isinstance(value, str) and int in option.yaml_types:
        try:
            option.coerce(value)  # type: ignore[misc]
        except (argparse.ArgumentTypeError, ValueError, TypeError):
            return False
    return True


def given_fields(args: argparse.Namespace, options: Iterable[Option]) -> dict[str, Any]:
    """The config-file options given as flags (``None`` = not given): ``{field: value}``."""
    return {o.field: getattr(args, o.field) for o in options
            if o.key and o.flag and getattr(args, o.field) is not None}


def config_keys_help(options: Iterable[Option]) -> str:
    """The keys a config file may hold, comma-separated, in table order."""
    return ", ".join(o.key for o in options if o.key)


def markdown_table(options: Iterable[Option]) -> str:
    """The README's option table (``| option | meaning |``), one row per documented option."""
    rows = ["| option | meaning |", "|---|---|"]
    rows += [f"| {o.cell()} | {o.doc} |" for o in options if o.doc is not None]
    return "\n".join(rows) + "\n"


def check_values(values: Mapping[str, Any], options: Iterable[Option]) -> None:
    """Check each option's ``values[field]`` (:meth:`Option.error`); the first failure raises ``ValueError``."""
    for o in options:
        error = o.error(values[o.field]) if o.field in values else None
        if error:
            raise ValueError(error)


def coerce_values(values: dict[str, Any], options: Iterable[Option]) -> None:
    """Apply each option's ``coerce`` to ``values[field]`` in place.

    Raises:
        ValueError: ``str(exc)`` says what is wrong; ``exc.field`` names the option's field.
    """
    for o in options:
        if o.coerce is not None and o.field in values:
            try:
                values[o.field] = o.coerce(values[o.field])
            except (argparse.ArgumentTypeError, ValueError) as exc:
                error = ValueError(str(exc))
                error.field = o.field  # type: ignore[attr-defined]
                raise error from None
