"""The flat launch record: what isorun-launch parses is what the record says.

``isorun-launch --dump`` prints the struct isorun_spec it built; :func:`expected_dump`
prints the same from the Python record, so a field encoded in the wrong place, width or
order shows up as a one-line difference. The parser's refusals are in
tests/integration/test_launcher_api.py.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from isorun.errors import InternalError
from isorun.sandbox import flat, launched

MS_RDONLY, MS_NOSUID, MS_NODEV = 1, 2, 4


def _escape(data: bytes) -> str:
    return "".join(chr(b) if 0x21 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in data)


def dump(blob: bytes) -> str:
    """``isorun-launch --dump`` of ``blob``."""
    launcher = launched.launcher_path()
    if launcher is None:
        pytest.fail(f"{launched.LAUNCHER} is not built: make shim")
    read_end, write_end = os.pipe()
    os.write(write_end, blob)
    os.close(write_end)
    try:
        done = subprocess.run([launcher, "--dump", "--record-fd", str(read_end)],
                              pass_fds=(read_end,), capture_output=True, text=True,
                              timeout=30, check=False)  # fmt: skip
    finally:
        os.close(read_end)
    assert done.returncode == 0, done.stderr
    return done.stdout


def expected_dump(record: dict[str, object]) -> str:
    """What the dump of ``flat.encode(record)`` must say, computed from the record."""
    r: dict[str, object] = record
    env: tuple[bytes, ...] = r["env"]  # type: ignore[assignment]
    path = next((e[5:] for e in env if e.startswith(b"PATH=")), flat.DEFAULT_PATH)
    caps = 0
    for cap in r["caps_keep"]:  # type: ignore[attr-defined]
        caps |= 1 << cap
    lines = [f"clone_flags {r['clone_flags']:#x}" if r["clone_flags"] else "clone_flags 0",
             f"uid {r['uid']}", f"gid {r['gid']}"]  # fmt: skip
    for name in ("setgroups_deny", "loopback_up", "new_session", "die_with_parent",
                 "no_new_privs", "init"):  # fmt: skip
        value = int(bool(r[name]))
        if name == "new_session" and value and r["terminal_job"]:
            value = 2  # ISORUN_SESSION_TERMINAL_OK: isorun_spawn decides at launch
        lines.append(f"{name} {value}")
    lines.append(f"caps_keep {caps:#x}" if caps else "caps_keep 0")
    for name in ("uid_map", "gid_map", "root", "cwd", "hostname"):
        lines.append(f"{name} {_escape(r[name])}")  # type: ignore[arg-type]
    lines.append(f"path {_escape(path)}")
    lines += [f"env {_escape(e)}" for e in env]
    kept: list[int] = []
    for fd in r["keep_fds"]:  # type: ignore[attr-defined]
        if fd > 2 and fd not in kept:
            kept.append(fd)
    lines += [f"keep_fd {fd}" for fd in kept]
    for kind, dst, src, flags, data, mode, optional, step, _tree in r["mounts"]:  # type: ignore[attr-defined]
        if kind == 2 and b"mode=" not in data:
            data = (data + b"," if data else b"") + b"mode=%o" % mode
        lines.append(
            f"mount {kind} {flags:#x} {mode:04o} {int(optional)} {step}"
            if flags
            else f"mount {kind} 0 {mode:04o} {int(optional)} {step}"
        )
        lines += [f" dst {_escape(dst)}", f" src {_escape(src)}", f" data {_escape(data)}"]
    for resource, soft, hard, step in r["rlimits"]:  # type: ignore[attr-defined]
        lines.append(f"rlimit {resource} {soft} {hard} {step}")
    lines.append(f"seccomp_len {len(r['seccomp_bpf'])}")  # type: ignore[arg-type]
    lines.append("landlock {} {} {} {}".format(
        r["landlock_abi"], *(f"{r[k]:#x}" if r[k] else "0"
                             for k in ("landlock_fs", "landlock_net", "landlock_scoped"))))
    for path, port, access, optional in r["landlock_rules"]:  # type: ignore[attr-defined]
        lines.append(f"landlock_rule {port} {access:#x} {int(optional)}" if access
                     else f"landlock_rule {port} 0 {int(optional)}")
        lines.append(f" path {_escape(path)}")
    lines.append(f"report_len {len(r.get('report_bpf', b''))}")  # type: ignore[arg-type]
    for nr, text in sorted(r.get("refusals", {}).items()):  # type: ignore[attr-defined]
        lines.append(f"refusal {nr} {text}")
    lines.append(f"refusal_other {_escape(r.get('refusal_other', '').encode())}")  # type: ignore[attr-defined]
    lines.append(f"notes {_escape(r.get('notes', '').encode())}")  # type: ignore[attr-defined]
    for name, index in r["step_index"].items():  # type: ignore[attr-defined]
        lines.append(f"step {name} {index}")
    return "\n".join(lines) + "\n"


def _record(**changes: object) -> dict[str, object]:
    record: dict[str, object] = {
        "clone_flags": 0x10000000 | 0x20000000 | 0x00020000, "uid": 1000, "gid": 1000,
        "uid_map": b"1000 100000 1\n", "gid_map": b"1000 100000 1\n",
        "setgroups_deny": True, "loopback_up": False, "new_session": True,
        "terminal_job": True, "die_with_parent": True, "no_new_privs": True, "init": True,
        "caps_keep": (0, 21, 63), "root": b"tmpfs", "cwd": b"/work dir",
        "hostname": b"box", "env": (b"A=1", b"PATH=/opt/bin", b"B=\xff\\"),
        "keep_fds": (1, 7, 5, 7),
        "mounts": (
            (1, b"/usr", b"/usr", MS_RDONLY | MS_NOSUID | MS_NODEV, b"", 0o755, False, 3, -1),
            (6, b"/etc/motd", b"bin\0ary\nfile", 0, b"", 0o644, False, 4, -1),
            (2, b"/tmp", b"", MS_NOSUID, b"size=1024", 0o1777, False, 5, -1),
            (2, b"/run", b"", 0, b"", 0o700, True, 6, -1),
            (5, b"/bin", b"usr/bin", 0, b"", 0o755, True, -1, -1),
            # ABI 5 (issue #13): an overlay, a mask, the root's read-only remount
            (12, b"/work dir", b"/work dir", MS_NOSUID, b"mode=700,size=4096", 0o755, True, 7,
             -1),
            (13, b"/home/u/.ssh", b"", 0, b"", 0o755, True, 8, -1),
            (11, b"/", b"", 0, b"", 0o755, False, 9, -1),
        ),
        "rlimits": ((7, 64, 128, 8), (4, -1, -1, 9)),
        "seccomp_bpf": bytes(range(16)), "notify_bpf": b"", "cgroup": b"",
        "landlock_abi": 6, "landlock_fs": 0xFFFF, "landlock_net": 3, "landlock_scoped": 3,
        "landlock_rules": ((b"/usr", 0, 0xD, False), (b"/opt/x", 0, 0x4, True),
                           (b"", 443, 2, False)),
        "step_index": {"clone": 0, "uid_map": 1, "exec": 12},
        "argv": (b"ignored",),
        # the refusal report (version 5, issue #17)
        "report_bpf": bytes(range(24)), "refusals": {250: "keyctl: a rule (p.toml:3:1)",
                                                    0: "read: x"},
        "refusal_other": "default (p.toml:1:1)", "notes": "isorun: a note\nand a second",
    }  # fmt: skip
    record.update(changes)
    return record


def test_every_field_round_trips() -> None:
    record = _record()
    assert dump(flat.encode(record)) == expected_dump(record)


def test_defaults_round_trip() -> None:
    record = _record(clone_flags=0, uid_map=b"", gid_map=b"", root=b"", env=(), keep_fds=(),
                     mounts=(), rlimits=(), seccomp_bpf=b"", step_index={}, caps_keep=(),
                     setgroups_deny=False, new_session=False, die_with_parent=False,
                     no_new_privs=False, init=False, hostname=b"", landlock_abi=0,
                     landlock_fs=0, landlock_net=0, landlock_scoped=0,
                     landlock_rules=(), report_bpf=b"", refusals={}, refusal_other="",
                     notes="")  # fmt: skip
    text = dump(flat.encode(record))
    assert text == expected_dump(record)
    assert "path /usr/bin:/bin\n" in text


def test_new_session_without_terminal_job_is_plain_setsid() -> None:
    record = _record(terminal_job=False)
    assert "new_session 1\n" in dump(flat.encode(record)) == expected_dump(record)


def test_argv_is_not_part_of_the_record() -> None:
    assert flat.encode(_record(argv=(b"a",))) == flat.encode(_record(argv=(b"b", b"c")))


def test_starts_with_magic_and_version() -> None:
    blob = flat.encode(_record())
    assert blob[:4] == flat.MAGIC
    assert int.from_bytes(blob[4:8], "little") == flat.VERSION


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cgroup": b"/sys/fs/cgroup/x"}, "cgroup"),
        ({"notify_bpf": b"\0" * 8}, "learn mode"),
        ({"root": b"/a\0b"}, "NUL"),
        ({"env": (b"A=\0",)}, "NUL"),
        ({"seccomp_bpf": b"\0" * 7}, "8-byte"),
        ({"caps_keep": (64,)}, "capability"),
        ({"mounts": ((10, b"/x", b"/x", 0, b"", 0o755, False, 1, 5),)}, "tree descriptor"),
    ],
)
def test_encode_refuses_what_the_helper_must_not_launch(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(InternalError, match=message):
        flat.encode(_record(**changes))


def test_flat_imports_only_constants() -> None:
    code = ("import sys; before = set(sys.modules); import isorun.sandbox.flat; "
            "print(sorted(set(sys.modules) - before - {'isorun', 'isorun.sandbox', "
            "'isorun.sandbox.flat', '__future__', 'isorun.shim', 'isorun.shim.abi', "
            "'isorun.sandbox.record'}))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=30)  # fmt: skip
    assert done.stdout.strip() == "[]"
