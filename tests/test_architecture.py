"""The package's boundaries: which packages may import which, no import cycles, Lightning only
under lit/ (and what sits above it), no transformers in the inverse modules.

The table `MAY_IMPORT` is the one in docs/architecture.md: imports point down it.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "inverse_detr"

# unit (top-level module or sub-package) → the units it may import besides itself
MAY_IMPORT = {
    "errors": set(),
    "config": {"errors"},
    "data": {"errors", "config"},
    "inverse": set(),
    "detectors": {"errors", "config", "data", "inverse"},
    "export": {"errors", "config", "data", "detectors", "inverse"},
    "analysis": {"errors", "config", "data", "detectors", "inverse", "export"},
    "layout": {"errors", "config", "data", "detectors", "analysis"},
    "attribution": {"errors", "config", "data", "detectors", "analysis"},
    "lit": {
        *("errors", "config", "data", "detectors", "inverse", "export", "analysis", "layout"),
        "attribution",
    },
    "bench": {
        *("errors", "config", "data", "detectors", "inverse", "export", "analysis", "layout"),
        *("attribution", "lit"),
    },
    "cli": {
        *("errors", "config", "data", "detectors", "inverse", "export", "analysis", "layout"),
        *("attribution", "lit", "bench"),
    },
}
TOP_LEVEL = {"__init__", "__main__", "config", "errors", "export"}
COMMAND_SHIMS = {"train", "evaluate", "analyze", "invert_layout", "attribute"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = PACKAGE.parent / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, inner.end_lineno + 1))
    return lines


def imports_of(path: Path) -> set[str]:
    """Project modules `path` imports, anywhere in it but under `if TYPE_CHECKING:`."""
    tree = ast.parse(path.read_text())
    typing_only = _type_checking_lines(tree)
    found = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("inverse_detr")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("inverse_detr"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if is_module(child) else node.module)
    return found


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_imports_point_down_the_table():
    wrong = []
    for module, imported in import_graph().items():
        home = unit(module)
        if home in ("__init__", "__main__", *COMMAND_SHIMS) or module.endswith(".__main__"):
            continue  # the `python -m` shims run a command of cli/
        allowed = MAY_IMPORT[home] | {home}
        wrong += [f"{module} → {m}" for m in sorted(imported) if unit(m) not in allowed]
    assert not wrong, "imports against docs/architecture.md's table:\n" + "\n".join(wrong)


def test_the_walk_sees_imports():
    """The checks above would pass on a walk that finds nothing: it finds the known ones."""
    graph = import_graph()
    assert "inverse_detr.lit.inversion" in graph["inverse_detr.lit.run"]
    assert "inverse_detr.detectors.detr" in graph["inverse_detr.detectors.build"]
    assert unit("inverse_detr.lit.run") == "lit"


def test_no_import_cycles():
    graph = import_graph()
    state: dict[str, str] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycles.append(" → ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for module in graph:
        if module not in state:
            visit(module, [module])
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_top_level_holds_only_the_core_modules_and_command_shims():
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    assert modules - TOP_LEVEL == COMMAND_SHIMS
    for name in COMMAND_SHIMS:  # a shim only runs its command: nothing else to import from it
        tree = ast.parse((PACKAGE / f"{name}.py").read_text())
        kinds = [type(node).__name__ for node in tree.body]
        assert kinds == ["Expr", "Import", "If"], (name, kinds)


PROBE = """
import importlib, json, pkgutil, sys
pkg = importlib.import_module(sys.argv[1])
for info in pkgutil.walk_packages(pkg.__path__, sys.argv[1] + "."):
    importlib.import_module(info.name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
      ("lightning", "pytorch_lightning", "transformers"))))
"""


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("inverse_detr.inverse", ("lightning", "pytorch_lightning", "transformers")),
        ("inverse_detr.analysis", ("lightning", "pytorch_lightning")),
        ("inverse_detr.layout", ("lightning", "pytorch_lightning")),
        ("inverse_detr.attribution", ("lightning", "pytorch_lightning")),
        ("inverse_detr.data", ("lightning", "pytorch_lightning")),
        ("inverse_detr.detectors", ("lightning", "pytorch_lightning")),
    ],
)
def test_package_loads_no_forbidden_library(package, forbidden):
    """Every module of `package` imported in a fresh interpreter: none of `forbidden` loads."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, package],
        capture_output=True,
        text=True,
        check=True,
        cwd=PACKAGE.parent,
    ).stdout
    loaded = {m.split(".")[0] for m in json.loads(out.splitlines()[-1])}
    assert not loaded & set(forbidden), f"{package} loads {sorted(loaded & set(forbidden))}"


def test_the_probe_sees_lightning_where_it_is():
    out = subprocess.run(
        [sys.executable, "-c", PROBE, "inverse_detr.lit"],
        capture_output=True,
        text=True,
        check=True,
        cwd=PACKAGE.parent,
    ).stdout
    assert "lightning" in {m.split(".")[0] for m in json.loads(out.splitlines()[-1])}
