"""Shared test policy.

``@pytest.mark.needs("userns", "bwrap", ...)``: the test needs host features. Locally a
missing feature skips the test; in CI (``CI=true`` or ``ISORUN_MUST_SANDBOX=1``) it fails,
so a machine that lost a feature cannot pass by skipping.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import pytest

MUST = os.environ.get("CI") == "true" or os.environ.get("ISORUN_MUST_SANDBOX") == "1"


def _userns() -> bool:
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            return int(f.read()) > 0
    except OSError:
        return False


def _module(name: str) -> Callable[[], bool]:
    import importlib.util

    return lambda: importlib.util.find_spec(name) is not None


def _shim() -> bool:
    try:
        from isorun.sandbox import _shim  # noqa: F401
    except Exception:
        return False
    return True


def _landlock_abi() -> int:
    from isorun.host.facts import _landlock_abi as abi

    return abi()


FEATURES: dict[str, Callable[[], bool]] = {
    "userns": _userns,
    "root": lambda: os.getuid() == 0,
    "bwrap": lambda: shutil.which("bwrap") is not None,
    "firejail": lambda: shutil.which("firejail") is not None,
    "setpriv": lambda: shutil.which("setpriv") is not None,
    "podman": lambda: shutil.which("podman") is not None,
    "gcc": lambda: shutil.which("gcc") is not None,
    "shim": _shim,
    "landlock": lambda: _landlock_abi() >= 1,
    "pytest_cov": _module("pytest_cov"),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for marker in item.iter_markers("needs"):
            for feature in marker.args:
                if FEATURES[feature]():
                    continue
                reason = f"host lacks {feature}"
                if MUST:
                    # The fixture fails the test before its body runs, naming the feature.
                    item.add_marker(pytest.mark.usefixtures("_missing_feature"))
                    item.user_properties.append(("missing", feature))
                else:
                    item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture
def _missing_feature(request: pytest.FixtureRequest) -> None:
    missing = [v for k, v in request.node.user_properties if k == "missing"]
    pytest.fail(f"CI requires host features that are missing: {', '.join(missing)}")
