"""The layers of wskit (docs/architecture.md): imports point down only, and never in a circle.

The import graph is read from the source with :mod:`ast`, so it holds every
import a module can make: at module level, inside functions, and under
``if TYPE_CHECKING:`` (an annotation-only import is still an arrow a reader
has to follow).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "wskit"

# Bottom to top. A module may import modules of its own layer or of a layer
# below, never one above. docs/architecture.md draws the same table.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("wire format and events", (
        "wskit.defaults", "wskit._suggest", "wskit.exceptions", "wskit._headermap", "wskit.events", "wskit.headers",
        "wskit._speedups", "wskit.mask", "wskit.frames", "wskit.http11", "wskit.handshake", "wskit.statemachine",
        "wskit.extensions", "wskit.extensions.*", "wskit.proxy", "wskit.redirects", "wskit.reconnect",
    )),
    ("plugin machinery", ("wskit.configschema", "wskit.hookspecs", "wskit.plugin", "wskit.plugins", "wskit.plugins.*")),
    ("protocol objects", (
        "wskit", "wskit._protocol", "wskit.client", "wskit.server", "wskit.protocol", "wskit.duties",
        "wskit.broadcast", "wskit.auth", "wskit.routing", "wskit.http2",
    )),
    ("configuration", ("wskit.config",)),
    ("I/O layers", (
        "wskit._io", "wskit.asyncio", "wskit.asyncio.*", "wskit.sync", "wskit.sync.*", "wskit.asgi", "wskit.asgi.*",
        "wskit.hub", "wskit.hub.*", "wskit.workers",
    )),
    ("command line", ("wskit.cli", "wskit.cli.*", "wskit.__main__")),
]

# The sans-I/O core: what it reaches, even indirectly, is never configuration, I/O or command line.
CORE = ("wskit._headermap", "wskit._protocol", "wskit.client", "wskit.defaults", "wskit.duties", "wskit.events",
        "wskit.exceptions", "wskit.extensions.base", "wskit.extensions.permessage_deflate", "wskit.frames",
        "wskit.handshake", "wskit.headers", "wskit.http11", "wskit.mask", "wskit.protocol", "wskit.server",
        "wskit.statemachine", "wskit.broadcast", "wskit.auth", "wskit.routing", "wskit.proxy", "wskit.redirects",
        "wskit.reconnect", "wskit.http2")
ABOVE_THE_CORE = ("wskit.config", "wskit._io", "wskit.cli", "wskit.asyncio", "wskit.sync", "wskit.asgi")


def module_files(package: Path) -> dict[str, Path]:
    """Map every module of ``package`` (``.py``, or a ``.pyi`` for a compiled one) to its file."""
    modules: dict[str, Path] = {}
    for path in sorted(package.rglob("*.py*")):
        if path.suffix not in (".py", ".pyi") or "__pycache__" in path.parts:
            continue
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules.setdefault(".".join(parts), path)  # the .py wins over its stub
    return modules


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, known: Iterable[str]) -> set[str]:
    names = set(known)
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names if alias.name in names}
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join([*base, node.module] if node.module else base)
    else:
        source = node.module or ""
    found = set()
    for alias in node.names:
        submodule = f"{source}.{alias.name}"
        if submodule in names:  # ``from . import hookspecs``: the submodule
            found.add(submodule)
        elif source in names:  # ``from .frames import Frame``: the module
            found.add(source)
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (anywhere in its source)."""
    files = module_files(package)
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        edges: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= _targets(node, module, path.stem == "__init__", files)
        edges.discard(module)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layer_of(module: str) -> int | None:
    for number, (_, patterns) in enumerate(LAYERS):
        for pattern in patterns:
            if module == pattern or (pattern.endswith(".*") and module.startswith(pattern[:-1])):
                return number
    return None


def reachable(graph: dict[str, set[str]], start: str) -> dict[str, str]:
    """Every module ``start`` reaches -> the module that imports it on one path from ``start``."""
    via: dict[str, str] = {}
    todo = [start]
    while todo:
        node = todo.pop()
        for target in graph.get(node, ()):
            if target not in via and target != start:
                via[target] = node
                todo.append(target)
    return via


GRAPH = import_graph(PACKAGE)


# -- the checker itself ----------------------------------------------------------------------


def test_the_graph_holds_module_function_and_type_checking_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("from .a import A\n")
    (package / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\nA = 1\n")
    (package / "b.py").write_text("def f():\n    from . import sub\n    return sub\nB = 2\n")
    (package / "sub" / "__init__.py").write_text("from ..a import A\nimport os\n")
    (package / "c.py").write_text("import pkg.b\nfrom pkg import a\n")
    graph = import_graph(package)
    assert graph == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b"},
        "pkg.b": {"pkg.sub"},
        "pkg.sub": {"pkg.a"},
        "pkg.c": {"pkg.b", "pkg.a"},
    }
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub"]]
    assert cycles({"x": {"y"}, "y": set()}) == []


# -- wskit ----------------------------------------------------------------------------------


def test_the_graph_sees_wskit() -> None:
    assert "wskit._protocol" in GRAPH["wskit.client"]
    assert "wskit.asyncio" in GRAPH["wskit.cli.demo"]  # imported inside a function
    assert "wskit._headermap" in GRAPH["wskit.events"]  # imported under TYPE_CHECKING


def test_no_import_cycles() -> None:
    assert cycles(GRAPH) == [], "import circles between wskit modules (docs/architecture.md: arrows point down)"


def test_every_module_has_a_layer() -> None:
    unplaced = sorted(m for m in GRAPH if layer_of(m) is None)
    assert unplaced == [], "place these modules in LAYERS here and in docs/architecture.md"


def test_imports_point_down_only() -> None:
    upward = []
    for module, targets in sorted(GRAPH.items()):
        own = layer_of(module)
        assert own is not None
        for target in sorted(targets):
            theirs = layer_of(target)
            assert theirs is not None
            if theirs > own:
                upward.append(f"{module} ({LAYERS[own][0]}) imports {target} ({LAYERS[theirs][0]})")
    assert upward == []


@pytest.mark.parametrize("module", CORE)
def test_the_core_reaches_no_configuration_io_or_command_line(module: str) -> None:
    via = reachable(GRAPH, module)
    bad = sorted(m for m in via if any(m == top or m.startswith(top + ".") for top in ABOVE_THE_CORE))
    chains = []
    for target in bad:
        chain = [target]
        while chain[-1] in via:
            chain.append(via[chain[-1]])
        chains.append(" <- ".join(chain))
    assert chains == []


def test_import_wskit_loads_no_yaml_argparse_or_difflib() -> None:
    code = ("import sys, wskit, wskit.protocol, wskit.frames, wskit.extensions.permessage_deflate\n"
            "heavy = ('yaml', 'argparse', 'difflib', 'wskit.config', 'wskit._io', 'wskit.cli', 'wskit.asyncio',"
            " 'wskit.sync', 'wskit.asgi', 'uvicorn', 'starlette')\n"
            "print(','.join(m for m in heavy if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_the_coverage_floors_hold_the_core_to_100_percent() -> None:
    """``.ci/coverage_floors.py`` requires 100% of exactly the modules this file calls the core."""
    script = ROOT / ".ci" / "coverage_floors.py"
    namespace: dict[str, object] = {"__file__": str(script), "__name__": "coverage_floors"}
    exec(compile(script.read_text(encoding="utf-8"), str(script), "exec"), namespace)
    floors_core = {path.removeprefix("wskit/").removesuffix(".py").replace("/", ".") for path in namespace["CORE"]}
    assert floors_core == {module.removeprefix("wskit.") for module in CORE}
    assert namespace["CORE_FLOOR"] == 100.0 and namespace["REST_FLOOR"] == 95.0
