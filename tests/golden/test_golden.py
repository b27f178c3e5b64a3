"""Each profile in profiles/ and each error case matches its checked-in golden file."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from tests.golden.harness import cases, render

CASES = list(cases())


@pytest.mark.parametrize(("spec", "expected"), [(c[1], c[2]) for c in CASES],
                         ids=[c[0] for c in CASES])
def test_golden(spec: str, expected: Path) -> None:
    actual = render(spec)
    want = expected.read_text() if expected.exists() else ""
    if actual != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), actual.splitlines(True),
                                            "expected", "actual"))
        pytest.fail(f"{expected} differs (run `make golden` and review the diff):\n{diff}")


def test_every_builtin_profile_is_a_case() -> None:
    names = {c[0] for c in CASES}
    for profile in Path(__file__).resolve().parents[2].joinpath("profiles").glob("*.toml"):
        assert f"plan-{profile.stem}" in names
