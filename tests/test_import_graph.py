"""The import graph of the project's packages has no cycle, and the layers point one way.

Every `import` / `from ... import` in agent/ and envs/ counts, also those inside functions: a
lazy import still ties two modules together. A package's `__init__` counts as a module.

Method folders (every package of agent/ but the runner and the world models) are siblings: what
two of them share lives in agent/'s top-level modules, so none imports another.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "envs")
NOT_METHODS = ("agent.runner", "agent.world_model")


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


def method_packages() -> list[str]:
    """agent/'s method folders: its packages, less the runner and the world models."""
    found = [f"agent.{p.parent.name}" for p in (ROOT / "agent").glob("*/__init__.py")]
    return sorted(name for name in found if name not in NOT_METHODS)


def package_of(module: str, packages: list[str]) -> str | None:
    """The package in `packages` that holds `module` (or is it), else None."""
    return next((p for p in packages if module == p or module.startswith(p + ".")), None)


def cross_method_imports(graph: dict[str, set[str]], methods: list[str]) -> list[str]:
    """'a imports b' for every edge from one method folder into another."""
    found = []
    for name, targets in sorted(graph.items()):
        own = package_of(name, methods)
        for target in sorted(targets):
            other = package_of(target, methods)
            if own and other and other != own:
                found.append(f"{name} imports {target}")
    return found


def test_no_method_folder_imports_another():
    methods = method_packages()
    assert {"agent.bc", "agent.leq", "agent.leq_pixels", "agent.sac", "agent.td3"} <= set(methods)
    offenders = cross_method_imports(import_graph(), methods)
    assert not offenders, "shared code belongs in agent/'s top-level modules: " + "; ".join(
        offenders
    )


def test_the_cross_method_check_finds_one():
    methods = ["agent.leq", "agent.leq_pixels", "agent.sac", "agent.td3"]
    graph = {
        "agent.td3.agent": {"agent.sac.networks", "agent.networks"},  # today's TD3 did this
        "agent.leq_pixels.dpg": {"agent.leq_pixels.losses", "agent.returns"},
        "agent.leq.update": {"agent.leq.losses"},
    }
    assert cross_method_imports(graph, methods) == ["agent.td3.agent imports agent.sac.networks"]


def test_agents_import_neither_envs_nor_the_runner():
    graph = import_graph()
    agent_packages = (*method_packages(), "agent.world_model")
    for name, targets in graph.items():
        if name.startswith(agent_packages):
            bad = [t for t in targets if t.startswith(("envs", "agent.runner"))]
            assert not bad, f"{name} imports {bad}"


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
