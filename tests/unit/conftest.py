"""Unit tests see the host as unconfined.

The suite also runs inside isorun's own test profile (tests/plugin/test_session.py),
where a real unshare(CLONE_NEWUSER) is refused on purpose; host.facts would then report
user namespaces as unavailable and the cache tests would get no launch record. What the
facts say under confinement is tested with injected facts (test_backends, test_doctor)
and for real in tests/integration/test_landlock.py.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _unconfined(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("isorun.host.facts.confined", lambda: False)
