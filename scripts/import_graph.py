#!/usr/bin/env python3
"""The import graph of src/isorun, read statically, its cycles and its upward imports.

    scripts/import_graph.py                 the graph as text, its cycles, its upward imports
    scripts/import_graph.py --dot           the graph in Graphviz DOT (runtime edges)
    scripts/import_graph.py --check         exit 1 when the tree differs from the debt list
    scripts/import_graph.py --write-debt    rewrite tests/unit/architecture_debt.txt

Nothing is imported: each file is parsed with ``ast``, so the graph costs no import time
and shows what a module *could* load, not only what one run happened to load. Every edge
has a kind, because the kinds differ in what they can break:

- ``top``: a module-level import (also in ``try``/``if`` and class bodies); it runs at
  import time, so a cycle of these can fail with a partly initialised module.
- ``function``: an import inside a function, deferred until the call. A cycle through one
  does not fail at import time, but it is still a cycle of the design: neither module can
  be understood, tested or moved without the other.
- ``dynamic``: a string naming an isorun module (``importlib.import_module``, a table of
  lazily loaded commands): a deferred import the ``import`` statement does not show.
- ``typing``: under ``if TYPE_CHECKING:``; never runs, so it cannot close a cycle, but it
  is a dependency of the design, so it must not point upwards either.

The layer map is the layout docs/architecture.md describes, with the reason each layer
sits where it does. When a module is to move, ``MOVES`` maps it to its target until it
does, and its layer is the layer of its target. tests/unit/test_architecture.py holds
the tree to this map through the debt list, and the package ``__init__`` files of
``EMPTY_INITS`` to holding no import at all.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PACKAGE = "isorun"
DEBT = ROOT / "tests" / "unit" / "architecture_debt.txt"

#: the layers, lowest first: a module may import its own layer and the layers before it.
#: Each entry is (layer, target module prefixes); a prefix matches itself and its
#: submodules.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # isorun.version, not the package: the package's __init__ is a face of api (below),
    # so a low module reading ``from isorun import __version__`` would import upwards.
    ("errors", ("isorun.errors", "isorun.version")),
    ("kernel", ("isorun.kernel",)),
    # C, and the Python that builds it; shim/headers.py reads kernel/abi.py to generate
    # consts.h and tables.h, so it sits above kernel and below every user of the module.
    ("shim", ("isorun.shim", "isorun._shim_c")),
    ("profile", ("isorun.profile",)),
    ("host", ("isorun.host",)),
    ("compile", ("isorun.compile",)),
    ("sandbox", ("isorun.sandbox",)),
    ("cache", ("isorun.cache",)),
    # The package's __init__ resolves the public names from api lazily (PEP 562), so it
    # is a face of api, not a root every layer may import.
    ("api", ("isorun.api", "isorun.doctor", "isorun")),
    ("learn", ("isorun.learn",)),
    ("testing", ("isorun.testing",)),
    # isorun.pytest is ``python -m isorun.pytest``, a documented command.
    ("cli", ("isorun.cli", "isorun.__main__", "isorun.pytest")),
)

#: compiled modules: nodes without a file to parse (built by shim/build_shim.py)
EXTENSIONS = ("isorun._shim_c",)

#: a module that is to move -> its target (docs/architecture.md has the layers and their
#: reasons); the entry goes once the file is there. A module absent from it is where it
#: belongs.
MOVES: dict[str, str] = {
}

#: packages whose ``__init__.py`` may hold no import at all (isorun or not, at any level):
#: importing a module runs every ``__init__`` above it, and these sit on paths that pay
#: for each module loaded: the warm launch (cli.launch, cache), the pytest11 entry point
#: (testing.plugin), and kernel/learn, which those reach. The test holds each that exists.
EMPTY_INITS = ("isorun.cli", "isorun.testing", "isorun.cache", "isorun.learn", "isorun.kernel")

KINDS = ("top", "function", "dynamic", "typing")
#: the kinds that run, so can close a cycle
RUNTIME = frozenset({"top", "function", "dynamic"})


@dataclass(frozen=True, slots=True)
class Edge:
    src: str
    dst: str
    kind: str
    line: int
    #: the function the import is in (``Class.method``), "" at module level
    scope: str = field(default="", compare=False)


def module_files(src: Path = SRC) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for path in sorted((src / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(tree: ast.Module) -> Iterator[tuple[ast.AST, str, str]]:
    """Every node of ``tree`` with the kind of import it would be and the function
    (``Class.method``) it is in, "" at module level. A stack, not recursion through
    generators: this walk is most of the architecture test's time."""
    stack: list[tuple[ast.AST, str, str]] = [(tree, "top", "")]
    while stack:
        node, kind, scope = stack.pop()
        for child in ast.iter_child_nodes(node):
            child_kind, child_scope = kind, scope
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                child_kind = "function" if kind != "typing" else kind
                name = getattr(child, "name", "<lambda>")
                child_scope = f"{scope}.{name}" if scope else name
            elif isinstance(child, ast.ClassDef):
                child_scope = f"{scope}.{child.name}" if scope else child.name
            elif isinstance(child, ast.Expr) and isinstance(child.value, ast.Constant):
                continue  # a docstring: it names modules without loading them
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for stmt in child.body:
                    yield stmt, "typing", scope
                    stack.append((stmt, "typing", scope))
                for stmt in child.orelse:
                    yield stmt, kind, scope
                    stack.append((stmt, kind, scope))
                continue
            yield child, child_kind, scope
            stack.append((child, child_kind, child_scope))


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The isorun module ``name`` loads: itself, else its closest existing parent."""
    while name:
        if name in modules or name in EXTENSIONS:
            return name
        name = name.rpartition(".")[0]
    return None


def module_edges(name: str, path: Path, modules: dict[str, Path]) -> list[Edge]:
    tree = ast.parse(path.read_bytes(), str(path))
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    edges: list[Edge] = []

    def add(target: str, kind: str, line: int, scope: str) -> None:
        dst = _resolve(target, modules)
        if dst is not None and dst != name:
            edges.append(Edge(name, dst, kind, line, scope))

    for node, kind, scope in _walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, kind, node.lineno, scope)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            for alias in node.names:
                # `from pkg import mod` loads the submodule; `from mod import name` the module
                submodule = f"{origin}.{alias.name}"
                known = submodule in modules or submodule in EXTENSIONS
                add(submodule if known else origin, kind, node.lineno, scope)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value in modules
            and node.value.startswith(f"{PACKAGE}.")
        ):
            add(node.value, "dynamic", node.lineno, scope)
    return edges


def init_imports(path: Path) -> list[str]:
    """Each import statement of ``path`` (``line: text``) but ``from __future__``, and each
    string naming an isorun module (a deferred import by name), wherever it sits."""
    tree = ast.parse(path.read_bytes(), str(path))
    docstrings = {
        id(node.body[0].value) for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body and isinstance(node.body[0], ast.Expr)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in docstrings:
            continue  # a docstring names modules without loading them
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(f"{node.lineno}: {ast.unparse(node)}")
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and node.value.startswith(f"{PACKAGE}.")):
            found.append(f"{node.lineno}: {node.value!r}")
    return found


def busy_inits(modules: dict[str, Path]) -> dict[str, list[str]]:
    """The EMPTY_INITS packages that exist and import something, with what they import."""
    out = {}
    for package in EMPTY_INITS:
        path = modules.get(package)
        if path is not None and path.name == "__init__.py":
            found = init_imports(path)
            if found:
                out[package] = found
    return out


@dataclass(frozen=True, slots=True, repr=False)
class Graph:
    modules: dict[str, Path]
    edges: tuple[Edge, ...]

    def __repr__(self) -> str:  # short: pytest prints it beside every failure
        return f"Graph({len(self.modules)} modules, {len(self.edges)} imports)"

    def runtime(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {m: set() for m in (*self.modules, *EXTENSIONS)}
        for e in self.edges:
            if e.kind in RUNTIME:
                out[e.src].add(e.dst)
        return out

    def top_level(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {m: set() for m in (*self.modules, *EXTENSIONS)}
        for e in self.edges:
            if e.kind == "top":
                out[e.src].add(e.dst)
        return out


def build(src: Path = SRC) -> Graph:
    modules = module_files(src)
    edges = [e for name, path in modules.items() for e in module_edges(name, path, modules)]
    return Graph(modules, tuple(sorted(set(edges), key=lambda e: (e.src, e.dst, e.line, e.kind))))


def cycles(adjacency: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative:
    a recursive walk would need a raised recursion limit on a deep graph)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in sorted(adjacency):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(adjacency[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(adjacency[succ]))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
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
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found, key=lambda c: (-len(c), c))


def target(module: str) -> str:
    return MOVES.get(module, module)


def layer_of(module: str) -> int | None:
    """The index in LAYERS of ``module``'s target (the longest matching prefix), or None."""
    goal = target(module)
    best: tuple[int, int] | None = None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = goal == prefix or goal.startswith(prefix + ".")
            if matches and (best is None or len(prefix) > best[1]):
                best = (i, len(prefix))
    return None if best is None else best[0]


def unplaced(graph: Graph) -> list[str]:
    return [m for m in graph.modules if layer_of(m) is None]


def upward(graph: Graph) -> list[Edge]:
    """Every import (of any kind, typing included) from a lower layer to a higher one."""
    out = []
    for e in graph.edges:
        src, dst = layer_of(e.src), layer_of(e.dst)
        if src is not None and dst is not None and dst > src:
            out.append(e)
    return out


def _short(module: str) -> str:
    return module.removeprefix(f"{PACKAGE}.")


def debt_lines(graph: Graph) -> list[str]:
    """Today's known cycles and upward imports, one a line, in a stable order: keyed by
    module, never by line number, so an edit elsewhere in a file does not change it."""
    lines = [f"cycle {' '.join(_short(m) for m in c)}" for c in cycles(graph.runtime())]
    pairs = sorted({(e.src, e.dst) for e in upward(graph)})
    for src, dst in pairs:
        kinds = sorted({e.kind for e in graph.edges if (e.src, e.dst) == (src, dst)},
                       key=KINDS.index)
        lines.append(f"upward {_short(src)} -> {_short(dst)}  # {'+'.join(kinds)}: "
                     f"{LAYERS[layer_of(src) or 0][0]} -> {LAYERS[layer_of(dst) or 0][0]}")
    return lines


def read_debt(path: Path = DEBT) -> list[str]:
    """The entries of the debt file, without comments (a trailing ``# ...`` is a note)."""
    out = []
    for raw in path.read_text().splitlines():
        entry = raw.split("#", 1)[0].strip()
        if entry:
            out.append(" ".join(entry.split()))
    return out


def _entries(lines: Iterable[str]) -> set[str]:
    return {" ".join(line.split("#", 1)[0].split()) for line in lines}


def compare(graph: Graph, path: Path = DEBT) -> tuple[list[str], list[str]]:
    """(new, gone): entries of the tree not in the debt file, and the reverse."""
    now, listed = _entries(debt_lines(graph)), set(read_debt(path))
    return sorted(now - listed), sorted(listed - now)


DEBT_HEADER = """\
# Import cycles and upward imports of src/isorun known today, which issue 19 removes.
# tests/unit/test_architecture.py fails on any entry the tree has and this list lacks (a
# new cycle or upward import), and on any entry listed here the tree no longer has (so
# the list only shrinks and stays exact). Generated: scripts/import_graph.py --write-debt
# (the layer map is LAYERS and MOVES in that script); no hand edits.
"""


def _how(e: Edge) -> str:
    return f"{e.kind} in {e.scope}" if e.scope else e.kind


def render_text(graph: Graph) -> str:
    out: list[str] = []
    runtime_cycles = cycles(graph.runtime())
    top_cycles = cycles(graph.top_level())
    ups = upward(graph)
    by_src: dict[str, list[Edge]] = {}
    for e in graph.edges:
        by_src.setdefault(e.src, []).append(e)
    out.append(f"# {len(graph.modules)} modules, {len(graph.edges)} import edges "
               + ", ".join(f"{k} {sum(e.kind == k for e in graph.edges)}" for k in KINDS))
    out.append("")
    out.append("## graph (module [layer] -> imports; f = in a function, d = dynamic, "
               "t = TYPE_CHECKING)")
    marks = {"top": "", "function": " f", "dynamic": " d", "typing": " t"}
    for module in sorted(graph.modules):
        layer = layer_of(module)
        name = LAYERS[layer][0] if layer is not None else "UNPLACED"
        arrow = f" => {_short(target(module))}" if target(module) != module else ""
        out.append(f"{_short(module)} [{name}]{arrow}")
        seen: dict[str, set[str]] = {}
        for e in by_src.get(module, []):
            seen.setdefault(e.dst, set()).add(marks[e.kind].strip())
        for dst in sorted(seen):
            flags = ",".join(sorted(f for f in seen[dst] if f))
            out.append(f"    -> {_short(dst)}{f' ({flags})' if flags else ''}")
    out.append("")
    sizes = ", ".join(str(len(c)) for c in runtime_cycles)
    out.append(f"## cycles (runtime edges: top, function, dynamic): {len(runtime_cycles)}, "
               f"sizes {sizes or '-'}")
    for c in runtime_cycles:
        out.append(f"  {len(c)}: {' '.join(_short(m) for m in c)}")
        members = set(c)
        for e in graph.edges:
            if e.src in members and e.dst in members and e.kind in RUNTIME:
                out.append(f"      {_short(e.src)}:{e.line} -> {_short(e.dst)} ({_how(e)})")
    sizes = ", ".join(str(len(c)) for c in top_cycles)
    out.append(f"## cycles of module-level imports only (fail at import time if the order "
               f"changes): {len(top_cycles)}, sizes {sizes or '-'}")
    for c in top_cycles:
        out.append(f"  {len(c)}: {' '.join(_short(m) for m in c)}")
    out.append("")
    out.append(f"## upward imports (lower layer -> higher): {len(ups)} statements, "
               f"{len({(e.src, e.dst) for e in ups})} module pairs")
    for e in ups:
        out.append(f"  {_short(e.src)}:{e.line} -> {_short(e.dst)} ({_how(e)}; "
                   f"{LAYERS[layer_of(e.src) or 0][0]} -> {LAYERS[layer_of(e.dst) or 0][0]})")
    missing = unplaced(graph)
    if missing:
        out.append("")
        out.append(f"## modules in no layer (add them to LAYERS or MOVES): {' '.join(missing)}")
    return "\n".join(out) + "\n"


def render_dot(graph: Graph) -> str:
    in_cycle = {m for c in cycles(graph.runtime()) for m in c}
    ups = {(e.src, e.dst) for e in upward(graph)}
    out = ["digraph isorun {", "  rankdir=BT;", "  node [shape=box, fontsize=10];"]
    for module in sorted(graph.modules):
        color = ', color=red' if module in in_cycle else ""
        out.append(f'  "{_short(module)}" [label="{_short(module)}"{color}];')
    styles = {"top": "solid", "function": "dashed", "dynamic": "dotted", "typing": "dotted"}
    pairs: dict[tuple[str, str], str] = {}
    for e in graph.edges:
        # one arrow per pair, in the style of its strongest kind (top over function ...)
        best = pairs.get((e.src, e.dst))
        if best is None or KINDS.index(e.kind) < KINDS.index(best):
            pairs[(e.src, e.dst)] = e.kind
    for (src, dst), kind in sorted(pairs.items()):
        color = ", color=red" if (src, dst) in ups else ""
        out.append(f'  "{_short(src)}" -> "{_short(dst)}" [style={styles[kind]}{color}];')
    out.append("}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--dot", action="store_true", help="print Graphviz DOT instead")
    parser.add_argument("--check", action="store_true",
                        help="compare with the debt list; exit 1 on any difference")
    parser.add_argument("--write-debt", action="store_true",
                        help=f"rewrite {DEBT.relative_to(ROOT)} from the tree")
    args = parser.parse_args(argv)
    graph = build()
    if args.write_debt:
        DEBT.write_text(DEBT_HEADER + "\n".join(debt_lines(graph)) + "\n")
        print(f"wrote {DEBT.relative_to(ROOT)}: {len(debt_lines(graph))} entries")
        return 0
    if args.check:
        new, gone = compare(graph)
        for entry in new:
            print(f"new:  {entry}")
        for entry in gone:
            print(f"gone: {entry}")
        return 1 if new or gone or unplaced(graph) else 0
    sys.stdout.write(render_dot(graph) if args.dot else render_text(graph))
    return 0


if __name__ == "__main__":
    sys.exit(main())
