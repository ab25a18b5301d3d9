"""The layering of docs/ARCHITECTURE.md, checked on the source (parsed with ``ast``, not imported).

Every module under ``collector/`` and ``query/`` is parsed; each ``import`` and ``from … import``
(top-level, inside functions and classes, under ``if TYPE_CHECKING:`` alike) is resolved to an
absolute module name: ``from . import x`` names the submodule ``x`` when there is one, else the
package. The rules:

(a) ``collector`` never imports ``query``: the collector runs without the query side, and
    ``query.http.serving`` is where the two are composed.
(b) Outside ``collector/store/``, product code (``collector/``, ``query/``) imports exactly two
    modules of the storage package: the package itself, ``collector.store`` (the ``Store``
    protocol, ``create_store``, ``prune_store`` and the types the writer and the session
    tracker share with a backend), and ``collector.store.reads`` (the read surface of the
    query library). Every other ``collector.store.<module>`` (``duckdb_store``, ``schema``,
    ``span_archive``, ``maintenance.*``, …) is private to the package. Tests (``tests/``) may
    import any of them and are not checked.
(c) No import cycles between modules. The graph has an edge for every import, deferred ones
    (inside a function) included: a function-level import hides a cycle from the interpreter,
    not from the design. A package's own ``__init__`` running before its submodules is not an
    edge (else every package that re-exports its submodules would be a cycle).
(d) No ``type: ignore`` on a line that calls a store method, and no ``store.con`` / ``._con``
    outside ``collector/store/``: the writer's DuckDB connection is the storage package's own.
(e) ``collector.store`` imports nothing of ``collector`` but ``errors``, ``settings`` and
    ``durations``: a backend depends on no decoding, no receiver, no writer.
(f) ``query.library`` imports neither ``query.http`` nor ``query.cli``, and ``query.http`` does
    not import ``query.cli``: the read library is the bottom layer of the query side.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from importlib.machinery import EXTENSION_SUFFIXES
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("collector", "query")
STORE = "collector.store"
STORE_PUBLIC = {STORE, f"{STORE}.reads"}  # rule (b)
STORE_MAY_IMPORT = {  # rule (e): the collector's leaf modules
    "collector.errors",
    "collector.settings",
    "collector.durations",
    "collector.memory_budget",
    "collector.absent_modules",
}
STORE_CALL = re.compile(r"(?<![\w])_?store\.\w+\s*\(")
TYPE_IGNORE = re.compile(r"#\s*type:\s*ignore")
PRIVATE_CONNECTION = re.compile(r"store\.con\b|\._con\b")


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    path: Path  # its file, relative to the repository
    line: int
    target: str  # the imported module, absolute
    deferred: bool  # inside a function

    @property
    def where(self) -> str:
        return f"{self.path.as_posix()}:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_files() -> dict[str, Path]:
    files = {}
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            files[module_name(path)] = path
    return files


FILES = product_files()


def _is_module(name: str) -> bool:
    """A module of the product: parsed source, or a C extension built next to it."""
    if name in FILES:
        return True
    stem = ROOT.joinpath(*name.split("."))
    suffixes = [*EXTENSION_SUFFIXES, ".c"]  # the source of an extension not built yet
    return any(stem.with_name(stem.name + s).exists() for s in suffixes)


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The module ``from <node.module> import …`` reads, relative levels resolved."""
    if node.level == 0:
        return node.module or ""
    base = _package_of(module, path).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


class _Imports(ast.NodeVisitor):
    def __init__(self, module: str, path: Path):
        self.module, self.path = module, path
        self.depth = 0  # functions we are inside
        self.found: list[Import] = []

    def _add(self, node: ast.stmt, target: str) -> None:
        rel = self.path.relative_to(ROOT)
        self.found.append(Import(self.module, rel, node.lineno, target, self.depth > 0))

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _resolve(self.module, self.path, node)
        for alias in node.names:
            sub = f"{base}.{alias.name}"
            self._add(node, sub if alias.name != "*" and _is_module(sub) else base)


def imports_of(module: str, path: Path) -> list[Import]:
    visitor = _Imports(module, path)
    visitor.visit(ast.parse(path.read_text(), filename=str(path)))
    return visitor.found


IMPORTS = [imp for module, path in FILES.items() for imp in imports_of(module, path)]


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _report(title: str, found: list[str]) -> str:
    return f"{title}:\n  " + "\n  ".join(found)


def test_the_parser_sees_the_layout() -> None:
    """The checks below are only as good as the graph: it must hold the known edges."""
    edges = {(i.module, i.target) for i in IMPORTS}
    for edge in [
        ("collector.writer", "collector.store"),
        ("collector.store.maintenance.compaction", "collector.store.maintenance.archive_merge"),
        ("collector.store.migrations", "collector.store.layout"),
        ("query.library.reader", "query.library.traces"),  # from . import x
        ("query.library.traces", "query.library.sessions"),  # deferred
        ("query.library.search", "collector.store.reads"),
    ]:
        assert edge in edges, f"the import graph lacks {edge[0]} -> {edge[1]}"
    assert len(FILES) > 50, sorted(FILES)


def test_collector_never_imports_query() -> None:
    found = [
        f"{i.where}: {i.module} imports {i.target}"
        for i in IMPORTS
        if _within(i.module, "collector") and _within(i.target, "query")
    ]
    assert not found, _report(
        "the collector imports the query side (compose them in query/http/serving.py)", found
    )


def test_storage_modules_are_private_to_the_store_package() -> None:
    found = [
        f"{i.where}: {i.module} imports {i.target}"
        for i in IMPORTS
        if not _within(i.module, STORE)
        and _within(i.target, STORE)
        and i.target not in STORE_PUBLIC
    ]
    assert not found, _report(
        "outside collector/store/ only collector.store and collector.store.reads may be"
        " imported (export what you need from one of them)",
        found,
    )


def test_the_store_imports_only_the_collectors_leaf_modules() -> None:
    found = [
        f"{i.where}: {i.module} imports {i.target}"
        for i in IMPORTS
        if _within(i.module, STORE)
        and _within(i.target, "collector")
        and not _within(i.target, STORE)
        and i.target not in STORE_MAY_IMPORT
    ]
    assert not found, _report(
        f"collector.store may import of the collector only {sorted(STORE_MAY_IMPORT)}", found
    )


QUERY_LAYERS = {"query.library": ("query.http", "query.cli"), "query.http": ("query.cli",)}


def test_the_query_library_is_the_bottom_layer() -> None:
    found = [
        f"{i.where}: {i.module} imports {i.target}"
        for i in IMPORTS
        for layer, above in QUERY_LAYERS.items()
        if _within(i.module, layer) and any(_within(i.target, a) for a in above)
    ]
    assert not found, _report(
        "layers of the query side: query.library imports neither query.http nor query.cli,"
        " query.http not query.cli",
        found,
    )


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components of more than one module, or with a loop."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    found.append(sorted(component))
    return found


def _cycle_through(start: str, graph: dict[str, set[str]], within: set[str]) -> list[str]:
    """A shortest path start -> ... -> start inside one component."""
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(graph[node] & within):
            if child == start:
                return [*paths[node], start]
            if child not in paths:
                paths[child] = [*paths[node], child]
                queue.append(child)
    raise AssertionError(f"no cycle through {start}")


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {m: set() for m in FILES}
    sites: dict[tuple[str, str], Import] = {}
    for i in IMPORTS:
        if i.target in FILES:
            graph[i.module].add(i.target)
            sites.setdefault((i.module, i.target), i)
    cycles = []
    for component in _strongly_connected(graph):
        path = _cycle_through(component[0], graph, set(component))
        steps = []
        for a, b in pairwise(path):
            site = sites[(a, b)]
            how = " (inside a function)" if site.deferred else ""
            steps.append(f"{site.where}: {a} imports {b}{how}")
        cycles.append(f"{' -> '.join(path)}\n    " + "\n    ".join(steps))
    assert not cycles, _report(
        "import cycles (move the shared part into a module of its own)", cycles
    )


def test_the_store_connection_stays_in_the_store_package() -> None:
    found = []
    for module, path in FILES.items():
        rel = path.relative_to(ROOT).as_posix()
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if TYPE_IGNORE.search(line) and STORE_CALL.search(line):
                found.append(f"{rel}:{number}: type: ignore on a store call: {line.strip()}")
            if not _within(module, STORE) and PRIVATE_CONNECTION.search(line):
                found.append(f"{rel}:{number}: the store's connection: {line.strip()}")
    assert not found, _report(
        "store calls must type-check, and only collector/store/ touches its connection"
        " (add a Store method, or read through Store.cursor)",
        found,
    )
