"""The package's shape, read from its imports: layers that only import downwards, no circle, a report that
reads only the figures contract, suites that draw nothing, and files a reader can hold in their head."""

import ast
from pathlib import Path

import pytest

import mmtests

PACKAGE = Path(mmtests.__file__).parent
MAX_LINES = 450
# Lowest first. A module may import its own layer and the layers below it, never one above.
LAYERS = (
    ("foundation", ("mmtests", "mmtests.errors", "mmtests.offline", "mmtests.data.facts", "mmtests.figures")),
    ("matrix", ("mmtests.config",)),
    ("data and evaluation", ("mmtests.data", "mmtests.evaluation", "mmtests.tiny_families")),
    ("adapters", ("mmtests.adapters",)),
    ("session caches", ("mmtests.session",)),
    ("performance", ("mmtests.bench",)),
    ("entry points", ("mmtests.plugin", "mmtests.options", "mmtests.mmsession", "mmtests.runrecords", "mmtests.suites",
                      "mmtests.crashes",
                      "mmtests.report", "mmtests.nightly", "mmtests.faults", "mmtests.progress", "mmtests.benchmarks",
                      "mmtests.starter", "mmtests.cli")),
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The package modules `name` imports, at any depth of the file (lazy imports count)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + [node.module or ""]).strip(".") if node.level \
                else node.module or ""
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(f"{target}."):
                out.add(target)
    return out


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def layer_of(module: str) -> int:
    best = max(((len(prefix), i) for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
                if module == prefix or prefix != "mmtests" and module.startswith(f"{prefix}.")), default=None)
    assert best is not None, f"{module} is in no layer of tests/test_layers.py: place it"
    return best[1]


def test_every_module_has_a_layer():
    for module in MODULES:
        layer_of(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module):
    upward = [f"{target} ({LAYERS[layer_of(target)][0]})" for target in sorted(GRAPH[module])
              if layer_of(target) > layer_of(module)]
    assert not upward, f"{module} ({LAYERS[layer_of(module)][0]}) imports a layer above it: {', '.join(upward)}"


def test_no_import_circle():
    seen: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        seen[module] = 1
        for target in sorted(GRAPH[module]):
            if seen.get(target) == 1:
                circle = path[path.index(target):] + [target]
                pytest.fail("import circle: " + " -> ".join(circle))
            if target not in seen:
                visit(target, [*path, target])
        seen[module] = 2

    for module in sorted(MODULES):
        if module not in seen:
            visit(module, [module])


def test_the_report_reads_only_the_figures_contract():
    for module in (m for m in MODULES if m.startswith("mmtests.report")):
        others = [t for t in GRAPH[module] if not t.startswith(("mmtests.report", "mmtests.figures"))]
        assert not others, f"{module} imports {others}: the report reads records through mmtests.figures only"


def test_suites_draw_nothing():
    for module in (m for m in MODULES if m.startswith("mmtests.suites")):
        drawn = [t for t in GRAPH[module] if t.startswith("mmtests.report")]
        assert not drawn, f"{module} imports {drawn}: a suite stores data (mmtests.figures.artifacts); the report draws"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_files_stay_short(module):
    lines = len(MODULES[module].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module]} has {lines} lines (at most {MAX_LINES}): split it by responsibility"
