"""The package's layers: data flows one way, and so do the imports.

sources -> curation -> cross-validation -> stored results -> analysis and the audit -> the book
and the explorers; the command line on top. Each subpackage is a layer; a module imports only
from its own layer or below (function-local imports count too), and there is no import circle.
"""
from __future__ import annotations

import ast
from pathlib import Path

import cxrlib

PACKAGE = Path(cxrlib.__file__).parent
#: Bottom first. The audit and the models both stand on the analysis; neither uses the other.
LAYERS = {"core": 0, "data": 1, "experiment": 2, "analysis": 3, "audit": 4, "models": 4,
          "report": 5, "explore": 6, "": 7}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else ""]


def imports(path: Path) -> set[str]:
    """The cxrlib modules ``path`` imports (packages and modules named in ``from X import a``)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cxrlib"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names
                         if (PACKAGE.parent / f"{node.module}.{a.name}".replace(".", "/")).exists()
                         or (PACKAGE.parent / (f"{node.module}.{a.name}".replace(".", "/")
                                               + ".py")).exists())
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("cxrlib"))
        assert not (isinstance(node, ast.ImportFrom) and node.level), \
            f"{path}: relative import; the package imports absolutely"
    return found


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in PACKAGE.rglob("*.py")}


def test_every_module_sits_in_a_known_layer():
    for module in graph():
        assert module.count(".") <= 2, f"{module}: one subpackage level"
        layer(module)


def test_imports_never_run_upward():
    upward = [f"{a} -> {b}" for a, targets in graph().items() for b in targets
              if b != "cxrlib" and layer(b) > layer(a)]
    assert upward == []


def test_no_import_circles():
    modules = graph()
    edges = {a: {b for b in targets if b in modules} for a, targets in modules.items()}
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in edges.get(node, ()):
            if nxt == node or nxt == "cxrlib" or node == "cxrlib":
                continue
            assert state.get(nxt) != 1, "import circle: " + " -> ".join(path + [nxt])
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for node in list(edges):
        if node not in state:
            visit(node, [node])
