"""The package's structure, read from its own imports (module level, inside functions and
under TYPE_CHECKING alike), so it stays as it was made: no import cycles, small modules,
optional layers the core never imports, adapters on ``store.engine`` only."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "agentmem"
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imported(module: str, tree: ast.Module) -> Iterator[str]:
    """Every agentmem module ``module`` imports, wherever the import statement is."""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # ``from a import b`` imports the module a.b when there is one, else names of a.
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names
            ]
        else:
            continue
        for name in names:
            if name in MODULES and name != module:
                yield name


GRAPH = {module: set(_imported(module, ast.parse(path.read_text()))) for module, path in MODULES.items()}


def _reaches(start: str, target: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        for nxt in GRAPH[todo.pop()]:
            if nxt == target:
                return True
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in GRAPH[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_is_read() -> None:
    """The parser sees the package: store imports the engine, the CLI the testing server."""
    assert "agentmem.engine" in GRAPH["agentmem.store"]
    assert "agentmem.testing.embedded" in GRAPH["agentmem.cli"]
    assert "agentmem.telemetry" in GRAPH["agentmem.engine"]  # the lazy import, counted


def test_no_import_cycles() -> None:
    """No module imports (directly or through others) one that imports it back."""
    assert _cycles() == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_are_small(module: str) -> None:
    """No module passes 500 lines (one concept each)."""
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines"


def test_the_store_imports_no_optional_layer() -> None:
    """The store reaches neither the journal nor telemetry, even lazily: they are layers over it."""
    for layer in ("agentmem.journaled", "agentmem.journal", "agentmem.telemetry", "agentmem.factory"):
        assert layer not in GRAPH["agentmem.store"]
    assert not _reaches("agentmem.store", "agentmem.journaled")


def test_telemetry_imports_no_store() -> None:
    """Telemetry is told of operations; it imports no store, engine or package root."""
    for module in ("agentmem", "agentmem.store", "agentmem.journaled", "agentmem.engine"):
        assert not _reaches("agentmem.telemetry", module), module


def test_only_testing_and_the_cli_import_agentmem_testing() -> None:
    """Core modules and adapters never import the test helpers (a test extra); the CLI and
    the benchmark it runs (``agentmem bench``, top layer) start throwaway servers with them."""
    importers = {
        module
        for module, imported in GRAPH.items()
        if any(name == "agentmem.testing" or name.startswith("agentmem.testing.") for name in imported)
        and not (module == "agentmem.testing" or module.startswith("agentmem.testing."))
    }
    assert {m for m in importers if not m.startswith("agentmem.bench.")} <= {"agentmem.cli"}


def test_adapters_use_no_private_store_names() -> None:
    """Adapters use store.engine and the store's public API, never a store._name."""
    private = re.compile(r"\bstore\._[a-z]")
    offenders = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted((PACKAGE / "integrations").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert offenders == []
