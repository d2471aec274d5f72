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


def _within(module: str, *packages: str) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every gateway module `start` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for imported in graph[todo.pop()] - seen:
            seen.add(imported)
            todo.append(imported)
    return seen


def _third_party_imports(module: str) -> set[str]:
    path = PROJECT_DIR / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = PROJECT_DIR / module.replace(".", "/") / "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if not _within(name, "gateway")}


def test_stores_import_no_provider_handler_gate_or_http() -> None:
    graph = _gateway_imports()
    stores = [module for module in graph if _within(module, "gateway.store")]
    assert len(stores) > 10
    for module in stores:
        reached = _reachable(graph, module)
        assert not [name for name in reached if _within(
            name, "gateway.providers", "gateway.handlers", "gateway.gate")], module
        assert not [name for name in _third_party_imports(module)
                    if _within(name, "aiohttp")], module


def test_one_backend_never_imports_the_other() -> None:
    graph = _gateway_imports()
    for backend, other in (("gateway.store.sqlite", "gateway.store.redis"),
                           ("gateway.store.redis", "gateway.store.sqlite")):
        for module in (module for module in graph if _within(module, backend)):
            assert not [name for name in _reachable(graph, module)
                        if _within(name, other)], module


def test_the_models_import_no_store_provider_http_or_gate() -> None:
    graph = _gateway_imports()
    for model in ("gateway.model", "gateway.device_model", "gateway.ledger"):
        assert not [name for name in _reachable(graph, model) | {model} if _within(
            name, "gateway.store", "gateway.providers", "gateway.handlers", "gateway.gate")]
        assert not [name for name in _third_party_imports(model)
                    if _within(name, "aiohttp")], model


# Only these read the store itself (app[STORE]): the one that opens it and hands each use
# case its parts, and the readiness check's ping. Everything else reads through a use
# case (SessionService, Devices, Reports...).
STORE_KEY_READERS = {"gateway/resources.py", "gateway/handlers/health.py",
                     "gateway/keys.py"}  # keys.py defines it


def store_key_reads(source: str) -> list[int]:
    """The lines where a module names the STORE app key (imports it, or reads it)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if ((isinstance(node, ast.Name) and node.id == "STORE")
                or (isinstance(node, ast.Attribute) and node.attr == "STORE")
                or (isinstance(node, ast.alias) and node.name == "STORE")):
            lines.append(node.lineno)
    return sorted(set(lines))


def test_only_resources_and_the_readiness_check_read_the_store_key() -> None:
    readers = {}
    for path in (PROJECT_DIR / "gateway").rglob("*.py"):
        name = str(path.relative_to(PROJECT_DIR))
        if name not in STORE_KEY_READERS and (lines := store_key_reads(path.read_text())):
            readers[name] = lines
    assert readers == {}


def test_the_store_key_check_sees_a_handler_reach_for_the_store() -> None:
    handler = ("from gateway.keys import SESSIONS, STORE\n\n"
               "async def handler(request):\n"
               "    return await request.app[STORE].ledger.sales(0, 1)\n")
    assert store_key_reads(handler) == [1, 4]
    assert store_key_reads("from gateway import keys\nstore = app[keys.STORE]\n") == [2]
    assert store_key_reads("from gateway.keys import REPORTS\nreports = app[REPORTS]\n") == []


def _importers(graph: dict[str, set[str]], module: str) -> set[str]:
    return {name for name, imported in graph.items() if module in imported}


def test_handlers_are_imported_by_the_route_table_only() -> None:
    """A handler is an entry point, never a library: what two handlers share lives in
    handlers/common.py (request parsing) or outside the handlers."""
    graph = _gateway_imports()
    handlers = [module for module in graph if _within(module, "gateway.handlers")
                and module not in ("gateway.handlers", "gateway.handlers.common")]
    assert len(handlers) > 10
    for module in handlers:
        assert _importers(graph, module) <= {"gateway.routes"}, module
    # What handlers share among themselves stays theirs; what the middleware or any
    # other room shares with them lives outside (gateway/web_requests.py).
    outside = {name for name in _importers(graph, "gateway.handlers.common")
               if not _within(name, "gateway.handlers")}
    assert not outside


def test_providers_import_no_store_handler_gate_or_server() -> None:
    graph = _gateway_imports()
    providers = [module for module in graph if _within(module, "gateway.providers")]
    assert len(providers) > 5
    for module in providers:
        assert not [name for name in _reachable(graph, module) if _within(
            name, "gateway.store", "gateway.handlers", "gateway.gate")], module
        # The HTTP client, yes: that is how a provider is reached. Serving, never.
        assert not [name for name in _third_party_imports(module)
                    if _within(name, "aiohttp.web")], module


def test_the_gate_imports_no_store_and_no_console() -> None:
    graph = _gateway_imports()
    gate = [module for module in graph if _within(module, "gateway.gate")]
    assert len(gate) > 5
    for module in gate:
        # It counts places through the Devices use case, whose store part is an
        # interface (store/base.py): never a backend, never the store itself.
        assert not [name for name in graph[module] if _within(
            name, "gateway.store", "gateway.handlers", "gateway.reports")], module
        assert not [name for name in _reachable(graph, module) if name == "gateway.store"
                    or _within(name, "gateway.store.sqlite", "gateway.store.redis",
                               "gateway.handlers", "gateway.reports")], module
