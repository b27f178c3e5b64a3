"""Golden cases: profiles with fixed host facts produce checked-in plans or error texts.

Shared by tests/golden/test_golden.py and scripts/golden.py (which regenerates the files;
review the diff, never edit them by hand).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from isorun import api
from isorun.compile.memory_bound import describe_memory
from isorun.errors import ProfileError
from isorun.host.facts import HostFacts

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = ROOT / "tests" / "golden"
FACTS = HostFacts(uid=1000, gid=1000, arch="x86_64", kernel="6.1.0")
VARIABLES = {"HOME": "/home/user", "CWD": "/home/user/project", "TMPDIR": "/tmp",
             "UID": "1000", "GID": "1000", "USER": "user",
             "PYTHON_PREFIX": "/home/user/project/.venv", "PYTHON_BASE_PREFIX": "/usr"}


def cases() -> Iterator[tuple[str, str, Path]]:
    """(case name, profile spec, expected file) for every golden case."""
    for path in sorted((ROOT / "profiles").glob("*.toml")):
        yield f"plan-{path.stem}", path.stem, GOLDEN / "plans" / f"{path.stem}.txt"
    for case in sorted((GOLDEN / "errors").iterdir()):
        if case.is_dir():
            yield f"error-{case.name}", str(case / "profile.toml"), case / "error.txt"


def render(spec: str) -> str:
    """What a case produces: the plan in words and as JSON, or the error text."""
    cwd = os.getcwd()
    os.chdir(ROOT)  # relative paths in messages are relative to the repository root
    try:
        plan = api.compile_plan(spec, FACTS, VARIABLES)
    except ProfileError as err:
        return err.render() + "\n"
    finally:
        os.chdir(cwd)
    data = plan.to_json()
    data["sources"] = [os.path.relpath(s, ROOT) for s in data["sources"]]
    text = plan.describe(describe_memory(plan)).replace(str(ROOT) + "/", "")
    return text + "\n\n" + json.dumps(data, indent=1) + "\n"
