"""The house's rules, read from the code: runner/ in layers, no import circles, short functions.

Each package of ``runner`` imports only the packages below it (its ``__init__`` docstring says
which); every import counts, those inside functions too.
"""
from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# bottom to top: a package may import itself and the ones before it
LAYERS = ["core", "report", "sheet", "rowspec", "slurm", "job", "local", "runs", "launch", "results",
          "run_cmd", "jobwrapper", "cli", "__main__"]
LIGHT = {"report": {"core"}}            # runner.report: what a training script imports, kept light
MAX_FUNCTION_LINES = 60


def _modules(package: str) -> dict[str, str]:
    """Dotted module name -> file, for every module of ``package``."""
    out = {}
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                parts = os.path.relpath(path, ROOT)[:-3].split(os.sep)
                if parts[-1] == "__init__":
                    parts = parts[:-1]
                out[".".join(parts)] = path
    return out


def _imports(path: str, modules: dict[str, str]) -> set[str]:
    """The modules of ``modules`` that the file imports (``from a import b`` counts ``a.b`` when
    ``b`` is a module, else ``a``)."""
    out = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                     for alias in node.names]
        else:
            continue
        out.update(name for name in names if name in modules)
    return out


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_runner_packages_import_only_the_layers_below_them():
    modules = _modules("runner")
    wrong = []
    for module, path in modules.items():
        layer = _layer(module)
        if layer == "__init__":
            continue
        assert layer in LAYERS, f"{module}: a package not placed in LAYERS"
        allowed = LIGHT.get(layer, set(LAYERS[:LAYERS.index(layer) + 1]))
        for target in _imports(path, modules):
            there = _layer(target)
            if there not in allowed | {layer} and target != "runner":
                wrong.append(f"{module} imports {target} ({layer} may import {sorted(allowed)})")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("package", ["runner", "tasks"])
def test_no_import_circles(package):
    modules = _modules(package)
    graph = {m: _imports(p, modules) - {m} for m, p in modules.items()}
    circles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                circles.append(" -> ".join(path[path.index(nxt):] + [node, nxt]) if nxt in path else f"{node} -> {nxt}")
            elif nxt not in state:
                visit(nxt, path + [node])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not circles, "\n".join(circles)


def _function_lengths() -> dict[str, int]:
    out = {}
    for package in ("runner", "tasks"):
        for module, path in _modules(package).items():
            rel = os.path.relpath(path, ROOT)
            for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out[f"{rel}:{node.name}"] = max(out.get(f"{rel}:{node.name}", 0),
                                                    node.end_lineno - node.lineno + 1)
    return out


def test_no_function_is_longer_than_60_lines():
    lengths = _function_lengths()
    too_long = [f"{name}: {n} lines" for name, n in sorted(lengths.items()) if n > MAX_FUNCTION_LINES]
    assert not too_long, "split these (a function reads as a recipe of at most 60 lines):\n" + "\n".join(too_long)


def test_no_entry_script_is_imported_by_other_task_code():
    """A script run as ``python tasks/<workflow>/<script>.py`` (it has a ``__main__`` block) is a recipe
    over library modules; what another script needs of it lives in a module both import."""
    modules = _modules("tasks")
    scripts = {m for m, p in modules.items() if 'if __name__ == "__main__"' in open(p, encoding="utf-8").read()}
    wrong = [f"{m} imports {t}" for m, p in modules.items() for t in sorted(_imports(p, modules) & scripts) if t != m]
    assert not wrong, "\n".join(wrong)
