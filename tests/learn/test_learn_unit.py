"""Pure parts of learn mode: the observing filter, merging, rendering helpers."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from isorun.errors import UsageError
from isorun.learn import filters
from isorun.learn import observe as learn
from isorun.learn import profile as learn_profile
from isorun.profile.schema import Action, Seccomp


def _rets(bpf: bytes) -> set[int]:
    out = set()
    for off in range(0, len(bpf), 8):
        code, _jt, _jf, k = struct.unpack_from("=HBBI", bpf, off)
        if code == filters.BPF_RET_K:
            out.add(k)
    return out


def test_observing_filter_turns_every_refusal_into_user_notif() -> None:
    policy = Seccomp(allow=("read", "write"), deny=("mkdir",),
                     default_action=Action("errno", 1))
    rets = _rets(filters.observing_filter(policy))
    assert filters.SECCOMP_RET_USER_NOTIF in rets
    assert 0x7FFF0000 in rets  # allow stays allow
    # no refusal survives except clone3's ENOSYS and the kill for foreign ABIs
    assert rets - {filters.SECCOMP_RET_USER_NOTIF, 0x7FFF0000} <= {0x00050000 | 38, 0x80000000}


def test_observing_filter_notifies_execve_first() -> None:
    bpf = filters.observing_filter(Seccomp(allow=("@default",)))
    assert struct.unpack_from("=HBBI", bpf, 32) == (
        filters.BPF_RET_K, 0, 0, filters.SECCOMP_RET_USER_NOTIF)


def test_merge_refuses_different_bases() -> None:
    a = learn.Observation("strict", "learn", (("true",),), ())
    b = learn.Observation("web", "learn", (("true",),), ())
    with pytest.raises(UsageError, match="cannot merge"):
        learn.merge([a, b])


def test_merge_adds_counts() -> None:
    a = learn.Observation("strict", "learn", (("a",),), (learn.Call("read", "x86_64", None, 2),))
    b = learn.Observation("strict", "learn", (("b",),), (learn.Call("read", "x86_64", None, 3),
                                                        learn.Call("socket", "x86_64", 1, 1)))
    m = learn.merge([a, b])
    assert m.calls == (learn.Call("read", "x86_64", None, 5), learn.Call("socket", "x86_64", 1, 1))
    assert m.commands == (("a",), ("b",))


def test_read_learned_rejects_a_hand_written_profile(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text("[seccomp]\nallow = []\n")
    with pytest.raises(UsageError, match="not a profile written by `isorun learn`"):
        learn.read_learned(str(path))


def test_json_round_trip(tmp_path: Path) -> None:
    obs = learn.Observation("strict", "learn", (("x", "y\nz"),),
                            (learn.Call("ioctl", "x86_64", 0x5401, 4),),
                            (("openat", "/etc/passwd", 1),), (("connect", "inet 1.2.3.4:5", 1),),
                            9, 0)
    path = tmp_path / "l.toml"
    path.write_text(learn.MARKER + learn.to_json(obs) + "\n")
    assert learn.read_learned(str(path)) == obs


@pytest.mark.parametrize(("raw", "text"), [
    (struct.pack("=H", 2) + struct.pack("!H", 80) + bytes([127, 0, 0, 1]) + bytes(8),
     "inet 127.0.0.1:80"),
    (struct.pack("=H", 1) + b"/run/x.sock\0", "unix /run/x.sock"),
    (struct.pack("=H", 1) + b"\0abstract", "unix @abstract"),
    (struct.pack("=H", 40) + bytes(14), "AF_VSOCK"),
])
def test_format_sockaddr(raw: bytes, text: str) -> None:
    assert learn.format_sockaddr(raw) == text


def test_learned_rules_skip_what_the_base_refuses_on_purpose() -> None:
    obs = learn.Observation("strict", "learn", (("x",),), (
        learn.Call("ptrace", "x86_64", None, 1), learn.Call("read", "x86_64", None, 1),
        learn.Call("socket", "x86_64", 2, 1)))
    got = learn_profile.learned_rules(obs, Seccomp(allow=("@default",)))
    assert got.allow == ("read",)
    assert [r.syscalls for r in got.rules] == [("socket",)]
    assert got.rules[0].args[0].value == 2 and got.rules[0].args[0].mask == 0xFFFFFFFF
    assert any("ptrace" in n and "hardening" in n for n in got.notes)
