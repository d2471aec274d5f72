"""The code keeps its shape: type hints checked strictly, lint clean."""

from __future__ import annotations

import ast
import subprocess
import sys

from gateway.settings import PROJECT_DIR


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=PROJECT_DIR,
                          capture_output=True, text=True, timeout=300)


def test_type_hints_check_strictly() -> None:
    result = run("mypy", "gateway")
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_is_clean() -> None:
    result = run("ruff", "check", "gateway", "tests", "bench", "dev.py")
    assert result.returncode == 0, result.stdout + result.stderr


def _gateway_imports() -> dict[str, set[str]]:
    """Module -> the gateway modules it imports, wherever the import stands (function
    bodies and TYPE_CHECKING blocks count: a hidden cycle is still a cycle)."""
    files = {".".join(path.relative_to(PROJECT_DIR).with_suffix("").parts)
             .removesuffix(".__init__"): path
             for path in (PROJECT_DIR / "gateway").rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in files:
                graph[name].add(node.module)
                graph[name].update(f"{node.module}.{alias.name}" for alias in node.names
                                   if f"{node.module}.{alias.name}" in files)
            elif isinstance(node, ast.Import):
                graph[name].update(alias.name for alias in node.names
                                   if alias.name in files)
    return graph


def test_no_import_cycles_inside_the_package() -> None:
    graph = _gateway_imports()
    cycles: list[list[str]] = []
    state: dict[str, str] = {}  # "open" while on the path, "done" after

    def visit(name: str, path: list[str]) -> None:
        state[name] = "open"
        for imported in sorted(graph[name]):
            if state.get(imported) == "open":
                cycles.append([*path[path.index(imported):], imported])
            elif imported not in state:
                visit(imported, [*path, imported])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == [], "\n".join(" -> ".join(cycle) for cycle in cycles)
