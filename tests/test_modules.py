"""The project's modules: all installed, their docstring examples run, no import circle."""

import ast
import doctest
import importlib

import pytest
from project import ROOT, modules


def test_every_module_is_installed():
    assert sorted(modules()) == sorted(path.stem for path in ROOT.glob("*.py"))


@pytest.mark.parametrize("name", modules())
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0


def imports(name: str) -> set[str]:
    """The project modules that `name` imports anywhere: at the top, inside functions, or
    for type checking only."""
    tree = ast.parse((ROOT / f"{name}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(modules())


def circle_from(name: str, graph: dict[str, set[str]], path: list[str]) -> list[str] | None:
    """A chain of imports from `name` back to a module already on `path`, if there is one."""
    if name in path:
        return path[path.index(name):] + [name]
    for imported in sorted(graph[name]):
        found = circle_from(imported, graph, path + [name])
        if found:
            return found
    return None


def test_the_imports_form_no_circle():
    graph = {name: imports(name) for name in modules()}
    assert graph["baselines"] >= {"features", "sentences", "mlp", "stacking"}
    for name in graph:
        assert circle_from(name, graph, []) is None


def test_a_circle_is_found():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert circle_from("a", graph, []) == ["a", "b", "c", "a"]
    assert circle_from("d", graph, []) is None
