"""Imports flow one way (ARCHITECTURE.md, Layers): a module imports only from its own layer or the layers below."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "erbench"
# Lowest first. Within a layer imports are free, except the pairs in APART.
LAYERS = [
    {"erbench", "erbench.errors", "erbench.progress", "erbench.cpu"},
    {"erbench.registry", "erbench.trackers", "erbench.results", "erbench.downloads", "erbench.checkpoint"},
    {"erbench.config"},
    {"erbench.metrics", "erbench.models", "erbench.rl"},
    {"erbench.tasks", "erbench.methods"},
    {"erbench.runner", "erbench.integrations", "erbench.launchers"},
    {"erbench.sweep", "erbench.report", "erbench.interpolate"},
    {"erbench.cli"},
]
APART = [("erbench.tasks", "erbench.methods")]  # a task never imports a method, nor a method a task


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> tuple[int, str]:
    """The layer index and the unit (the longest layer entry the module falls under)."""
    matches = [(len(unit), index, unit) for index, units in enumerate(LAYERS) for unit in units
               if module == unit or module.startswith(unit + ".")]
    assert matches, f"{module} is in no layer of tests/test_layers.py: add it where it belongs"
    _, index, unit = max(matches)
    return index, unit


def imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else \
            [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
        found |= {name for name in names if name == "erbench" or name.startswith("erbench.")}
    return found


def test_imports_flow_downwards_only():
    upward = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        mine, my_unit = layer_of(module)
        for imported in imports(path):
            theirs, their_unit = layer_of(imported)
            if theirs > mine or (my_unit, their_unit) in APART or (their_unit, my_unit) in APART:
                upward.append(f"{module} imports {imported}")
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


def test_the_layer_check_catches_an_upward_import(tmp_path):
    path = tmp_path / "erbench" / "rl" / "bad.py"
    path.parent.mkdir(parents=True)
    path.write_text("from erbench.tasks.imdb import ImdbTask\nimport erbench.errors\n")
    assert imports(path) == {"erbench.tasks.imdb", "erbench.errors"}
    assert layer_of("erbench.rl.bad")[0] < layer_of("erbench.tasks.imdb")[0]
    assert layer_of("erbench.methods.nlpo")[1] == "erbench.methods" and layer_of("erbench")[0] == 0
