"""The profile loader: every class of bad input gives file:line:col, a hint, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from isorun import api
from isorun.errors import ProfileError
from isorun.profile import schema


def write(tmp_path: Path, text: str, name: str = "p.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def errors_of(spec: str) -> list[str]:
    with pytest.raises(ProfileError) as info:
        api.load_profile(spec)
    return [d.render() for d in info.value.diagnostics]


@pytest.mark.parametrize("name", ["strict", "build", "test", "web"])
def test_builtin_profiles_load_and_compile(name: str) -> None:
    plan = api.compile_plan(name)
    assert plan.profile == name
    assert plan.steps[-1].describe() == "execve the command"


def test_toml_syntax_error_has_line_and_col(tmp_path: Path) -> None:
    spec = write(tmp_path, 'description = "x"\n[namespaces\nuser = true\n')
    (msg,) = errors_of(spec)
    assert msg.startswith(f"{Path(spec).name}:2:") or ":2:" in msg.split(": error")[0]
    assert "TOML syntax" in msg and "hint:" in msg


def test_not_utf8_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(b'description = "\xff"\n')
    (msg,) = errors_of(str(path))
    assert "not UTF-8" in msg


def test_unknown_key_suggests_near_name(tmp_path: Path) -> None:
    spec = write(tmp_path, "[namespaces]\nuser = true\nnett = false\n")
    (msg,) = errors_of(spec)
    assert ":3:1: error: unknown key 'nett' in namespaces" in msg
    assert "did you mean 'net'?" in msg


def test_unknown_top_level_table(tmp_path: Path) -> None:
    (msg,) = errors_of(write(tmp_path, "[limit]\ncpu = 1\n"))
    assert "unknown key 'limit'" in msg and "did you mean 'limits'?" in msg


def test_wrong_type(tmp_path: Path) -> None:
    (msg,) = errors_of(write(tmp_path, '[namespaces]\npid = "yes"\n'))
    assert ":2:1: error: namespaces.pid must be true or false" in msg


def test_all_errors_at_once_sorted_by_line(tmp_path: Path) -> None:
    spec = write(tmp_path, '[limits]\nnofile = "many"\n[network]\nmode = "nonee"\n'
                 '[[mounts]]\ntype = "ro-bind"\ndst = "usr"\n')
    msgs = errors_of(spec)
    assert len(msgs) == 3
    lines = [int(m.split(":")[1]) for m in msgs]
    assert lines == sorted(lines) == [2, 4, 7]
    assert "did you mean 'none'?" in msgs[1]
    assert 'write dst = "/usr"' in msgs[2]


def test_relative_mount_dst(tmp_path: Path) -> None:
    (msg,) = errors_of(write(tmp_path, '[[mounts]]\ntype = "tmpfs"\ndst = "tmp"\n'))
    assert ":3:1: error: mounts[0].dst must be absolute" in msg


def test_unknown_mount_type(tmp_path: Path) -> None:
    (msg,) = errors_of(write(tmp_path, '[[mounts]]\ntype = "robind"\ndst = "/x"\n'))
    assert "unknown mount type 'robind'" in msg and "did you mean 'ro-bind'?" in msg


def test_option_not_taken_by_mount_type(tmp_path: Path) -> None:
    (msg,) = errors_of(write(tmp_path, '[[mounts]]\ntype = "proc"\ndst = "/proc"\nsize = "1m"\n'))
    assert ":4:1: error: a proc mount takes no 'size'" in msg


def test_unknown_syscall_suggests(tmp_path: Path) -> None:
    (msg,) = errors_of(write(tmp_path, '[seccomp]\nallow = ["read", "wrte"]\n'))
    assert ":2:" in msg and "unknown syscall 'wrte'" in msg and "did you mean 'write'?" in msg


def test_unknown_group_suggests(tmp_path: Path) -> None:
    (msg,) = errors_of(write(tmp_path, '[seccomp]\nallow = ["@file-sytem"]\n'))
    assert "unknown syscall group '@file-sytem'" in msg and "'@file-system'" in msg


def test_seccomp_rule_arg_errors(tmp_path: Path) -> None:
    spec = write(tmp_path, '[[seccomp.rules]]\nsyscalls = ["personality"]\naction = "allow"\n'
                 'args = [{ index = 6, op = "eq", value = 0 }, { index = 0, op = "eqq", '
                 'value = 1 }]\n')
    msgs = errors_of(spec)
    assert any("seccomp.rules[0].args[0].index: 6 out of range" in m for m in msgs)
    assert any("unknown operator 'eqq'" in m and "did you mean 'eq'?" in m for m in msgs)
    assert all(":4:" in m for m in msgs)


def test_bad_action(tmp_path: Path) -> None:
    (msg,) = errors_of(write(tmp_path, '[seccomp]\ndefault_action = "errno:EPRM"\n'))
    assert "unknown errno name 'EPRM'" in msg and "EPERM" in msg


def test_action_parsing(tmp_path: Path) -> None:
    profile = api.load_profile(write(tmp_path, '[seccomp]\ndefault_action = "errno:EACCES"\n'
                                     'deny_action = "kill_process"\n'))
    assert profile.seccomp.default_action == schema.Action("errno", 13)
    assert profile.seccomp.deny_action == schema.Action("kill_process")


def test_sizes_with_units(tmp_path: Path) -> None:
    profile = api.load_profile(write(tmp_path, '[limits]\nmemory = "512m"\nfsize = 4096\n'))
    assert profile.limits.memory == 512 << 20 and profile.limits.fsize == 4096


def test_no_new_privs_off_needs_unsafe_flag(tmp_path: Path) -> None:
    msgs = errors_of(write(tmp_path, "[security]\nno_new_privs = false\n"))
    assert any("allow_new_privs" in m for m in msgs)
    assert any("only under no_new_privs" in m for m in msgs)
    ok = write(tmp_path, "[security]\nno_new_privs = false\n[unsafe]\nallow_new_privs = true\n"
               "[seccomp]\nenabled = false\n", "ok.toml")
    plan = api.compile_plan(ok)
    assert any("no_new_privs is off" in w for w in plan.warnings)


def test_contradiction_host_network_with_net_namespace(tmp_path: Path) -> None:
    (msg,) = errors_of(write(tmp_path, '[namespaces]\nnet = true\n[network]\nmode = "host"\n'))
    assert "contradicts" in msg


def test_shared_terminal_needs_hardening(tmp_path: Path) -> None:
    (msg,) = errors_of(write(tmp_path, "[process]\nnew_session = false\n"
                             "[seccomp]\nhardening = false\n"))
    assert "TIOCSTI" in msg


def test_unknown_capability(tmp_path: Path) -> None:
    (msg,) = errors_of(write(tmp_path, '[capabilities]\nkeep = ["CAP_NET_BIND_SERVIC"]\n'))
    assert "did you mean 'CAP_NET_BIND_SERVICE'?" in msg


def test_missing_required_mount_key(tmp_path: Path) -> None:
    (msg,) = errors_of(write(tmp_path, '[[mounts]]\ntype = "tmpfs"\n'))
    assert "needs the key 'dst'" in msg


def test_unknown_variable_in_plan(tmp_path: Path) -> None:
    spec = write(tmp_path, '[[mounts]]\ntype = "tmpfs"\ndst = "${NOPE}/x"\n')
    with pytest.raises(ProfileError) as info:
        api.compile_plan(spec)
    assert "unknown variable ${NOPE}" in info.value.render()


def test_error_exit_code_is_2() -> None:
    assert ProfileError([]).exit_code == 2


def test_filter_that_cannot_start_a_command_is_refused(tmp_path: Path) -> None:
    spec = write(tmp_path, "[namespaces]\nuser = true\n")
    with pytest.raises(ProfileError) as info:
        api.compile_plan(spec)
    text = info.value.render()
    assert "p.toml:1:1: error: the seccomp filter allows neither execve nor exit_group" in text
    assert '@docker-default' in text
