"""The import rules and size limits of docs/ARCHITECTURE.md, enforced on the code as it is.

Read from the source with ``ast`` (nothing is imported), so a rule broken by a lazy import inside
a function is caught too.
"""

from __future__ import annotations

import ast
import gc
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.tools import REPO

PACKAGE = REPO / "bankflow_infra"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60

# Lowest first: a package may import its own layer and the ones before it, never a later one.
LAYERS = ("contract", "settings", "catalog", "stackfile", "render", "components", "program", "ops")
# host/ runs on the droplet with the system python3: the stdlib and the shipped contract only.
HOST = "host"
PULUMI_FREE = ("contract", "settings", "catalog", "stackfile", "render", HOST)
STDLIB_ONLY = ("contract", HOST)


@dataclass(frozen=True)
class Import:
    module: str  # dotted name of the importing module
    target: str  # dotted name imported (absolute, relative ones resolved)
    line: int


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level == 0:
        base = node.module or ""
    else:
        anchor = module.split(".")
        if not is_package:
            anchor = anchor[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, node.module] if node.module else anchor)
    # `from pkg import mod` imports pkg.mod when mod is a module of ours.
    names = [f"{base}.{alias.name}" for alias in node.names]
    ours = [n for n in names if _is_module(n)]
    return ours or [base]


def _is_module(dotted: str) -> bool:
    path = REPO.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def parse(path: Path) -> ast.Module:
    """ast.parse with the garbage collector held off: on CPython 3.11 a finalizer that runs Python
    code mid-parse (e.g. asyncio logging an earlier test's unretrieved Pulumi future) changes the
    recursion depth and ast raises "SystemError: AST constructor recursion depth mismatch"."""
    gc.collect()
    gc.disable()
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    finally:
        gc.enable()


def imports_of(path: Path) -> Iterator[Import]:
    module = module_name(path)
    tree = parse(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            for target in _resolve(module, path.name == "__init__.py", node):
                yield Import(module, target, node.lineno)


def area(dotted: str) -> str:
    """The package of ours a module belongs to (``bankflow_infra.ops.cli.health`` -> ``ops``)."""
    parts = dotted.split(".")
    return parts[1] if len(parts) > 1 else ""


ALL_IMPORTS = [imp for path in sources() for imp in imports_of(path)]


def test_lower_layers_never_import_upper_ones() -> None:
    wrong = []
    for imp in ALL_IMPORTS:
        if not imp.target.startswith("bankflow_infra."):
            continue
        source, target = area(imp.module), area(imp.target)
        if source == HOST or target == HOST:
            if source != target and not (source == HOST and target == "contract"):
                wrong.append(f"{imp.module}:{imp.line} imports {imp.target} (host/ is the droplet's own)")
            continue
        if LAYERS.index(target) > LAYERS.index(source):
            wrong.append(f"{imp.module}:{imp.line} imports {imp.target} (an upper layer)")
    assert wrong == []


@pytest.mark.parametrize("package", STDLIB_ONLY)
def test_stdlib_only_packages(package: str) -> None:
    wrong = [
        f"{imp.module}:{imp.line} imports {imp.target}"
        for imp in ALL_IMPORTS
        if area(imp.module) == package
        and imp.target.split(".")[0] not in sys.stdlib_module_names
        and imp.target != "__future__"
        and not (imp.target.startswith("bankflow_infra.") and area(imp.target) in ("contract", package))
    ]
    assert wrong == []


@pytest.mark.parametrize("package", PULUMI_FREE)
def test_pulumi_free_packages(package: str) -> None:
    wrong = [
        f"{imp.module}:{imp.line} imports {imp.target}"
        for imp in ALL_IMPORTS
        if area(imp.module) == package and imp.target.split(".")[0].startswith("pulumi")
    ]
    assert wrong == []


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among our modules, as the path that closes it, or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_no_import_cycle() -> None:
    edges: dict[str, set[str]] = {}
    for imp in ALL_IMPORTS:
        if imp.target.startswith("bankflow_infra.") and imp.target != imp.module:
            # A package's __init__ re-exporting its own modules is not a cycle through them.
            if imp.target.startswith(f"{imp.module}."):
                continue
            edges.setdefault(imp.module, set()).add(imp.target)
    assert find_cycle(edges) is None


def test_the_cycle_finder_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_modules_stay_small() -> None:
    big = [
        f"{path.relative_to(REPO)}: {count} lines"
        for path in sources()
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    ]
    assert big == []


def test_functions_stay_small() -> None:
    long = []
    for path in sources():
        for node in ast.walk(parse(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name}: {length} lines")
    assert long == []
