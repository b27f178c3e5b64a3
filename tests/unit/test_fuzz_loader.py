"""Fuzz the loader: whatever the bytes, it returns a profile or raises ProfileError."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from isorun.errors import ProfileError
from isorun.profile.loader import load_layer
from isorun.profile.schema import MOUNT_TYPES, NAMESPACES

KEYS = ["namespaces", "identity", "filesystem", "mounts", "seccomp", "limits", "network",
        "environment", "process", "capabilities", "security", "unsafe", "type", "dst", "src",
        "allow", "deny", "rules", "args", "index", "op", "value", "mode", "size", "keep",
        "set", "description", "extends", "override", "nofile", "memory", *NAMESPACES]
SCALARS = st.one_of(st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
                    st.text(max_size=12), st.sampled_from(["/usr", "${CWD}", "@file-system",
                                                           "errno:EPERM", *MOUNT_TYPES]))


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else "0.0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)),
    max_leaves=8)
DOCS = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6)


def check(data: bytes) -> None:
    try:
        load_layer(data, "fuzz.toml", "fuzz")
    except ProfileError as err:
        assert err.diagnostics, "a ProfileError must carry at least one diagnostic"
        for diag in err.diagnostics:
            assert diag.loc.file == "fuzz.toml"
            assert diag.render().startswith("fuzz.toml")


@settings(max_examples=400, deadline=None)
@given(DOCS)
def test_random_toml_documents_raise_only_profile_errors(doc: dict[str, Any]) -> None:
    text = "\n".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in doc.items())
    check(text.encode())


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_profile_errors(data: bytes) -> None:
    check(data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(['[namespaces]', '[[mounts]]', 'type = "tmpfs"',
                                 'dst = "/x"', '[seccomp]', 'allow = ["read"]',
                                 '[[seccomp.rules]]', 'args = [{index=0, op="eq", value=1}]',
                                 'a.b.c = 1', '"q" = 2', "x = '''\nml\n'''", '# c',
                                 '[limits]', 'memory = "1g"']), max_size=10))
def test_structured_fragments(lines: list[str]) -> None:
    check("\n".join(lines).encode())
