"""The house: the core library in the layer holds no app and no test code; no module imports a
room above it; no two modules import each other; rooms stay small."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Rooms from the bottom up; a module may import its own room and those below it only.
ROOMS = {
    "jobkit": ROOT / "layers" / "jobkit" / "jobkit",
    "jobkit_apps": ROOT / "layers" / "apps" / "jobkit_apps",
    "functions": ROOT / "functions",
    "jobkit_tools": ROOT / "tools" / "jobkit_tools",
}
ORDER = list(ROOMS)
WORKER_PACKAGES = {p.name for p in (ROOT / "functions").glob("*/*_worker")}


def modules() -> Iterator[tuple[str, Path]]:
    for room, folder in ROOMS.items():
        for path in sorted(folder.rglob("*.py")):
            yield room, path


def runtime_imports(path: Path) -> set[str]:
    """Top-level names this module imports when it runs (not those under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {
        id(node)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for stmt in block.body
        for node in ast.walk(stmt)
    }
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from jobkit import aws` imports the module jobkit.aws
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def room_of(module: str) -> str | None:
    top = module.split(".")[0]
    if top in ROOMS and top != "functions":
        return top
    return "functions" if top in WORKER_PACKAGES else None


@pytest.mark.parametrize(("room", "path"), list(modules()), ids=lambda v: str(v))
def test_no_module_imports_a_room_above_its_own(room: str, path: Path) -> None:
    above = {
        module
        for module in runtime_imports(path)
        if (other := room_of(module)) is not None and ORDER.index(other) > ORDER.index(room)
    }
    assert not above, f"{path.relative_to(ROOT)} imports {sorted(above)}"


def test_the_layer_holds_the_core_only() -> None:
    # Given every module of the core layer's package
    for path in ROOMS["jobkit"].rglob("*.py"):
        imported = runtime_imports(path) | {n.split(".")[0] for n in runtime_imports(path)}
        # Then none is test code or app code
        assert "pytest" not in imported, path
        assert not imported & {"moto", "time_machine", "jobkit_apps", "jobkit_tools"}, path
    names = {p.stem for p in ROOMS["jobkit"].rglob("*.py")}
    assert not names & {"testing", "applications", "catalog", "email", "reminders"}


def module_name(path: Path) -> str:
    """The dotted name a module is imported by (a function's folder is on its sys.path)."""
    for room, folder in ROOMS.items():
        if path.is_relative_to(folder):
            base = (
                folder.parent if room != "functions" else folder / path.relative_to(folder).parts[0]
            )
            parts = path.relative_to(base).with_suffix("").parts
            name = ".".join(p for p in parts if p != "__init__")
            return name if name != "app" else f"{path.parent.name}/app"
    raise AssertionError(path)


def test_no_two_modules_import_each_other() -> None:
    # Given the import graph between the project's modules (runtime imports)
    known = {module_name(path): path for _, path in modules()}
    graph = {name: set[str]() for name in known}
    for name, path in known.items():
        imported = runtime_imports(path)
        for module in imported:
            # a package counts only where nothing more precise was imported from it
            precise = any(other.startswith(module + ".") and other in known for other in imported)
            if module in known and module != name and not precise:
                graph[name].add(module)
    # Then it has no cycle
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for other in graph[node]:
            if state.get(other) == 1:
                pytest.fail(f"import cycle: {' -> '.join([*trail, node, other])}")
            if other not in state:
                visit(other, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


SOURCES = [ROOT / "layers", ROOT / "functions", ROOT / "tools", ROOT / "benchmarks"]


@pytest.mark.parametrize(
    "path",
    [p for folder in SOURCES for p in sorted(folder.rglob("*.py"))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_source_module_is_over_about_400_lines(path: Path) -> None:
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 420
