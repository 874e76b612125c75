"""The import graph of serving/ and models/: no circles (counting imports inside functions and under
TYPE_CHECKING, which hide a circle rather than remove it), nothing imports the app, and models/ never
imports serving/ or training/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("serving", "models")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every project module `path` imports anywhere in the file (`from a import b` counts `a.b` when
    that is a module, else `a`)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name not in PACKAGES:  # a package's empty __init__ is not an edge
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(path): path for package in PACKAGES for path in (REPO / package).glob("*.py")}
    known = set(files) | {"training"}
    return {name: imports_of(path, known) - {name} for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a path `[a, b, ..., a]`, or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_sees_a_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_imports_of_counts_deferred_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from serving.app import create_app\n    import models.vocab\n")
    assert imports_of(source, {"serving.app", "models.vocab"}) == {"serving.app", "models.vocab"}


def test_serving_and_models_have_no_import_circle() -> None:
    graph = import_graph()
    assert "serving.predictor" in graph and "models.text" in graph
    assert find_cycle(graph) is None, f"import circle: {' -> '.join(find_cycle(graph) or [])}"


def test_nothing_imports_the_app() -> None:
    users = sorted(name for name, imported in import_graph().items() if "serving.app" in imported)
    assert users == []


@pytest.mark.parametrize("upper", ["serving", "training"])
def test_models_never_import_upwards(upper: str) -> None:
    graph = import_graph()
    wrong = {name: sorted(i for i in imported if i.split(".")[0] == upper) for name, imported in graph.items()}
    assert {name: found for name, found in wrong.items() if name.startswith("models") and found} == {}
