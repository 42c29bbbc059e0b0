"""The project's modules: all installed, their docstring examples run, no import circle, no
import up the layers that pyproject.toml's [tool.tach] states (which `tach check` checks too)."""

import ast
import doctest
import importlib
import importlib.util
import shutil
import subprocess
import sys
import tomllib

import pytest
from project import ROOT, modules


def test_every_module_is_installed():
    assert sorted(modules()) == sorted(path.stem for path in ROOT.glob("*.py"))


@pytest.mark.parametrize("name", modules())
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0


@pytest.mark.parametrize("path", [path for path in sorted(ROOT.glob("benchmarks/*.py"))
                                  if ">>>" in path.read_text()], ids=lambda path: path.stem)
def test_benchmarks_docstring_examples(path, monkeypatch):
    monkeypatch.syspath_prepend(str(path.parent))  # a benchmark imports its neighbours
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0


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


def layers() -> dict[str, int]:
    """Each module's layer, as pyproject.toml's [tool.tach] states it: 0 is the top."""
    tach = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["tach"]
    order = {name: rank for rank, name in enumerate(tach["layers"])}
    return {module["path"]: order[module["layer"]] for module in tach["modules"]}


def upward(graph: dict[str, set[str]], layer: dict[str, int]) -> list[tuple[str, str]]:
    """(importer, imported) for each import of a module on a higher layer."""
    return sorted((name, imported) for name, found in graph.items() for imported in found
                  if layer[imported] < layer[name])


def test_every_module_has_one_layer():
    tach = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["tach"]
    assert sorted(module["path"] for module in tach["modules"]) == sorted(modules())


def test_no_import_runs_up_the_layers():
    assert upward({name: imports(name) for name in modules()}, layers()) == []


def test_an_import_up_the_layers_is_found():
    layer = {"app": 0, "items": 1, "settings": 2}
    graph = {"app": {"items", "settings"}, "items": {"settings"}, "settings": {"app"}}
    assert upward(graph, layer) == [("settings", "app")]


def test_tach_refuses_an_import_up_the_layers(tmp_path):
    """The contract scripts/test.sh checks: the project's modules pass it, and fail it once
    one of them imports from a higher layer (on a copy of the modules and pyproject.toml)."""
    for path in [*ROOT.glob("*.py"), ROOT / "pyproject.toml"]:
        shutil.copy(path, tmp_path)
    check = [sys.executable, "-m", "tach", "check"]
    passed = subprocess.run(check, cwd=tmp_path, capture_output=True, text=True)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    with open(tmp_path / "settings.py", "a") as f:
        f.write("\n\ndef page():\n    import app\n\n    return app\n")
    failed = subprocess.run(check, cwd=tmp_path, capture_output=True, text=True)
    said = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "settings.py" in said and "'app'" in said, said
