"""The package's layout, read from its source: imports only go in the allowed directions and form no cycle.

core/ is the numpy/torch library (never Blender, never the UI, never the optional detector); panels only draw
(no core, no operators); mesh/ is the Blender geometry and knows nothing of operators or panels.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "resihmr_blender"
NAME = "resihmr_blender"

# (importer prefix, forbidden imported prefixes)
FORBIDDEN = [
    ("core", ("bpy", "bmesh", "mathutils", "bpy_extras", "mesh", "operators", "panels", "cli", "demo", "workflow",
              "outputs", "properties", "preferences", "detect", "mediapipe", "cv2")),
    ("panels", ("core", "operators", "workflow", "mesh", "json")),
    ("mesh", ("operators", "panels", "workflow", "cli", "properties")),
    ("detect", ("bpy", "mesh", "operators", "panels", "workflow")),
    ("workflow", ("operators", "panels", "cli")),
]


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module this file imports (module level and inside functions), as package-relative names for our
    own modules and top-level names for others."""
    me = module_name(path).split(".") if module_name(path) else []
    package = me if path.name == "__init__.py" else me[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                name = alias.name
                found.add(name[len(NAME) + 1:] if name.startswith(NAME + ".") else name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join([*base, *(node.module.split(".") if node.module else [])])
                if node.module is None:
                    found.update(".".join([*base, a.name]) for a in node.names)
                else:
                    found.add(target)
            elif node.module.startswith(NAME):
                found.add(node.module[len(NAME) + 1:])
            else:
                found.add(node.module.split(".")[0])
    return found


FILES = sorted(PACKAGE.rglob("*.py"))
GRAPH = {module_name(f): imports_of(f) for f in FILES}


def _starts(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("importer,forbidden", FORBIDDEN)
def test_imports_go_in_the_allowed_direction(importer, forbidden):
    bad = [(mod, imp) for mod, imps in GRAPH.items() if _starts(mod, importer)
           for imp in imps for f in forbidden if _starts(imp, f)]
    assert not bad, f"forbidden imports from {importer}: {bad}"


def test_the_checker_sees_imports():
    """The check must be able to fail: it finds the imports we know are there."""
    assert "core.pipeline" in GRAPH["workflow"] and "bpy" in GRAPH["workflow"]
    assert "core.residuals" in GRAPH["core.keypoints_check"]
    assert "workflow" in GRAPH["operators.fit"]


def test_no_import_cycles():
    """Between our modules (a package's __init__ importing its own children does not count)."""
    ours = {m: {i for i in imps if i in GRAPH and not _starts(i, m) and not (m == "" or _starts(m, i))}
            for m, imps in GRAPH.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in ours.get(node, ()):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in ours:
        if module not in state:
            visit(module, [module])
    assert not cycles, f"import cycles: {cycles}"
