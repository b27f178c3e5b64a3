"""Imports point down the layers and close no cycle; files and functions stay short
(issue 19).

The graph comes from scripts/import_graph.py, which parses src/isorun with ``ast`` (no
module is imported, so this costs nothing at import time and sees deferred imports too).
Today's tree still has cycles and upward imports; they are listed, exactly, in
tests/unit/architecture_debt.txt. A new one fails here, and so does a listed one that is
gone, so the list only shrinks; issue 19 empties it.

The sizes come from scripts/size_report.py, also by parsing: a file over 400 lines or a
function over 60 needs a ``long:`` comment saying why (the script's docstring has the
convention), or an entry in tests/unit/size_debt.txt, which only shrinks the same way.

The documents name modules too: each name must be one the tree has.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = (
    "If the change is intended (a merge moved an import, or you removed one), regenerate "
    "the list with `scripts/import_graph.py --write-debt` and review its diff; "
    "`scripts/import_graph.py` prints the graph with each import's file and line."
)


def _load_script(script: str) -> ModuleType:
    # By path: scripts/ is not a package, and the script must stay runnable on its own.
    name = f"isorun_{script}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{script}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while building the class
    spec.loader.exec_module(module)
    return module


ig = _load_script("import_graph")
sr = _load_script("size_report")


@pytest.fixture(scope="module")
def graph() -> Any:
    return ig.build()


def _explain(graph: Any, entries: list[str]) -> str:
    """Each entry with the import statements behind it (file:line), so the failure says
    which line to change."""
    lines = []
    for entry in entries:
        lines.append(f"  {entry}")
        if entry.startswith("cycle "):
            members = {f"isorun.{m}" if m != "isorun" else m for m in entry.split()[1:]}
            for e in graph.edges:
                if e.src in members and e.dst in members and e.kind in ig.RUNTIME:
                    lines.append(f"      {e.src}:{e.line} -> {e.dst} ({e.kind})")
        else:
            src, dst = (f"isorun.{m}" if m != "isorun" else m
                        for m in entry.split()[1::2][:2])
            for e in graph.edges:
                if (e.src, e.dst) == (src, dst):
                    lines.append(f"      {e.src}:{e.line} -> {e.dst} ({e.kind})")
    return "\n".join(lines)


def test_every_module_has_a_layer(graph: Any) -> None:
    missing = ig.unplaced(graph)
    assert not missing, (
        f"modules in no layer: {missing}; add their target to LAYERS (or MOVES) in "
        "scripts/import_graph.py"
    )


def test_no_new_import_cycle(graph: Any) -> None:
    new, _ = ig.compare(graph)
    cycles = [e for e in new if e.startswith("cycle ")]
    assert not cycles, (
        "import cycles not in tests/unit/architecture_debt.txt (a grown known cycle shows "
        "here with its new members, and as gone below):\n"
        f"{_explain(graph, cycles)}\nBreak the cycle: move the shared code down a layer. "
        + REGENERATE
    )


def test_no_new_upward_import(graph: Any) -> None:
    new, _ = ig.compare(graph)
    upward = [e for e in new if e.startswith("upward ")]
    assert not upward, (
        "imports from a lower layer to a higher one, not in tests/unit/architecture_debt.txt "
        f"(layers, lowest first: {[name for name, _ in ig.LAYERS]}):\n"
        f"{_explain(graph, upward)}\nMove the imported code down, or pass it in. " + REGENERATE
    )


def test_debt_list_is_exact(graph: Any) -> None:
    _, gone = ig.compare(graph)
    assert not gone, (
        "entries of tests/unit/architecture_debt.txt the tree no longer has (good: remove "
        "them, so they cannot come back unnoticed):\n"
        + "\n".join(f"  {e}" for e in gone) + "\n" + REGENERATE
    )


def test_package_inits_import_nothing_of_isorun_at_import_time(graph: Any) -> None:
    # Importing any module runs every __init__ above it: an import there is paid by the
    # warm launch (isorun.__main__ under isorun/) and by the pytest plugin alike.
    packages = {m for m, path in graph.modules.items() if path.name == "__init__.py"}
    eager = [f"{e.src}:{e.line} -> {e.dst}" for e in graph.edges
             if e.src in packages and e.kind in ("top", "dynamic")]
    assert not eager, f"package __init__ modules importing at import time: {eager}"


def test_capability_package_inits_import_nothing(graph: Any) -> None:
    # Stricter than the check above for the packages on the warm launch and the pytest11
    # entry point: nothing at all, not click, not a deferred sibling (cli/__init__ holding
    # the click group would cost every launch ~26 ms; the group lives in cli/main.py).
    busy = ig.busy_inits(graph.modules)
    assert not busy, (
        "package __init__ modules that must stay empty but import something (move the code "
        "into a module of the package and import that where it is used):\n"
        + "\n".join(f"  {pkg}: {found}" for pkg, found in sorted(busy.items()))
    )


def _package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "isorun" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_graph_sees_deferred_cycles_and_upward_typing_imports(tmp_path: Path) -> None:
    # The checks above pass on an empty graph; this holds the builder to what it must find.
    src = _package(tmp_path, {
        "__init__.py": "",
        "errors.py": "def late():\n    from isorun import api\n    return api\n",
        "api.py": "from isorun.errors import late\n",
        "kernel/__init__.py": "",
        "kernel/abi.py": (
            "TYPE_CHECKING = False\nif TYPE_CHECKING:\n    from isorun.cache import store\n"
        ),
        "cache/__init__.py": "",
        "cache/store.py": "from ..kernel import abi\nfrom . import index\n",
        "cache/index.py": "from isorun.cache.store import x\n",
        "cli.py": "COMMANDS = {'x': 'isorun.api'}\n",
    })
    g = ig.build(src)
    kinds = {(e.src, e.dst): e.kind for e in g.edges}
    assert kinds == {
        ("isorun.errors", "isorun.api"): "function",
        ("isorun.api", "isorun.errors"): "top",
        ("isorun.kernel.abi", "isorun.cache.store"): "typing",
        ("isorun.cache.store", "isorun.kernel.abi"): "top",
        ("isorun.cache.store", "isorun.cache.index"): "top",
        ("isorun.cache.index", "isorun.cache.store"): "top",
        ("isorun.cli", "isorun.api"): "dynamic",
    }
    # the TYPE_CHECKING import closes no cycle, the deferred one does
    assert ig.cycles(g.runtime()) == [
        ["isorun.api", "isorun.errors"], ["isorun.cache.index", "isorun.cache.store"],
    ]
    assert ig.cycles(g.top_level()) == [["isorun.cache.index", "isorun.cache.store"]]
    # but it still points upwards, as does the deferred one
    assert {(e.src, e.dst) for e in ig.upward(g)} == {
        ("isorun.errors", "isorun.api"), ("isorun.kernel.abi", "isorun.cache.store"),
    }


def test_busy_inits_finds_every_import_of_an_empty_package(tmp_path: Path) -> None:
    src = _package(tmp_path, {
        "__init__.py": "from isorun import api\n",  # not in EMPTY_INITS: its own rule
        "cli/__init__.py": (
            '"""The CLI: isorun.cli.main holds the group."""\n'
            "from __future__ import annotations\nimport click\n"
            "def group():\n    from isorun.cli import main\n    return main\n"
            "LAZY = {'run': 'isorun.cli.launch'}\n"
        ),
        "cli/main.py": "", "cli/launch.py": "",
        "testing/__init__.py": '"""Docstring only."""\nfrom __future__ import annotations\n',
        "kernel/__init__.py": "TYPE_CHECKING = False\nif TYPE_CHECKING:\n    import os\n",
    })
    busy = ig.busy_inits(ig.module_files(src))
    assert busy == {
        "isorun.cli": ["3: import click", "5: from isorun.cli import main",
                       "7: 'isorun.cli.launch'"],
        "isorun.kernel": ["3: import os"],
    }


@pytest.fixture(scope="module")
def sizes() -> Any:
    return sr.scan()


SIZE_REGENERATE = (
    "If the change is intended (a merge moved a file), regenerate the list with "
    "`scripts/size_report.py --write-debt` and review its diff; `scripts/size_report.py` "
    "prints every long file and function with its line."
)


def test_no_new_long_file_or_function(sizes: Any) -> None:
    new, _, _ = sr.compare(sizes)
    assert not new, (
        f"files over {sr.MAX_FILE} lines or functions over {sr.MAX_FUNCTION} lines, with no "
        "`long:` marker and not in tests/unit/size_debt.txt:\n"
        + "\n".join(f"  {e}" for e in new)
        + "\nSplit them by the steps they mix, or, where the length is right (data, one "
        "loop), say why in a marker comment: `# long: <reason>` directly above the def, or "
        "at the top of the file above its docstring (`/* long: <reason> */` in C). "
        + SIZE_REGENERATE
    )


def test_no_listed_long_one_grew(sizes: Any) -> None:
    _, grown, _ = sr.compare(sizes)
    assert not grown, (
        "files or functions of tests/unit/size_debt.txt longer than listed (debt may not "
        "grow: split the function, or take the lines out elsewhere):\n"
        + "\n".join(f"  {e}" for e in grown)
    )


def test_size_debt_list_is_exact(sizes: Any) -> None:
    _, _, gone = sr.compare(sizes)
    assert not gone, (
        "entries of tests/unit/size_debt.txt the tree no longer has unmarked over the limit "
        "(good: remove them, so they cannot come back unnoticed):\n"
        + "\n".join(f"  {e}" for e in gone) + "\n" + SIZE_REGENERATE
    )


def _body(n: int, indent: str = "    ") -> str:
    return "".join(f"{indent}x = {i}\n" for i in range(n))


def test_size_scan_honours_markers_and_only_them(tmp_path: Path) -> None:
    # The checks above pass on a tree without long code; this holds the scanner to what
    # it must find, and to where a marker counts.
    package = tmp_path / "src" / "isorun"
    package.mkdir(parents=True)
    reason = "an interpreter loop, one case per opcode"
    (package / "funcs.py").write_text(
        '"""Module."""\n'
        "def unmarked():\n" + _body(60)  # 61 lines with the def: over
        + "def exactly_sixty():\n" + _body(59)
        + f"# long: {reason}\n@staticmethod\ndef marked():\n" + _body(65)
        + "# long: short\ndef reason_too_short():\n" + _body(65)
        + f"# long: {reason}\n\ndef marker_not_adjacent():\n" + _body(65)
        + "class C:\n    def method(self):\n" + _body(61, " " * 8)
    )
    (package / "late_marker.py").write_text(
        f'"""Docstring first."""\n# long: {reason}\n' + _body(399, "")
    )
    (package / "top_marker.py").write_text(
        f'#!/usr/bin/env python3\n# long: {reason}\n"""Docstring."""\n' + _body(398, "")
    )
    (package / "shim.c").write_text(
        "/*\n * The shim.\n */\n#include <stdio.h>\n"
        f"/* long: {reason} */\n"
        + "".join(f"/* filler {i} */\n" for i in range(300))
        + f"/* Why this is long.\n */\n/* long: {reason} */\nstatic int marked(void) {{\n"
        + _body(70) + "}\n"
        + "static int unmarked(int a,\n                    int b) {\n" + _body(70) + "}\n"
    )
    (package / "long.h").write_text(f"/* long: {reason} */\n" + "#define X 1\n" * 401)
    found = {(i.kind, i.path.removeprefix("src/isorun/"), i.name): (i.length, i.reason)
             for i in sr.scan(package, tmp_path)}
    assert found == {
        ("function", "funcs.py", "unmarked"): (61, None),
        ("function", "funcs.py", "marked"): (66, reason),
        ("function", "funcs.py", "reason_too_short"): (66, None),
        ("function", "funcs.py", "marker_not_adjacent"): (66, None),
        ("function", "funcs.py", "C.method"): (62, None),
        ("file", "late_marker.py", ""): (401, None),
        ("file", "top_marker.py", ""): (401, reason),
        ("file", "shim.c", ""): (5 + 300 + 3 + 72 + 73, None),
        ("function", "shim.c", "marked"): (72, reason),
        ("function", "shim.c", "unmarked"): (73, None),
        ("file", "long.h", ""): (402, reason),
    }
    assert sr.debt_lines(sr.scan(package, tmp_path)) == [
        "file src/isorun/late_marker.py 401",
        "file src/isorun/shim.c 453",
        "function src/isorun/funcs.py C.method 62",
        "function src/isorun/funcs.py marker_not_adjacent 66",
        "function src/isorun/funcs.py reason_too_short 66",
        "function src/isorun/funcs.py unmarked 61",
        "function src/isorun/shim.c unmarked 73",
    ]
    debt = tmp_path / "debt.txt"
    debt.write_text("# header\nfile src/isorun/late_marker.py 400  # a note\n"
                    "function src/isorun/funcs.py unmarked 70\n"
                    "function src/isorun/funcs.py gone_now 90\n")
    new, grown, gone = sr.compare(sr.scan(package, tmp_path), debt)
    assert "function src/isorun/funcs.py C.method 62" in new
    assert "function src/isorun/funcs.py unmarked 61" not in new  # listed, and shorter
    assert grown == ["file src/isorun/late_marker.py 401 (listed 400)"]
    assert gone == ["function src/isorun/funcs.py gone_now 90"]


# Module names in the documentation: a doc that names a module the tree no longer has
# sends its reader to nothing. Two forms are checked, wherever they appear in a doc:
# dotted names (``isorun.cache.store``, ``isorun.api.Popen``) and paths under the package
# with or without ``src/isorun/`` (``sandbox/parent.py``, ``cache/entry``,
# ``sandbox/native.build_spec``, ``shim/stage/``): each must be a module, file or folder
# of src/isorun, followed at most by a name the module defines at its top level.
DOCS = (*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md")
#: modules and folders docs/architecture.md names that the branches of issue 19 create.
#: Accepted while absent; once one exists it must leave this set (the test says so), so
#: after the merge the set empties and every name is checked against the tree.
PLANNED = frozenset({
})
_FOLDERS = "profile|compile|sandbox|host|shim|cache|cli|testing|learn|kernel"
_PATH_REF = re.compile(rf"(?<![\w/.$-])(?:src/isorun/)?((?:{_FOLDERS})/[\w/.]*\w)")
_DOTTED_REF = re.compile(r"(?<![\w/.])isorun(?:\.\w+)+")
_SUFFIXES = ("py", "c", "h")


@functools.cache
def _top_level_names(path: Path) -> set[str]:
    names: set[str] = set()
    stack: list[ast.stmt] = list(ast.parse(path.read_bytes(), str(path)).body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If | ast.Try):  # definitions under a condition count too
            stack.extend([*node.body, *node.orelse, *getattr(node, "finalbody", [])])
            stack.extend(s for h in getattr(node, "handlers", []) for s in h.body)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
    return names


@functools.cache
def _package_names(init: Path) -> set[str]:
    """What ``isorun.NAME`` may be besides a module: ``__all__`` and the lazy names."""
    names = _top_level_names(init)
    for node in ast.walk(ast.parse(init.read_bytes())):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)
    return names


def resolve_doc_ref(ref: str, package: Path, planned: frozenset[str] = PLANNED) -> str | None:
    """Why ``ref`` (a path under the package, dots for a name in it) names nothing, or
    None when it names a module, file or folder (and a name the module defines)."""
    folder, _, last = ref.rpartition("/")
    stem, *rest = last.split(".")
    base = f"{folder}/{stem}" if folder else stem
    if rest and rest[0] in _SUFFIXES and len(rest) == 1:
        file = f"{base}.{rest[0]}"
        if (package / file).is_file() or file in planned or base in planned:
            return None
        return "no such file"
    if base in planned:
        return None
    if (package / base).is_dir() and not rest:
        return None
    module = package / f"{base}.py"
    if not module.is_file():
        module = package / base / "__init__.py"
        if not module.is_file():
            return "no such module or folder"
    if rest and rest[0] not in _top_level_names(module):
        return f"{base} defines no {rest[0]}"
    return None


def doc_refs(text: str) -> list[tuple[int, str]]:
    """(line, reference as a path under the package) of every module name in ``text``."""
    found: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), 1):
        hits = [(m.start(), m.group(1)) for m in _PATH_REF.finditer(line)]
        hits += [(m.start(), m.group(0)) for m in _DOTTED_REF.finditer(line)]
        found.extend((number, ref) for _, ref in sorted(hits))
    return found


def resolve_dotted(name: str, package: Path, planned: frozenset[str] = PLANNED) -> str | None:
    """As :func:`resolve_doc_ref`, for ``isorun.a.b.name``."""
    parts = name.split(".")[1:]
    for cut in range(len(parts), 0, -1):
        base = "/".join(parts[:cut])
        if base in planned:
            return None
        if (package / f"{base}.py").is_file() or (package / base / "__init__.py").is_file():
            return resolve_doc_ref(".".join([base, *parts[cut:cut + 1]]), package, planned)
    if parts[0] in _package_names(package / "__init__.py"):
        return None
    return "no such module, and not a name of the package"


def stale_doc_refs(docs: tuple[Path, ...], package: Path,
                   planned: frozenset[str] = PLANNED) -> list[str]:
    out = []
    for doc in docs:
        for line, ref in doc_refs(doc.read_text()):
            why = (resolve_dotted(ref, package, planned) if ref.startswith("isorun.")
                   else resolve_doc_ref(ref, package, planned))
            if why is not None:
                where = doc.relative_to(ROOT if doc.is_relative_to(ROOT) else doc.parents[1])
                out.append(f"{where}:{line}: {ref}: {why}")
    return out


def test_docs_name_only_modules_that_exist() -> None:
    stale = stale_doc_refs(DOCS, ROOT / "src" / "isorun")
    assert not stale, (
        "docs naming modules, files or names the tree does not have (a module moved or "
        "was renamed: follow it in the docs too):\n" + "\n".join(f"  {s}" for s in stale)
    )


#: top-level modules of the tree before issue 19 -> where their code lives now. The path
#: check above cannot see them (they sit in no folder), and older text and habits name them.
RENAMED = {
    "cli_backends": "cli/doctor", "cli_learn": "cli/learn", "cli_pytest": "cli/pytest",
    "cli_seccomp": "cli/seccomp", "launch_index": "cache/index",
    "learn_profile": "learn/profile", "seccomp_check": "profile/seccomp_rules",
    **{f"pytest_{name}": f"testing/{name}" for name in (
        "plugin", "session", "sandbox", "plan", "rules", "environ", "trust", "coverage")},
    "pytest_inner": "testing/child",
}  # fmt: skip
#: (a C file of the same name, shim/launcher/launch_index.c, is not one of them)
_RENAMED_REF = re.compile(rf"(?<![\w/.])({'|'.join(RENAMED)})\b(?!\.[ch]\b)")


def renamed_refs(docs: tuple[Path, ...]) -> list[str]:
    return [f"{doc.name}:{number}: {m.group(1)} is now {RENAMED[m.group(1)]}"
            for doc in docs
            for number, line in enumerate(doc.read_text().splitlines(), 1)
            for m in _RENAMED_REF.finditer(line)]


def test_docs_name_no_module_issue_19_renamed() -> None:
    assert not renamed_refs(DOCS), "\n".join(renamed_refs(DOCS))


def test_renamed_refs_are_found(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("`pytest_plan.resolve_mounts`, launch_index.py; not pytest_plugins,\n"
                   "pytest_load_initial_conftests, testing/plan, launch_index.c\n")
    assert renamed_refs((doc,)) == ["x.md:1: pytest_plan is now testing/plan",
                                    "x.md:1: launch_index is now cache/index"]


def test_planned_modules_leave_the_planned_set_once_they_exist() -> None:
    package = ROOT / "src" / "isorun"
    here = sorted(p for p in PLANNED
                  if (package / p).exists() or (package / f"{p}.py").exists())
    assert not here, (
        f"these exist now: remove them from PLANNED in {Path(__file__).name}, so the docs "
        f"are checked against them: {here}"
    )


def test_doc_refs_are_found_and_resolved(tmp_path: Path) -> None:
    package = tmp_path / "src" / "isorun"
    _package(tmp_path / "src", {
        "__init__.py": "__all__ = ['run']\n",
        "cache/__init__.py": "", "cache/store.py": "def lookup():\n    pass\nX = 1\n",
        "shim/exec.c": "",
    })
    text = (
        "See `src/isorun/cache/store.py` and cache/store.lookup, shim/exec.c, `shim/`.\n"
        "Gone: cache/entry, cache/store.missing, sandbox/parent.py; tests/learn/x.py and\n"
        "/var/cache/isorun are not ours. isorun.cache.store.X, isorun.run, isorun.cli.main\n"
        "and isorun.cache.gone. Planned: kernel/abi.py, isorun.kernel.abi.NOBODY.\n"
    )
    refs = doc_refs(text)
    assert [r for _, r in refs] == [
        "cache/store.py", "cache/store.lookup", "shim/exec.c", "cache/entry",
        "cache/store.missing", "sandbox/parent.py", "isorun.cache.store.X", "isorun.run",
        "isorun.cli.main", "isorun.cache.gone", "kernel/abi.py", "isorun.kernel.abi.NOBODY",
    ]
    planned = frozenset({"kernel/abi"})
    doc = tmp_path / "docs" / "x.md"
    doc.parent.mkdir()
    doc.write_text(text)
    assert stale_doc_refs((doc,), package, planned) == [
        "docs/x.md:2: cache/entry: no such module or folder",
        "docs/x.md:2: cache/store.missing: cache/store defines no missing",
        "docs/x.md:2: sandbox/parent.py: no such file",
        "docs/x.md:3: isorun.cli.main: no such module, and not a name of the package",
        "docs/x.md:4: isorun.cache.gone: cache defines no gone",
    ]
