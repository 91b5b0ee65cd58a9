"""The package's house rules: stages import only stages below them, and no module imports
(even inside a function) one that imports it back. See CONTRIBUTING.md for the map."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import netmind_frames

PACKAGE = Path(netmind_frames.__file__).parent

#: Lowest first. A module may import from its own layer or any layer below it.
LAYERS: list[set[str]] = [
    {"_errors", "_timing"},
    {"build"},
    {"results"},
    {"server"},
    {"transport"},
    {"jobs"},
    {"frames"},
    {"cli", "spark", "__init__", "__main__"},
]


def _layer(module: str) -> int:
    """The layer of ``netmind_frames.<module>`` (a dotted name below the package)."""
    top = module.split(".")[0] or "__init__"
    for number, names in enumerate(LAYERS):
        if top in names:
            return number
    raise AssertionError(f"netmind_frames.{module} is in no layer: add it to LAYERS")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Every module of the package that ``module`` imports, anywhere in its code."""
    is_package = path.name == "__init__.py"
    here = module.split(".") if module != "__init__" else []
    package = here if is_package else here[:-1]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                name = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.startswith("netmind_frames"):
                name = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:
                candidate = ".".join([*name, alias.name])
                targets.add(candidate if candidate in known else ".".join(name) or "__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("netmind_frames."):
                    targets.add(alias.name.removeprefix("netmind_frames."))
    return {t for t in targets if t != module}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def test_every_module_has_a_layer(graph):
    for module in graph:
        _layer(module)


def test_no_stage_imports_a_higher_one(graph):
    upward = [
        f"{module} -> {target}"
        for module, targets in graph.items()
        for target in targets
        if _layer(target) > _layer(module)
    ]
    assert not upward, "a lower stage imports a higher one:\n" + "\n".join(upward)


def test_no_import_circle(graph):
    # Depth-first search for a back edge; the path it reports is the circle.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (circle := visit(target)):
                return circle
        stack.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (circle := visit(module)):
            pytest.fail("import circle: " + " -> ".join(circle))


def test_the_checker_sees_an_upward_import(tmp_path):
    """The rules above must be able to fail: an upward import written to a file is found."""
    path = tmp_path / "_bad.py"
    path.write_text("def f():\n    from ..jobs._job import BatchJob\n")
    targets = _imports("build._bad", path, {"jobs._job"})
    assert targets == {"jobs._job"}
    assert _layer("jobs._job") > _layer("build._bad")


def test_every_stage_says_what_goes_through_it():
    for stage in ("build", "transport", "jobs", "results", "frames"):
        doc = ast.get_docstring(ast.parse((PACKAGE / stage / "__init__.py").read_text()))
        assert doc, f"netmind_frames/{stage}/__init__.py has no docstring"
