"""An isorun ``Seccomp`` policy as the ``[seccomp]`` table of profile TOML.

Used by ``isorun import docker`` (:mod:`isorun.compile.render.docker_import`) and learn mode.
"""

from __future__ import annotations

import json

from isorun.profile.schema import Seccomp


def _toml_str(s: str) -> str:
    return json.dumps(s)  # TOML basic strings use JSON's escapes for what we emit


def render_toml(policy: Seccomp, *, header: str = "") -> str:
    """The ``[seccomp]`` table of a profile, as TOML text the loader reads back."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines += ["[seccomp]"]
    if not policy.enabled:
        lines.append("enabled = false")
        return "\n".join(lines) + "\n"
    lines.append(f"default_action = {_toml_str(str(policy.default_action))}")
    lines.append(f"unknown_action = {_toml_str(str(policy.unknown_action))}")
    lines.append(f"deny_action = {_toml_str(str(policy.deny_action))}")
    if not policy.hardening:
        lines.append("# Docker's profile carries its own restrictions; set true to add isorun's")
        lines.append("hardening = false")
    lines.append("architectures = [" + ", ".join(_toml_str(a) for a in policy.architectures) + "]")
    for key, items in (("allow", policy.allow), ("deny", policy.deny)):
        if items:
            lines.append(f"{key} = [")
            lines += [f"  {_toml_str(n)}," for n in items]
            lines.append("]")
    for rule in policy.rules:
        lines += ["", "[[seccomp.rules]]"]
        lines.append("syscalls = [" + ", ".join(_toml_str(n) for n in rule.syscalls) + "]")
        lines.append(f"action = {_toml_str(str(rule.action))}")
        if rule.args:
            parts = []
            for c in rule.args:
                text = f"index = {c.index}, op = {_toml_str(c.op)}, value = {c.value:#x}"
                if c.op == "masked_eq":
                    text += f", mask = {c.mask:#x}"
                parts.append("{ " + text + " }")
            lines.append("args = [" + ", ".join(parts) + "]")
        if rule.comment:
            lines.append(f"comment = {_toml_str(rule.comment)}")
        if rule.when is not None:
            w = rule.when
            fields = []
            for key, val in (
                ("caps", w.caps),
                ("not_caps", w.not_caps),
                ("arches", w.arches),
                ("not_arches", w.not_arches),
            ):
                if val:
                    fields.append(f"{key} = [" + ", ".join(_toml_str(v) for v in val) + "]")
            for key, text in (("min_kernel", w.min_kernel), ("below_kernel", w.below_kernel)):
                if text:
                    fields.append(f"{key} = {_toml_str(text)}")
            lines.append("when = { " + ", ".join(fields) + " }")
    return "\n".join(lines) + "\n"
