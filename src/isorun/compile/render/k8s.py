"""Seccomp export for Kubernetes: a security-profiles-operator SeccompProfile.

Built from the Docker export (:func:`isorun.compile.render.docker.docker_object`) with
the limits the operator's CRD sets, and written as YAML by hand (no YAML library in the
launch path).
"""

from __future__ import annotations

import json
import re
from typing import Any

from isorun.compile.render import docker_rules
from isorun.compile.render.docker import docker_object, has_when
from isorun.errors import Diagnostic, ProfileError
from isorun.profile.schema import Action, Seccomp


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))  # a JSON string is a valid YAML double-quoted scalar


#: SPO's API (security-profiles-operator api/seccompprofile/v1, CRD
#: security-profiles-operator.x-k8s.io_seccompprofiles.yaml): ``scope: Cluster``, no
#: ``defaultErrnoRet`` in the spec, ``value``/``valueTwo`` int64 with minimum 0, at most 6
#: ``args``; the operator writes the profile to ``<kubelet seccomp root>/operator/NAME.json``
#: and pods name it ``operator/NAME.json`` (installation-usage.md, "Use Seccomp profile").
SPO_API_VERSION = "security-profiles-operator.x-k8s.io/v1"


def k8s_name(name: str) -> str:
    """A DNS-1123 subdomain for metadata.name (lower case, digits, '-', '.')."""
    return re.sub(r"[^a-z0-9.-]", "-", name.lower()).strip("-.")[:253] or "isorun"


def k8s_object(policy: Seccomp, *, name: str = "isorun", arch: str = "x86_64") -> dict[str, Any]:
    """The SeccompProfile as a dict, every field one the CRD's schema has.

    The CRD has no defaultErrnoRet, so an ERRNO default is runc's EPERM and every known
    syscall the policy answers with another errno (clone3's ENOSYS) gets its own rule.
    """
    if has_when(policy):
        raise ProfileError(
            Diagnostic(
                policy.loc,
                "a SeccompProfile has no conditions; this profile has `when` rules",
                "export to docker instead, or compile for one capability set",
            )
        )
    unknown = policy.unknown_action
    default = Action("errno", 1) if unknown.kind == "errno" else unknown
    obj = docker_object(
        policy, arch=arch, default=default, max_args=docker_rules.SPO_MAX_ARGS, int64=True
    )
    spec: dict[str, Any] = {"defaultAction": obj["defaultAction"]}
    spec["architectures"] = [
        obj["archMap"][0]["architecture"],
        *(obj["archMap"][0]["subArchitectures"] or []),
    ]
    spec["syscalls"] = [{k: v for k, v in r.items() if k != "comment"} for r in obj["syscalls"]]
    return {
        "apiVersion": SPO_API_VERSION,
        "kind": "SeccompProfile",
        "metadata": {"name": k8s_name(name)},
        "spec": spec,
    }


def export_k8s(policy: Seccomp, *, name: str = "isorun", arch: str = "x86_64") -> str:
    """A security-profiles-operator SeccompProfile plus the pod snippet that uses it, as
    YAML written by hand (no YAML library in the launch path)."""
    obj = k8s_object(policy, name=name, arch=arch)
    spec = obj["spec"]
    safe = obj["metadata"]["name"]
    lines = [
        f"apiVersion: {obj['apiVersion']}",
        f"kind: {obj['kind']}",
        "metadata:",
        f"  name: {safe}",
        "spec:",
        f"  defaultAction: {spec['defaultAction']}",
        "  architectures:",
    ]
    lines += [f"  - {a}" for a in spec["architectures"]]
    lines.append("  syscalls:")
    for rule in spec["syscalls"]:
        lines.append(f"  - action: {rule['action']}")
        if "errnoRet" in rule:
            lines.append(f"    errnoRet: {rule['errnoRet']}")
        lines.append("    names:")
        lines += [f"    - {_yaml_scalar(n)}" for n in rule["names"]]
        if rule.get("args"):
            lines.append("    args:")
            for arg in rule["args"]:
                lines.append(f"    - index: {arg['index']}")
                lines.append(f"      value: {arg['value']}")
                lines.append(f"      valueTwo: {arg['valueTwo']}")
                lines.append(f"      op: {arg['op']}")
    notes = []
    if policy.unknown_action.kind == "errno" and policy.unknown_action.errno != 1:
        notes = [
            "# The CRD has no defaultErrnoRet: a number no name above covers gets EPERM where",
            f"# isorun answers {policy.unknown_action} (runc answers ENOSYS itself for numbers",
            "# above the highest one listed).",
        ]
    lines += [
        "---",
        *notes,
        "# Use it from a pod (the operator installs the profile on every node):",
        "# spec:",
        "#   securityContext:",
        "#     seccompProfile:",
        "#       type: Localhost",
        f"#       localhostProfile: operator/{safe}.json",
    ]
    return "\n".join(lines) + "\n"
