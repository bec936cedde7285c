"""The import graph of shards/, convert/, loaders/ and train/ (issue 20, rules 1, 5 and 6).

Parsed with ``ast`` only (nothing is imported), so the checks cost milliseconds:
no private name taken from another module, no import cycle (function-level,
lazy imports count as edges), no package importing a package above it, and no
function over 80 lines (class over 300) in shards/, convert/ or train/; ``shards`` (the
format) at the bottom, importing none of the others.
"""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterator

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGES = ("shards", "convert", "loaders", "train")

# Private names still taken across modules, each with its reason.  Shrink, never grow
# (test_allow_lists_are_current fails on an entry that no longer applies).
PRIVATE_ALLOW: set[tuple[str, str]] = set()

# Known circles, each with its reason.  Shrink, never grow.
CYCLE_ALLOW: list[list[str]] = []

# A package may import only the packages listed for it ("nothing points up").
ALLOWED_PACKAGES = {
    "shards": {"shards"},  # the format is the ground floor
    "convert": {"shards", "convert"},
    "loaders": {"shards", "loaders"},
    "train": {"shards", "train", "loaders", "convert"},
}

MAX_FUNCTION_LINES = 80
# Functions allowed to stay longer, each with the reason it is one piece.
LONG_ALLOW: dict[str, str] = {}


def _modules() -> dict[str, pathlib.Path]:
    """Dotted module name -> file, for every module of the three packages."""
    found = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _package_of(module: str) -> str:
    """The dotted package a module's relative imports resolve against."""
    is_pkg = MODULES[module].name == "__init__.py"
    return module if is_pkg else module.rpartition(".")[0]


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """Absolute dotted name of an ``ImportFrom`` (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    base = _package_of(module).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (never executed: no import edge)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in ast.walk(child))
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(module: str) -> Iterator[tuple[str, str | None, int, str]]:
    """(imported module, imported name or None, line, local binding) for every import, at any depth."""
    for node in _runtime_nodes(TREES[module]):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno, alias.asname or alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                local = alias.asname or alias.name
                # ``from pkg import mod`` imports the module, not a name
                if sub in MODULES:
                    yield sub, None, node.lineno, local
                else:
                    yield target, alias.name, node.lineno, local


def _project_module(name: str) -> str | None:
    """The project module an import names (longest known prefix), else None."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in MODULES:
            return ".".join(parts)
        parts.pop()
    return None


def _graph() -> dict[str, set[str]]:
    """Module -> project modules it imports (a package's __init__ not counted as a stop)."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for target, _name, _line, _local in _imports(module):
            dest = _project_module(target)
            if dest is not None and dest != module and dest not in PACKAGES:
                graph[module].add(dest)
    return graph


def _private_reach_ins(module: str) -> Iterator[tuple[str, str]]:
    """(private dotted name, where) taken by ``from X import _n`` or ``alias._n``."""
    rel = MODULES[module].relative_to(ROOT)
    aliases: dict[str, str] = {}
    for target, name, line, local in _imports(module):
        if _project_module(target) is None:
            continue
        if name is None:
            # a bare ``import a.b`` binds the package ``a``, not ``a.b``
            bare = "." in target and local == target.split(".")[0]
            aliases[local] = local if bare else target
        elif name.startswith("_") and not name.startswith("__"):
            yield f"{target}.{name}", f"{rel}:{line}"
    for node in ast.walk(TREES[module]):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and isinstance(node.value, ast.Name)
            and aliases.get(node.value.id, module) != module
        ):
            yield f"{aliases[node.value.id]}.{node.attr}", f"{rel}:{node.lineno}"


def test_no_private_name_taken_from_another_module() -> None:
    """(a) a ``_name`` belongs to its module: share it under a public name."""
    bad = sorted(
        f"{where} takes {dotted}"
        for module in MODULES
        for dotted, where in _private_reach_ins(module)
        if (module, dotted) not in PRIVATE_ALLOW
    )
    assert not bad, "private names taken across modules:\n" + "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            comp = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                comp.append(top)
                if top == node:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_no_import_cycle() -> None:
    """(b) lazy imports inside functions count: a cycle deferred is still a cycle."""
    cycles = [c for c in _cycles(_graph()) if c not in CYCLE_ALLOW]
    assert not cycles, "import cycles (break them: move the shared part down):\n" + "\n".join(map(str, cycles))


def test_allow_lists_are_current() -> None:
    """An allowance whose reach-in or cycle is gone is removed, so none returns unnoticed."""
    taken = {(module, dotted) for module in MODULES for dotted, _where in _private_reach_ins(module)}
    assert sorted(PRIVATE_ALLOW - taken) == []
    assert [c for c in CYCLE_ALLOW if c not in _cycles(_graph())] == []


def test_reach_in_finder_sees_both_spellings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself can fail: ``from .unit import _x`` and ``fmt._y`` (inside a function) are found."""
    source = "from .unit import _x\n\ndef f():\n    import shards.writer as fmt\n    return fmt._y, fmt.__name__\n"
    monkeypatch.setitem(MODULES, "convert.planted", ROOT / "convert" / "planted.py")
    monkeypatch.setitem(TREES, "convert.planted", ast.parse(source))
    assert sorted(d for d, _ in _private_reach_ins("convert.planted")) == ["convert.unit._x", "shards.writer._y"]


def test_cycle_finder_finds_a_lazy_cycle() -> None:
    """The checker itself can fail: a two-module circle is reported."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_no_package_points_up() -> None:
    """(c) shards imports none of the others; loaders never imports convert or train; convert imports neither loaders nor train."""
    bad = []
    for module in MODULES:
        pkg = module.split(".")[0]
        for target, _name, line, _local in _imports(module):
            top = target.split(".")[0]
            if top in PACKAGES and top not in ALLOWED_PACKAGES[pkg]:
                bad.append(f"{MODULES[module].relative_to(ROOT)}:{line} imports {target}")
    assert not bad, "\n".join(bad)


def _functions(pkgs: tuple[str, ...]) -> Iterator[tuple[str, int]]:
    """(file:line name, line count) of every function in the packages."""
    for module, tree in TREES.items():
        if module.split(".")[0] not in pkgs:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                rel = MODULES[module].relative_to(ROOT)
                yield f"{rel}:{node.name}", node.end_lineno - node.lineno + 1  # type: ignore[operator]


@pytest.mark.parametrize("pkg", ["shards", "convert", "train"])
def test_no_function_over_the_limit(pkg: str) -> None:
    """Rule 6: long functions are split along their stages, or say why not."""
    long = [f"{name} ({n} lines)" for name, n in _functions((pkg,)) if n > MAX_FUNCTION_LINES and name not in LONG_ALLOW]
    assert not long, "split these along their stages:\n" + "\n".join(long)


MAX_CLASS_LINES = 300


@pytest.mark.parametrize("pkg", ["shards", "convert", "train"])
def test_no_class_over_the_limit(pkg: str) -> None:
    """Rule 6: a class over ~300 lines has more than one job."""
    long = []
    for module, tree in TREES.items():
        if module.split(".")[0] == pkg:
            long += [f"{MODULES[module].relative_to(ROOT)}:{n.name} ({n.end_lineno - n.lineno + 1} lines)"  # type: ignore[operator]
                     for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.end_lineno - n.lineno + 1 > MAX_CLASS_LINES]  # type: ignore[operator]
    assert not long, "\n".join(long)



# Packages of the source checkout that an install does not ship (tests/test_bench_package.py).
CHECKOUT_ONLY = ("readshard_bench", "benchmarks", "sample")


def _module_level_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Nodes run at import time: everything but function bodies and ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in _module_level_nodes(child))
            continue
        yield node
        yield from _module_level_nodes(node)


def test_installed_packages_import_no_checkout_only_package_at_module_level() -> None:
    """An installed package importing the bench or the sample at import time breaks the install;
    a function-level import (``loaders.bench.main``) is guarded and says where to run it."""
    bad = []
    for module, tree in TREES.items():
        for node in _module_level_nodes(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            bad += [f"{MODULES[module].relative_to(ROOT)}:{node.lineno} imports {n}"
                    for n in names if n.split(".")[0] in CHECKOUT_ONLY]
    assert not bad, "\n".join(bad)
