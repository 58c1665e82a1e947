"""The package's shape, as docs/architecture.md states it, checked against the code.

The layer table of docs/architecture.md names every module of ``bayesdsm`` (top-level
modules and subpackages) and its layer. A module may import from its own subpackage and
from lower layers only: an import that runs up the layers, an import cycle between
modules, a module the table does not list, or a module over 30 kB fails here. Imports
inside functions count too (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bayesdsm"
DOC = ROOT / "docs" / "architecture.md"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _component(module: str) -> str:
    """``bayesdsm.train._loop`` → ``train``; the root package is ``bayesdsm``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "bayesdsm"


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path, modules) -> set[str]:
    """The bayesdsm modules ``path`` imports (module level and inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("bayesdsm"))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = _module_name(path).split(".")
                anchor = anchor[: len(anchor) - node.level + (path.name == "__init__.py")]
                base = ".".join([*anchor, base] if base else anchor)
            if not base.startswith("bayesdsm"):
                continue
            for a in node.names:  # `from pkg import submodule` imports the submodule
                sub = f"{base}.{a.name}"
                out.add(sub if sub in modules else base)
    return out


def _layers() -> dict[str, int]:
    """{component: layer} from the rows ``| N | `a`, `b` | ... |`` of the layer table."""
    layers = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\|\s*(\d+)\s*\|([^|]*)\|", line)
        if m:
            for name in re.findall(r"`([\w.]+)`", m.group(2)):
                layers[name.removeprefix("bayesdsm.")] = int(m.group(1))
    return layers


def test_every_module_is_in_the_layer_table():
    layers = _layers()
    assert layers, f"no layer table found in {DOC}"
    missing = sorted({_component(m) for m in _modules()} - set(layers) - {"bayesdsm"})
    assert not missing, f"modules missing from the layer table of {DOC.name}: {missing}"
    stale = sorted(set(layers) - {_component(m) for m in _modules()})
    assert not stale, f"the layer table of {DOC.name} lists modules that do not exist: {stale}"


def test_imports_go_down_the_layers():
    layers, modules = _layers(), _modules()
    upward = []
    for name, path in modules.items():
        src = _component(name)
        for target in _imports(path, modules):
            dst = _component(target)
            if target == "bayesdsm" or dst == src:
                continue  # the root (``__version__``) and one's own subpackage
            if layers[dst] >= layers[src]:
                upward.append(f"{name} (layer {layers[src]}) imports {target} ({layers[dst]})")
    assert not upward, "imports that do not go down the layers:\n" + "\n".join(upward)


def test_no_import_cycle():
    modules = _modules()
    graph = {
        m: {t for t in _imports(p, modules) if t in modules and not (m + ".").startswith(t + ".")}
        for m, p in modules.items()
    }  # a module's own parent packages are left out: their __init__ imports it
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: p.name)
def test_module_size(path):
    size = path.stat().st_size
    assert size <= 30_000, f"{path.relative_to(ROOT)} is {size} bytes; split it (aim 2-10 kB)"
