"""The layering holds: imports point down only, product code never imports the dev stack, and
no two modules import each other (directly or around a circle), lazy imports included."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from pipelines.environment import PROJECT_DIR

# What each package may import from this project besides itself: the one table of directions,
# shown in docs/architecture.md ("Layers"). Lowest first; every arrow points to a row above.
EVERYTHING_BELOW_THE_TOOLS = (
    "rehearsal",
    "dev_stack",
    "flows",
    "environments",
    "local_runtime",
    "infra",
    "verify",
    "pipelines",
    "sources",
)
LAYERS: dict[str, tuple[str, ...]] = {
    "sources": (),
    "pipelines": ("sources",),
    "verify": ("pipelines", "sources"),
    "infra": ("pipelines", "sources"),
    "local_runtime": ("pipelines", "sources"),
    "environments": ("local_runtime", "pipelines", "sources"),
    "flows": ("environments", "verify", "pipelines", "sources"),
    "dev_stack": ("environments", "local_runtime", "infra", "verify", "pipelines", "sources"),
    "rehearsal": (
        "dev_stack",
        "environments",
        "local_runtime",
        "infra",
        "verify",
        "pipelines",
        "sources",
    ),
    # the tools on top: anything below them
    "data_pipelines_cli": EVERYTHING_BELOW_THE_TOOLS,
    "benchmarks": EVERYTHING_BELOW_THE_TOOLS,
}
# What runs in production (a worker's flow runs, `apply`); the rest is the developer's stack,
# the rehearsal's stand-ins and the tools on top.
PRODUCT = ("sources", "pipelines", "verify", "infra", "local_runtime", "environments", "flows")
PACKAGES = tuple(LAYERS)
DOC = PROJECT_DIR / "docs" / "architecture.md"


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_DIR).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _absolute(path: Path, module: str, node: ast.ImportFrom) -> str:
    """The module a `from` import names, relative ones (`from . import x`) resolved."""
    if not node.level:
        return node.module or ""
    package = module.split(".")
    if path.name != "__init__.py":
        package = package[:-1]  # a module's `.` is its package
    base = package[: len(package) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _imported_by_name(node: ast.AST) -> str | None:
    """`importlib.import_module("x.y")` / `import_module(...)` / `__import__(...)` of a literal."""
    if not isinstance(node, ast.Call) or not node.args:
        return None
    function = node.func
    name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
    argument = node.args[0]
    if name in ("import_module", "__import__") and isinstance(argument, ast.Constant):
        return str(argument.value)
    return None


def project_imports(path: Path, module: str | None = None) -> set[str]:
    """Every project module `path` (module `module`) imports, at module level or inside a
    function, relative imports and `importlib` calls with a literal name included."""
    module = module or module_name(path)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(path, module, node)
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif (by_name := _imported_by_name(node)) is not None:
            names = [by_name]
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


def test_every_package_is_in_the_table_and_its_arrows_point_down() -> None:
    packages = {path.parent.name for path in PROJECT_DIR.glob("*/__init__.py")} - {"tests"}
    assert packages == set(LAYERS), "a package outside the layer table (or a row with no package)"
    for position, (package, allowed) in enumerate(LAYERS.items()):
        below = set(list(LAYERS)[:position])
        assert set(allowed) <= below, f"{package} may import a package listed after it"


def test_layers_import_downward_only_and_never_the_dev_stack() -> None:
    wrong = []
    for module, targets in graph().items():
        layer = module.split(".")[0]
        for target in targets:
            target_layer = target.split(".")[0]
            if target_layer != layer and target_layer not in LAYERS[layer]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_the_architecture_doc_shows_the_same_table() -> None:
    """Each package's row: its one job (written), then what it may import (as LAYERS)."""
    rows, jobs = {}, {}
    for line in DOC.read_text().splitlines():
        match = re.fullmatch(r"\| `(\w+)/` \| (.*) \| (.*) \|", line.strip())
        if match and match.group(1) in LAYERS:
            jobs[match.group(1)] = match.group(2).strip()
            rows[match.group(1)] = tuple(re.findall(r"`(\w+)/`", match.group(3)))
    assert rows == LAYERS, "docs/architecture.md's layer table differs from LAYERS here"
    assert all(len(job) > 10 for job in jobs.values()), "a package without its job in the table"


def test_product_code_never_imports_the_dev_stack_or_the_rehearsal() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in graph().items()
        if module.split(".")[0] in PRODUCT
        for target in targets
        if target.split(".")[0] in ("dev_stack", "rehearsal")
    ]
    assert not wrong, "\n".join(sorted(wrong))


def test_shared_names_are_defined_once() -> None:
    """A name two layers need lives in the lowest one and is imported elsewhere."""
    for name in ("PROJECT_DIR", "REFUSED_STATE_NAME", "ENV_VAR"):
        defined = [
            module_name(path)
            for package in PACKAGES
            for path in (PROJECT_DIR / package).rglob("*.py")
            if any(
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
                for node in ast.parse(path.read_text()).body
            )
        ]
        assert len(defined) == 1, f"{name} is defined in {defined}"


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


def test_the_import_reader_sees_relative_and_importlib_imports(tmp_path: Path) -> None:
    source = (
        "from . import names\n"
        "from .spec import PipelineSpec\n"
        "import importlib\n"
        "importlib.import_module('flows.currencies')\n"
        "__import__('dev_stack.demo')\n"
    )
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    found = project_imports(probe, "pipelines.probe")
    assert {"pipelines.names", "pipelines.spec", "flows.currencies", "dev_stack.demo"} <= found
