"""Bounded YAML loading for config files (converter and trainer).

A config is untrusted input. ``yaml.safe_load`` builds no objects but still expands
aliases: a few hundred bytes of nested ``&a [*a, *a, ...]`` (an "alias bomb") become
gigabytes as soon as anything walks the result. Here the composed node graph is measured
*with aliases expanded* before anything is constructed, and the file size is capped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ConfigFileError", "load_yaml", "MAX_BYTES", "MAX_NODES"]

MAX_BYTES = 1 << 20  # a config is a few hundred bytes; 1 MiB is generous
MAX_NODES = 100_000  # scalars + collections after alias expansion


class ConfigFileError(ValueError):
    """A config file that cannot be read, is not YAML, or is too big once expanded."""


def _expanded_size(node: yaml.Node, path: Path, limit: int) -> int:
    """Number of nodes ``node`` stands for with every alias expanded; raises past ``limit``."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(n: yaml.Node) -> int:
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ConfigFileError(f"{path}: a YAML alias refers to itself (recursive anchor); configs cannot be recursive")
        active.add(key)
        total = 1
        if isinstance(n, yaml.SequenceNode):
            children = n.value
        elif isinstance(n, yaml.MappingNode):
            children = [x for pair in n.value for x in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                mark = n.start_mark
                raise ConfigFileError(
                    f"{path}, line {mark.line + 1}: the YAML expands to more than {limit:,} values once its "
                    "aliases (*name) are expanded (an alias bomb?); write the config out without nested aliases"
                )
        active.discard(key)
        sizes[key] = total
        return total

    return size(node)


def load_yaml(path: str | os.PathLike[str], *, max_bytes: int = MAX_BYTES, max_nodes: int = MAX_NODES) -> Any:
    """Parse one YAML document from ``path`` with safe types only, bounded in size.

    Raises:
        ConfigFileError: missing or unreadable file, over ``max_bytes``, not UTF-8, not
            valid YAML, recursive, or over ``max_nodes`` values with aliases expanded; the
            message names the file (and line where there is one).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot read the config ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise ConfigFileError(f"{path}: the config is over {max_bytes:,} bytes; a config is a short YAML file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigFileError(f"{path}, line {line}: not UTF-8 text (byte {data[exc.start]:#04x})") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, path, max_nodes)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigFileError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None
    except RecursionError:
        raise ConfigFileError(f"{path}: the YAML is nested too deeply") from None
    finally:
        loader.dispose()
