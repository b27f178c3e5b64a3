#!/usr/bin/env python3
"""Regenerate tests/golden/backends/*/{bwrap,firejail}.argv. Review the diff before
committing: a change here is a change in what the fallback backends enforce."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.golden.backends.harness import cases, render


def main() -> None:
    for name, profile, backend, expected in cases():
        text = render(profile, backend)
        old = expected.read_text() if expected.exists() else None
        if old != text:
            expected.parent.mkdir(parents=True, exist_ok=True)
            expected.write_text(text)
            print(f"updated {name}: {expected}")


if __name__ == "__main__":
    main()
