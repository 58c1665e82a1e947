"""The package's shape: one-way imports between its modules, and its public API."""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import bayesdsm.catalog as catalog

PKG = Path(catalog.__file__).parent


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every ``from bayesdsm.catalog... import ...`` in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bayesdsm.catalog"):
            found.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("bayesdsm.catalog")]
    return found


def test_modules_import_each_other_one_way():
    graph = {}
    for path in PKG.glob("_*.py"):
        if path.name != "__init__.py":
            graph[path.stem] = {m.rsplit(".", 1)[-1] for m, _ in _imports(path)}
    assert all(dep.startswith("_") for deps in graph.values() for dep in deps), graph
    order = list(graphlib.TopologicalSorter(graph).static_order())  # CycleError on a cycle
    assert set(order) == set(graph)


def test_no_private_name_crosses_modules():
    for path in PKG.glob("*.py"):
        for module, names in _imports(path):
            private = [n for n in names if n.startswith("_")]
            assert not private, f"{path.name} imports {private} from {module}"


def test_public_api_resolves_and_presets_ship():
    for name in catalog.__all__:
        assert getattr(catalog, name) is not None, name
    assert "green2020" in catalog.list_presets()
    assert catalog.load_preset("green2020").reader == "h5py_compound"
