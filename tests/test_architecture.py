"""The layering holds: imports point down only, product code never imports the dev stack, and
no two modules import each other (directly or around a circle), lazy imports included."""

from __future__ import annotations

import ast
from pathlib import Path

from pipelines.environment import PROJECT_DIR

PACKAGES = (
    "sources",
    "pipelines",
    "flows",
    "environments",
    "infra",
    "local_stack",
    "data_pipelines_cli",
)
# What each layer may import from this project (besides itself).
ALLOWED: dict[str, set[str]] = {
    "sources": set(),
    "pipelines": {"sources"},
    "flows": {"pipelines", "sources", "environments"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_DIR).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_imports(path: Path) -> set[str]:
    """Every project module `path` imports, at module level or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name.split(".")[0] in PACKAGES}
    return found


def graph() -> dict[str, set[str]]:
    modules = {
        module_name(path): path
        for package in PACKAGES
        for path in (PROJECT_DIR / package).rglob("*.py")
    }
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        # `from pkg import mod` names a module; `from mod import function` names its module
        edges[name] = {
            target if target in modules else target.rsplit(".", 1)[0]
            for target in project_imports(path)
        } & set(modules)
        edges[name].discard(name)
    return edges


def test_layers_import_downward_only_and_never_the_dev_stack() -> None:
    wrong = []
    for module, targets in graph().items():
        layer = module.split(".")[0]
        if layer not in ALLOWED:
            continue
        for target in targets:
            target_layer = target.split(".")[0]
            if target_layer != layer and target_layer not in ALLOWED[layer]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_no_import_circles() -> None:
    edges = graph()
    circles: list[list[str]] = []

    def walk(node: str, path: list[str], on_path: set[str], done: set[str]) -> None:
        for target in sorted(edges.get(node, ())):
            if target in on_path:
                circles.append([*path[path.index(target) :], target])
            elif target not in done:
                walk(target, [*path, target], on_path | {target}, done)
        done.add(node)

    done: set[str] = set()
    for start in sorted(edges):
        if start not in done:
            walk(start, [start], {start}, done)
    assert not circles, "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)
