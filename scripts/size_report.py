#!/usr/bin/env python3
"""Files over 400 lines and functions over 60 lines in src/isorun (Python and C).

    scripts/size_report.py [--files N] [--functions N]   the long ones, marked or not
    scripts/size_report.py --check           exit 1 when the tree differs from the debt list
    scripts/size_report.py --write-debt      rewrite tests/unit/size_debt.txt

STYLE.md asks for a split past ~400 lines and issue 19 for no function over ~60 lines
without a reason in a comment. The reason is a marker comment, ``long:`` and at least
ten characters saying why the length is right (a table that is data, an interpreter loop):

- a function: a comment line ``# long: <reason>`` (Python) or ``/* long: <reason> */`` (C)
  in the comment lines directly above its ``def`` (or first decorator) or its C signature;
- a file: the same line in the comment lines at the very top of the file, before any code
  (in Python above the module docstring, which counts as code here).

A long file or function without a marker is debt: tests/unit/test_architecture.py fails on
one the debt list lacks, on a listed one that grew past its listed length, and on a listed
one that is gone (split, marked, renamed or moved), so the list only shrinks.

Python functions are measured with ``ast`` (from the ``def`` line, decorators excluded, to
the last line of the body; a nested function counts inside its parent and on its own). C
functions are found by the shim's layout, which clang-format keeps: a definition starts at
column 0 with its name and ``(`` and ends at the first ``}`` in column 0. Nothing is
imported and nothing compiled, so the check costs a parse of each file.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "isorun"
DEBT = ROOT / "tests" / "unit" / "size_debt.txt"
MAX_FILE = 400
MAX_FUNCTION = 60
SUFFIXES = (".py", ".c", ".h")

_C_START = re.compile(r"^(?!typedef|#|struct\s+\w+\s*\{)[A-Za-z_][^;=]*?\b(\w+)\s*\(")
#: the marker, in either language; the reason must say something
_MARKER = re.compile(r"^\s*(?:#|/\*)\s*long:\s*(?P<reason>.*?)\s*(?:\*/)?\s*$")
MIN_REASON = 10


@dataclass(frozen=True, slots=True)
class Long:
    """A file or function over its limit."""

    kind: str  # "file" or "function"
    path: str  # relative to the repository root
    name: str  # the function's qualified name, "" for a file
    line: int
    length: int
    reason: str | None  # the marker's reason, None when unmarked

    @property
    def key(self) -> str:
        return f"{self.kind} {self.path}" + (f" {self.name}" if self.name else "")


def marker_reason(line: str, python: bool) -> str | None:
    """The reason of the marker ``line`` holds, in its file's language, or None."""
    text = line.strip()
    if not text.startswith("#" if python else "/*"):
        return None
    match = _MARKER.match(text)
    if match is None or len(match.group("reason")) < MIN_REASON:
        return None
    return match.group("reason")


def _is_comment(line: str, python: bool) -> bool:
    text = line.strip()
    if python:
        return text.startswith("#")
    return text.startswith(("/*", "*", "//"))


def marker_above(lines: list[str], first: int, python: bool) -> str | None:
    """The reason of a marker in the comment lines directly above line ``first`` (1-based)."""
    i = first - 2
    while i >= 0 and _is_comment(lines[i], python):
        reason = marker_reason(lines[i], python)
        if reason is not None:
            return reason
        i -= 1
    return None


def marker_at_top(lines: list[str], python: bool) -> str | None:
    """The reason of a marker in the file's leading comment lines (before any code)."""
    in_block = False
    for line in lines:
        text = line.strip()
        if in_block:
            in_block = "*/" not in text
        elif not text or text.startswith("#" if python else "//"):
            pass
        elif not python and text.startswith("/*"):
            in_block = "*/" not in text[2:]
        else:
            return None  # the first line of code: the top of the file ends here
        reason = marker_reason(line, python)
        if reason is not None:
            return reason
    return None


def python_functions(path: Path, text: str | None = None) -> Iterator[tuple[str, int, int, int]]:
    """(qualified name, def line, first line with decorators, length) of every function."""
    tree = ast.parse(text if text is not None else path.read_bytes(), str(path))

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, int, int, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}{child.name}"
                end = child.end_lineno or child.lineno
                first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
                yield name, child.lineno, first, end - child.lineno + 1
                yield from walk(child, f"{name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.")
            else:
                yield from walk(child, prefix)

    yield from walk(tree, "")


def c_functions(path: Path, text: str | None = None) -> Iterator[tuple[str, int, int, int]]:
    """(name, first line, first line, length) of every C function definition."""
    lines = (text if text is not None else path.read_text()).splitlines()
    i = 0
    while i < len(lines):
        match = _C_START.match(lines[i])
        if match is None:
            i += 1
            continue
        # the body opens on this line or a continuation of the signature; a `;` first
        # makes it a declaration
        j = i
        while j < len(lines) and "{" not in lines[j] and not lines[j].rstrip().endswith(";"):
            j += 1
        if j >= len(lines) or "{" not in lines[j]:
            i = j + 1
            continue
        k = j
        while k < len(lines) and lines[k] != "}":
            k += 1
        yield match.group(1), i + 1, i + 1, k - i + 1
        i = k + 1


def scan(package: Path = PACKAGE, root: Path = ROOT, max_file: int = MAX_FILE,
         max_function: int = MAX_FUNCTION) -> list[Long]:
    """Every file and function of ``package`` over its limit, with its marker's reason."""
    found: list[Long] = []
    for path in sorted(p for p in package.rglob("*") if p.suffix in SUFFIXES):
        text = path.read_text()
        lines = text.splitlines()
        python = path.suffix == ".py"
        rel = path.relative_to(root).as_posix()
        if len(lines) > max_file:
            found.append(Long("file", rel, "", 1, len(lines), marker_at_top(lines, python)))
        if path.suffix == ".h":
            continue
        functions = python_functions(path, text) if python else c_functions(path, text)
        for name, line, first, length in functions:
            if length > max_function:
                reason = marker_above(lines, first, python)
                found.append(Long("function", rel, name, line, length, reason))
    return found


def debt_lines(found: Iterable[Long]) -> list[str]:
    """The unmarked ones, one a line: the key, then the length it may not exceed. Keyed by
    path and name, never by line number, so an edit elsewhere in a file does not change it.
    (Two functions of one name in a file share a line, at the longer's length.)"""
    longest: dict[str, int] = {}
    for item in found:
        if item.reason is None:
            longest[item.key] = max(item.length, longest.get(item.key, 0))
    return [f"{key} {length}" for key, length in sorted(longest.items())]


def read_debt(path: Path = DEBT) -> dict[str, int]:
    """key -> listed length, without comments (a trailing ``# ...`` is a note)."""
    out: dict[str, int] = {}
    for raw in path.read_text().splitlines():
        entry = raw.split("#", 1)[0].strip()
        if entry:
            key, _, length = entry.rpartition(" ")
            out[" ".join(key.split())] = int(length)
    return out


def compare(found: Iterable[Long], path: Path = DEBT) -> tuple[list[str], list[str], list[str]]:
    """(new, grown, gone): unmarked long ones the list lacks, listed ones now longer than
    listed, and listed ones the tree no longer has over the limit unmarked."""
    listed = read_debt(path)
    now = {key: int(length) for key, _, length in
           (line.rpartition(" ") for line in debt_lines(found))}
    new = sorted(f"{k} {n}" for k, n in now.items() if k not in listed)
    grown = sorted(f"{k} {n} (listed {listed[k]})" for k, n in now.items()
                   if k in listed and n > listed[k])
    gone = sorted(f"{k} {n}" for k, n in listed.items() if k not in now)
    return new, grown, gone


DEBT_HEADER = f"""\
# Files over {MAX_FILE} lines and functions over {MAX_FUNCTION} lines in src/isorun without a
# `long:` marker saying why (scripts/size_report.py's docstring has the convention), each
# with the length it may not exceed. tests/unit/test_architecture.py fails on a long one
# this list lacks, on a listed one that grew, and on a listed one that is gone (so the list
# only shrinks and stays exact). Generated: scripts/size_report.py --write-debt; no hand edits.
"""


def report(found: Iterable[Long]) -> str:
    items = list(found)
    out = [f"## files over {MAX_FILE} lines"]
    for item in sorted((i for i in items if i.kind == "file"), key=lambda i: -i.length):
        note = f"  (long: {item.reason})" if item.reason else ""
        out.append(f"{item.length:5}  {item.path}{note}")
    out.append("")
    out.append(f"## functions over {MAX_FUNCTION} lines")
    for item in sorted((i for i in items if i.kind == "function"), key=lambda i: -i.length):
        note = f"  (long: {item.reason})" if item.reason else ""
        out.append(f"{item.length:5}  {item.path}:{item.line}  {item.name}{note}")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="long files and functions in src/isorun")
    parser.add_argument("--files", type=int, default=MAX_FILE, help="file length limit")
    parser.add_argument("--functions", type=int, default=MAX_FUNCTION,
                        help="function length limit")
    parser.add_argument("--check", action="store_true",
                        help="compare with the debt list; exit 1 on any difference")
    parser.add_argument("--write-debt", action="store_true",
                        help=f"rewrite {DEBT.relative_to(ROOT)} from the tree")
    args = parser.parse_args(argv)
    if (args.check or args.write_debt) and (args.files, args.functions) != (MAX_FILE,
                                                                            MAX_FUNCTION):
        parser.error("--check and --write-debt use the limits the test holds the tree to")
    found = scan(max_file=args.files, max_function=args.functions)
    if args.write_debt:
        lines = debt_lines(found)
        DEBT.write_text(DEBT_HEADER + "".join(f"{line}\n" for line in lines))
        print(f"wrote {DEBT.relative_to(ROOT)}: {len(lines)} entries")
        return 0
    if args.check:
        new, grown, gone = compare(found)
        for entry in new:
            print(f"new:   {entry}")
        for entry in grown:
            print(f"grown: {entry}")
        for entry in gone:
            print(f"gone:  {entry}")
        return 1 if new or grown or gone else 0
    sys.stdout.write(report(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
