"""Map TOML key paths to the line and column that wrote them.

tomllib/tomli give values without positions, yet every semantic error must name
``file:line:col``. This scanner runs only on documents tomli already accepted, so it can
assume valid TOML and stay small: it tracks table headers, ``[[array]]`` indexes, dotted
keys, inline tables and arrays, and skips over strings and comments.

A path is a tuple of keys and array indexes, e.g. ``("mounts", 2, "dst")`` or
``("seccomp", "rules", 0, "args", 1, "op")``.
"""

from __future__ import annotations

import bisect
import contextlib
import re

Path = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def dotted(path: Path) -> str:
    """``path`` as a person writes it in a message: ``mounts[2].dst``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class SourceMap:
    """Positions of every key (and array element) of one TOML document."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.positions: dict[Path, tuple[int, int]] = {}
        self._array_counts: dict[Path, int] = {}
        self._i = 0
        # The scanner is best effort on top of a parser that already accepted the text: a
        # construct it does not follow only costs precision (the nearest parent's line).
        with contextlib.suppress(IndexError, ValueError):
            self._document()

    def find(self, path: Path) -> tuple[int, int]:
        """Line and column of ``path``, or of its nearest recorded parent; (0, 0) if none."""
        for cut in range(len(path), 0, -1):
            pos = self.positions.get(path[:cut])
            if pos is not None:
                return pos
        return (0, 0)

    def _pos(self, index: int) -> tuple[int, int]:
        line = bisect.bisect_right(self._line_starts, index)
        return line, index - self._line_starts[line - 1] + 1

    def _record(self, path: Path, index: int) -> None:
        self.positions.setdefault(path, self._pos(index))

    def _peek(self) -> str:
        return self._text[self._i] if self._i < len(self._text) else ""

    def _skip_blank(self, newlines: bool) -> None:
        text = self._text
        while self._i < len(text):
            ch = text[self._i]
            if ch in " \t\r" or (newlines and ch == "\n"):
                self._i += 1
            elif ch == "#":
                end = text.find("\n", self._i)
                self._i = len(text) if end < 0 else end
            else:
                return

    def _document(self) -> None:
        table: Path = ()
        while True:
            self._skip_blank(newlines=True)
            if self._i >= len(self._text):
                return
            start = self._i
            if self._text.startswith("[[", self._i):
                self._i += 2
                keys = self._key()
                self._i = self._text.index("]]", self._i) + 2
                index = self._array_counts.get(keys, 0)
                self._array_counts[keys] = index + 1
                self._record(keys, start)
                table = (*keys, index)
                self._record(table, start)
            elif self._peek() == "[":
                self._i += 1
                table = self._key()
                self._i = self._text.index("]", self._i) + 1
                self._record(table, start)
            else:
                self._keyval(table)

    def _key(self) -> tuple[str, ...]:
        parts: list[str] = []
        while True:
            self._skip_blank(newlines=False)
            ch = self._peek()
            if ch in ('"', "'"):
                parts.append(self._quoted_key())
            else:
                match = _BARE_KEY.match(self._text, self._i)
                if match is None:
                    raise ValueError("key expected")
                parts.append(match.group())
                self._i = match.end()
            self._skip_blank(newlines=False)
            if self._peek() != ".":
                return tuple(parts)
            self._i += 1

    def _quoted_key(self) -> str:
        quote = self._peek()
        end = self._string_end()
        raw = self._text[self._i + 1 : end - 1]
        self._i = end
        return raw if quote == "'" else raw.encode().decode("unicode_escape")

    def _keyval(self, prefix: Path) -> None:
        start = self._i
        path = prefix + self._key()
        self._record(path, start)
        self._skip_blank(newlines=False)
        self._i += 1  # the "="
        self._skip_blank(newlines=False)
        self._value(path)

    def _value(self, path: Path) -> None:
        ch = self._peek()
        if ch == "{":
            self._i += 1
            while True:
                self._skip_blank(newlines=True)
                if self._peek() == "}":
                    self._i += 1
                    return
                if self._peek() == ",":
                    self._i += 1
                    continue
                self._keyval(path)
        elif ch == "[":
            self._i += 1
            index = 0
            while True:
                self._skip_blank(newlines=True)
                if self._peek() == "]":
                    self._i += 1
                    return
                if self._peek() == ",":
                    self._i += 1
                    continue
                self._record((*path, index), self._i)
                self._value((*path, index))
                index += 1
        elif ch in ('"', "'"):
            self._i = self._string_end()
        else:
            match = re.compile(r"[^,\]}\n#]*").match(self._text, self._i)
            assert match is not None
            self._i = match.end()

    def _string_end(self) -> int:
        """Index just past the string starting at the cursor (basic, literal, multi-line)."""
        text, i = self._text, self._i
        quote = text[i]
        if text.startswith(quote * 3, i):
            end = text.index(quote * 3, i + 3)
            # A multi-line string may end with up to two extra quotes before the delimiter.
            while text.startswith(quote, end + 3):
                end += 1
            return end + 3
        i += 1
        while text[i] != quote:
            i += 2 if (quote == '"' and text[i] == "\\") else 1
        return i + 1
