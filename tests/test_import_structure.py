"""The package's import graph: no cycles, not even through imports deferred into functions
(those exist only to keep start-up and local-only use light), and the emulator stays out of
the runtime."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import co_sidecar

ROOT = Path(co_sidecar.__file__).parent


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in ROOT.rglob("*.py")}


def _targets(module: str, node: ast.ImportFrom | ast.Import, package: bool) -> set[str]:
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in MODULES}
    base = module.split(".") if package else module.split(".")[:-1]
    if node.level:
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    found = {f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names}
    return {t for t in found if t in MODULES}


def import_graph() -> dict[str, set[str]]:
    """Every import of a co_sidecar module by another, deferred ones included; imports
    under `if TYPE_CHECKING:` are for annotations only and left out."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for inner in ast.walk(node)
        }
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in typing_only:
                deps |= _targets(module, node, path.name == "__init__.py")
        graph[module] = deps - {module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            component.append(v)
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            strong(v)
    return out


def test_no_import_cycles_even_through_deferred_imports() -> None:
    graph = import_graph()
    assert "co_sidecar.cloud.preflight" in graph["co_sidecar.cloud.executor"]  # the graph is real
    assert "co_sidecar.cloud.preflight" in graph["co_sidecar.router"]  # deferred ones counted
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_the_commands_that_serve_it_import_the_emulator() -> None:
    graph = import_graph()
    users = sorted(m for m, deps in graph.items() if "co_sidecar.testing.emulator" in deps)
    assert users == ["co_sidecar.canary", "co_sidecar.cli"]
    assert not any(m.startswith("co_sidecar.cloud.emulator") for m in MODULES)


def test_the_emulator_command_still_runs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "co_sidecar", "emulator", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0 and "--faults" in out.stdout, out.stderr
