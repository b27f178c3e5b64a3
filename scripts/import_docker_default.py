"""Import moby's default seccomp profile into ``src/isorun/data/docker-default.json``.

Input: ``<shared>/data/docker-default-seccomp.json`` (see its README for the upstream
repository, tag and commit). Output keeps the profile unchanged plus its provenance
(source, commit, sha256) and the names the ``@docker-default`` group is made of, so
``isorun.kernel.syscalls`` never parses the profile at import time. A unit test fails when
the shared file and our copy drift apart.

Run: ``.venv/bin/python scripts/import_docker_default.py [PATH]``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "src" / "isorun" / "data" / "docker-default.json"
SHARED = Path(os.environ.get("ISORUN_SHARED", ROOT.parent / "shared"))

# Docker's default capability set (moby oci/caps/defaults.go): the names gated by
# ``includes.caps`` on one of these are allowed in a default container.
DOCKER_DEFAULT_CAPS = (
    "CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_MKNOD", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SETFCAP",
    "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
)


def group_names(profile: dict[str, object]) -> dict[str, list[str]]:
    """Split the allowed names: unconditional, with argument checks, and the group itself.

    The group is what a default container (default caps, any architecture, any kernel
    >= 4.8) may call at all: allow rules without ``includes.caps`` or with a default cap,
    whose ``excludes.caps`` does not name a default cap. Argument checks are not part of a
    group (a group is a set of names); ``isorun import docker`` keeps them.
    """
    uncond: set[str] = set()
    cond: set[str] = set()
    allowed: set[str] = set()
    rules = profile["syscalls"]
    assert isinstance(rules, list)
    for rule in rules:
        if rule.get("action") != "SCMP_ACT_ALLOW":
            continue
        inc = rule.get("includes") or {}
        exc = rule.get("excludes") or {}
        names = set(rule.get("names") or []) | ({rule["name"]} if rule.get("name") else set())
        if rule.get("args"):
            cond |= names
        elif not inc and not exc:
            uncond |= names
        caps_in = inc.get("caps") or []
        caps_out = exc.get("caps") or []
        if caps_in and not set(caps_in) & set(DOCKER_DEFAULT_CAPS):
            continue
        if set(caps_out) & set(DOCKER_DEFAULT_CAPS):
            continue
        allowed |= names
    return {
        "unconditional": sorted(uncond),
        "conditional": sorted(cond),
        "docker_default": sorted(allowed),
    }


def main(argv: list[str]) -> int:
    src = Path(argv[1]) if len(argv) > 1 else SHARED / "data" / "docker-default-seccomp.json"
    raw = src.read_bytes()
    profile = json.loads(raw)
    doc = {
        "source": "github.com/moby/profiles seccomp/default.json, tag seccomp/v0.2.3 "
        "(vendored by moby/moby); Apache-2.0",
        "commit": "836ae4d37ef2ec995c77c99fc55f5b5f3af3a897",
        "file_commit": "3c28324314729dbade8287e868eef6338c42807a",
        "sha256": hashlib.sha256(raw).hexdigest(),
        "default_caps": list(DOCKER_DEFAULT_CAPS),
        "groups": group_names(profile),
        "profile": profile,
    }
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"{OUT}: {len(doc['groups']['docker_default'])} names", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
