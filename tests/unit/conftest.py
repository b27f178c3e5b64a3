"""Unit tests see the host as unconfined.

The suite also runs inside isorun's own test profile (tests/plugin/test_session.py),
where a real unshare(CLONE_NEWUSER) is refused on purpose; host.facts would then report
user namespaces as unavailable and the cache tests would get no launch record. What the
facts say under confinement is tested with injected facts (test_backends, test_doctor)
and for real in tests/integration/test_landlock.py.

Likewise the kernel keyring, which every sandbox's seccomp refuses: there the cache's
logic is tested under a key this process holds (the keyring itself is tested outside,
by the tests in OUTSIDE_ONLY of tests/plugin/test_session.py and the integration suite).
"""

from __future__ import annotations

import os

import pytest

from isorun.host import mac

#: the cache key where no keyring answers (see above)
_STAND_IN_KEY = os.urandom(32)
#: the keyring's own answer, for the tests of the keyring (``real_keyring``)
_REAL_KEY = mac.key


@pytest.fixture(autouse=True)
def _unconfined(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("isorun.host.facts.confined", lambda: False)


@pytest.fixture(autouse=True)
def _cache_key(monkeypatch: pytest.MonkeyPatch) -> None:
    if mac.key(create=True) is None:
        monkeypatch.setattr(mac, "key", lambda create=False: _STAND_IN_KEY)


@pytest.fixture
def real_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """The keyring itself, never the stand-in: for tests of what a missing key does."""
    monkeypatch.setattr(mac, "key", _REAL_KEY)
