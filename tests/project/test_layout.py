"""The layout shows the flow: each layer imports only from the layers below it, and no module
imports itself back through others (no import circles). Function-level imports count too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mgtoolkit"

# lowest first; a module may import from lower layers and from its own folder
LAYERS = [
    {"errors"},
    {"config"},
    {"i18n"},
    {"runtime", "io", "prompts"},
    {"types"},
    {"accel"},
    {"models"},
    {"analysis"},
    {"tasks"},
    {"notebook"},
    {"api", "batching"},
    {"cli", "appflow"},
    {"__main__", "__init__"},
]


def _rank(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    for rank, names in enumerate(LAYERS):
        if top in names:
            return rank
    raise AssertionError(
        f"{module}: its top-level name {top!r} is in no layer of tests/project/test_layout.py"
    )


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = ["mgtoolkit", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1] if len(parts) > 1 else parts
        found[".".join(parts)] = path
    found["mgtoolkit.__init__"] = found.pop("mgtoolkit")
    return found


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if module == "mgtoolkit.__init__":
        package = ["mgtoolkit"]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package[: len(package) - node.level + 1] + ([node.module] if node.module else [])
                )
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):  # not its own package
                targets.add(name)
    return targets


MODULES = _modules()
GRAPH = {m: _imports(m, p, set(MODULES) | {"mgtoolkit"}) - {"mgtoolkit"} for m, p in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_only_from_lower_layers(module):
    own = module.split(".")[:2]
    upward = [
        t
        for t in GRAPH[module]
        if t.split(".")[:2] != own and _rank(t) >= _rank(module) and module != "mgtoolkit.__init__"
    ]
    assert not upward, f"{module} (layer {_rank(module)}) imports from its layer or above: {upward}"


def test_no_import_circles():
    def reach(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in GRAPH.get(start, ()):
            if nxt == goal or (nxt not in seen and (seen.add(nxt) or reach(nxt, goal, seen))):
                return True
        return False

    circles = [m for m in GRAPH if m != "mgtoolkit.__init__" and reach(m, m, set())]
    assert not circles, f"modules that import themselves back: {circles}"
