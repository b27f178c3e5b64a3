"""The syscall table, the groups and the imported Docker default profile."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from isorun.kernel import syscalls

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("ISORUN_SHARED", ROOT.parent / "shared"))
SYSTEMD_NAMES = tuple(
    [
        "@system-service",
        "@file-system",
        "@network-io",
        "@process",
        "@ipc",
        "@signal",
        "@timer",
        "@privileged",
        "@mount",
        "@module",
        "@raw-io",
        "@reboot",
        "@swap",
        "@clock",
        "@debug",
        "@obsolete",
        "@cpu-emulation",
        "@keyring",
        "@resources",
        "@basic-io",
        "@io-event",
        "@memory",
        "@sync",
        "@aio",
        "@chown",
        "@setuid",
        "@default",
    ]
)


def test_table_has_x86_64_basics_with_kernel_numbers() -> None:
    t = syscalls.table("x86_64")
    assert (t["read"], t["write"], t["openat"], t["clone3"], t["getppid"]) == (0, 1, 257, 435, 110)
    assert syscalls.table("x32")["read"] == 0x40000000
    assert syscalls.table("i386")["restart_syscall"] == 0
    assert "io_setup" in syscalls.table("aarch64")


def test_every_group_member_is_a_known_syscall() -> None:
    known = syscalls.syscall_names()
    for group, members in syscalls.GROUPS.items():
        assert members, group
        assert members <= known, (group, sorted(members - known))


def test_systemd_group_names_exist_and_are_documented() -> None:
    for name in [*SYSTEMD_NAMES, "@docker-default"]:
        assert name in syscalls.GROUPS
        assert syscalls.group_doc(name)


def test_expand_group_name_and_unknown() -> None:
    assert syscalls.expand("mkdir") == {"mkdir"}
    assert "mount" in syscalls.expand("@mount")
    # nested groups are expanded: @system-service includes @default
    assert syscalls.expand("@default") <= syscalls.expand("@system-service")
    with pytest.raises(KeyError):
        syscalls.expand("mkdri")
    with pytest.raises(KeyError):
        syscalls.expand("@nope")
    assert "mkdir" in syscalls.suggest("mkdri")


def test_all_names_covers_syscalls_and_groups() -> None:
    names = syscalls.all_names()
    assert {"read", "chown32", "@mount", "@docker-default"} <= names
    assert "mkdri" not in names


def test_system_service_excludes_privileged_groups() -> None:
    service = syscalls.expand("@system-service")
    for group in ("@mount", "@module", "@reboot", "@swap", "@raw-io", "@clock"):
        assert not service & syscalls.expand(group), group


def test_docker_default_data_matches_shared_file() -> None:
    """Our copy of moby's profile must not drift from the shared one (re-run the importer)."""
    shared = SHARED / "data" / "docker-default-seccomp.json"
    if not shared.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{shared} missing")
        pytest.skip(f"{shared} missing")
    raw = shared.read_bytes()
    ours = json.loads((ROOT / "src/isorun/data/docker-default.json").read_text())
    assert ours["sha256"] == hashlib.sha256(raw).hexdigest()
    assert ours["profile"] == json.loads(raw)


def test_docker_default_group_is_moby_allowed_names() -> None:
    data = json.loads((ROOT / "src/isorun/data/docker-default.json").read_text())
    group = syscalls.expand("@docker-default")
    first = set(data["profile"]["syscalls"][0]["names"])
    assert first <= group
    assert {"socket", "personality", "clone", "arch_prctl", "ptrace"} <= group
    # gated on capabilities Docker does not grant by default
    assert not {"mount", "bpf", "init_module", "reboot", "clone3"} & group


def test_import_is_cheap() -> None:
    code = (
        "import sys, isorun.kernel.syscalls as s; s.all_names();"
        "print('pyseccomp' in sys.modules, 'click' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert out.stdout.split() == ["False", "False"]
