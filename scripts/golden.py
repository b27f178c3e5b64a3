#!/usr/bin/env python3
"""Regenerate every golden file (plans, error texts, bwrap/firejail argv). Review the diff
before committing; never edit the files by hand."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.golden import harness as plans
from tests.golden.backends import harness as backends


def cases() -> Iterable[tuple[str, Callable[[], str], Path]]:
    """(name, how to render it, expected file) for every golden case of both harnesses."""
    for name, spec, expected in plans.cases():
        yield name, lambda spec=spec: plans.render(spec), expected
    for name, profile, backend, expected in backends.cases():
        yield name, lambda p=profile, b=backend: backends.render(p, b), expected


def main() -> None:
    for name, render, expected in cases():
        text = render()
        old = expected.read_text() if expected.exists() else None
        if old != text:
            expected.parent.mkdir(parents=True, exist_ok=True)
            expected.write_text(text)
            print(f"updated {name}: {expected}")


if __name__ == "__main__":
    main()
