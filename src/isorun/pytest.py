"""``python -m isorun.pytest [PYTEST ARGS]``: the same as ``isorun pytest``
(isorun.cli.pytest), for an isorun without its ``isorun`` program on PATH."""

from __future__ import annotations

from isorun.cli.pytest import main

if __name__ == "__main__":
    main()
