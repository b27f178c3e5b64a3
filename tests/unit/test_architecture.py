"""Imports point down the layers and close no cycle (issue 19).

The graph comes from scripts/import_graph.py, which parses src/isorun with ``ast`` (no
module is imported, so this costs nothing at import time and sees deferred imports too).
Today's tree still has cycles and upward imports; they are listed, exactly, in
tests/unit/architecture_debt.txt. A new one fails here, and so does a listed one that is
gone, so the list only shrinks; issue 19 empties it.
"""

from __future__ import annotations

import importlib.util
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


def _load_script() -> ModuleType:
    # By path: scripts/ is not a package, and the script must stay runnable on its own.
    name = "isorun_import_graph"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / "import_graph.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while building the class
    spec.loader.exec_module(module)
    return module


ig = _load_script()


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
