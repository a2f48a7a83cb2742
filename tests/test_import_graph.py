"""The import graph of the project's packages has no cycle, and the layers point one way.

Every `import` / `from ... import` in agent/ and envs/ counts, also those inside functions: a
lazy import still ties two modules together. A package's `__init__` counts as a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "envs")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """Project modules that `path` imports (a `from pkg import mod` names the submodule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if target in known and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    return {name: imported_modules(path, name, known) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def ignoring_package_inits(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """A package `__init__` that re-exports its submodules is a facade, not a dependency of
    them: drop edges from a package to its own submodules."""
    return {
        node: {t for t in targets if not t.startswith(node + ".")}
        for node, targets in graph.items()
    }


def test_no_import_cycle():
    cycle = find_cycle(ignoring_package_inits(import_graph()))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_envs_never_imports_agent():
    graph = import_graph()
    offenders = [
        n
        for n, targets in graph.items()
        if n.startswith("envs") and any(t.startswith("agent") for t in targets)
    ]
    assert not offenders, offenders


def test_agents_import_neither_envs_nor_the_runner():
    graph = import_graph()
    agent_packages = ("agent.bc", "agent.leq", "agent.vem", "agent.gem", "agent.world_model")
    for name, targets in graph.items():
        if name.startswith(agent_packages):
            bad = [t for t in targets if t.startswith(("envs", "agent.runner"))]
            assert not bad, f"{name} imports {bad}"


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
