"""The packages keep their direction (docs/architecture.md): the core (appliance/) is used by
ingest/, which is used by inference/. These tests read the source, so a new import that
runs against the direction, or a cycle hidden in a function body, fails here first."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("appliance", "ingest", "inference")

# The core's wiring: where it routes URLs, serves pages and the API, starts workers, checks
# health and names every package's defaults. Only these may import ingest or inference.
CORE_WIRING = (
    "appliance/settings.py",
    "appliance/urls.py",
    "appliance/celery.py",
    "appliance/asgi.py",
    "appliance/wsgi.py",
    "appliance/workers.py",
    "appliance/health.py",
    "appliance/web/",
    "appliance/api/",
    # backup, restore and doctor: they read every package's state (files, models, indexes)
    "appliance/operations/",
)

# Imports inside functions, each for a reason other than a cycle. Anything else belongs at
# the top of its module.
FUNCTION_IMPORTS_ALLOWED = {
    # Django's own pattern: signal handlers connect once the apps are ready.
    "appliance/accounts/apps.py": "AppConfig.ready",
    # Loaded with the Celery app, before Django's apps are ready; the web process never
    # loads the models these start.
    "appliance/workers.py": "worker start-up",
    # The parse sandbox's child loads the parsers once its memory is capped.
    "ingest/parsing/child.py": "sandbox child",
}


def _sources(*tops: str) -> Iterator[tuple[str, ast.Module]]:
    for top in tops:
        for path in sorted((ROOT / top).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            yield relative, ast.parse(path.read_text(), relative)


def _imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
    return []


def _all_imports(tree: ast.Module) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        for name in _imported(node):
            yield node.lineno, name


def _top_level_imports(tree: ast.Module) -> Iterator[str]:
    """Imports run when the module loads (not those under ``if TYPE_CHECKING:``)."""
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for inner in ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node]:
            yield from _imported(inner)


def _module_name(relative: str) -> str:
    return relative.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


def test_ingest_never_imports_inference() -> None:
    found = [
        f"{path}:{line} imports {name}"
        for path, tree in _sources("ingest")
        for line, name in _all_imports(tree)
        if name.split(".")[0] == "inference"
    ]
    assert found == []


def test_answering_never_imports_the_pilot_workbench_that_sits_above_it() -> None:
    found = [
        f"{path}:{line} imports {name}"
        for path, tree in _sources("inference", "ingest")
        if not path.startswith("inference/pilot/")
        for line, name in _all_imports(tree)
        if name.startswith("inference.pilot")
    ]
    assert found == []


def test_the_core_imports_ingest_and_inference_only_in_its_wiring() -> None:
    found = [
        f"{path}:{line} imports {name}"
        for path, tree in _sources("appliance")
        if not path.startswith(CORE_WIRING)
        for line, name in _all_imports(tree)
        if name.split(".")[0] in ("ingest", "inference")
    ]
    assert found == []


def test_no_function_imports_a_project_module_to_dodge_a_cycle() -> None:
    found = []
    for path, tree in _sources(*PACKAGES):
        if "/migrations/" in path or path in FUNCTION_IMPORTS_ALLOWED:
            continue
        for function in ast.walk(tree):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                for name in _imported(node):
                    if name.split(".")[0] in PACKAGES:
                        found.append(f"{path}:{node.lineno} {function.name} imports {name}")
    assert found == []


def test_the_modules_import_each_other_without_a_cycle() -> None:
    modules = {
        _module_name(path): tree for path, tree in _sources(*PACKAGES) if "/migrations/" not in path
    }
    graph: dict[str, set[str]] = {}
    for name, tree in modules.items():
        targets = {t for t in _top_level_imports(tree) if t in modules and t != name}
        # A package's own __init__ runs before its modules: not an edge of interest.
        graph[name] = {t for t in targets if not name.startswith(t + ".")}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == []
    # The check sees the edges it must: ingest.tasks imports ingest.pipeline.
    assert "ingest.pipeline" in graph["ingest.tasks"]
