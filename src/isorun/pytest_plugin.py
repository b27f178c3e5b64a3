"""pytest plugin shipped with isorun (entry point ``pytest11``).

Registers the ``isorun`` marker. Re-executing a session in a sandbox (``--isorun``) and
per-test sandboxes are TODO(#6).
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "isorun(network, writable, profile): run this test in its own sandbox")
