"""docs/profile.md is generated from the schema: it must match, and every field is documented."""

from __future__ import annotations

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_profile_doc_is_current() -> None:
    render = runpy.run_path(str(ROOT / "scripts" / "gen_profile_doc.py"))["render"]
    assert (ROOT / "docs" / "profile.md").read_text() == render(), "run `make docs`"


def test_every_schema_field_has_a_docstring() -> None:
    collect = runpy.run_path(str(ROOT / "scripts" / "gen_profile_doc.py"))["collect"]
    undocumented = [f"{cls}.{name}" for cls, (_, fields) in collect().items()
                    for name, _, _, doc in fields
                    if not doc and name not in {"loc", "sources", "provenance"}]
    # Profile's table fields are documented by their own classes.
    undocumented = [u for u in undocumented if not u.startswith("Profile.")
                    or u.split(".")[1] in {"name", "description", "extends", "override", "backend"}]
    assert undocumented == []
