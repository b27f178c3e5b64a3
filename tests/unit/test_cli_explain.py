"""explain names every unsafe switch and the host network's exposure at the user's line;
``isorun syscalls`` answers what the hints point at; check refuses a missing bind source."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from isorun import api
from isorun.cli.main import cli
from isorun.errors import ProfileError
from isorun.host import facts as host_facts
from isorun.host.facts import HostFacts


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_unsafe_map_root_is_a_warning_in_text_and_json(tmp_path: Path) -> None:
    # map_root needs a root caller: compiled with root's facts, so the suite passes as any
    # user (and inside its own sandbox, pytest --isorun)
    path = tmp_path / "root.toml"
    path.write_text('extends = ["strict"]\n\n[unsafe]\nmap_root = true\n')
    here = host_facts.probe()
    facts = HostFacts(uid=0, gid=0, arch=here.arch, kernel=here.kernel)
    plan = api.compile_plan(str(path), facts, host_facts.variables(facts))
    warnings = json.loads(json.dumps(plan.to_json()))["warnings"]
    assert len(warnings) == 1 and warnings[0].startswith("[unsafe] map_root = true (")
    assert "root.toml:4)" in warnings[0] and "host root (uid 0)" in warnings[0]
    assert "\nwarning: [unsafe] map_root = true" in plan.describe()


def test_unsafe_map_root_for_a_normal_user_is_located_at_the_users_line(
        tmp_path: Path) -> None:
    # compiled with a normal user's facts, whoever runs the suite
    path = tmp_path / "unsafe.toml"
    path.write_text('extends = ["strict"]\n\n[unsafe]\nmap_root = true\n')
    here = host_facts.probe()
    facts = HostFacts(uid=1000, gid=1000, arch=here.arch, kernel=here.kernel)
    try:
        api.compile_plan(str(path), facts, host_facts.variables(facts))
    except ProfileError as err:
        text = err.render()
    else:
        raise AssertionError("map_root compiled for a normal user")
    assert text == (f"{path}:4:1: error: unsafe.map_root needs root\n"
                    "  hint: run as root or remove map_root"), text


def test_host_network_exposure_is_named() -> None:
    code, out, _ = invoke("explain", "web")
    assert code == 0
    # one warning, in one wording (issue 17: it was said twice)
    lines = [line for line in out.splitlines() if line.startswith("warning: network")]
    assert lines == [
        'warning: network.mode = "host" (<builtin>/web.toml:10): the sandbox shares the '
        "host's network namespace, so it can connect to every service listening on the "
        "host's loopback (127.0.0.1, ::1: databases, caches, admin and debug ports bound to "
        "localhost), bind ports on the host, and list the host's sockets in /proc/net; "
        "network.tcp_connect limits the ports it connects to"], lines
    _, out, _ = invoke("explain", "strict")
    assert "warning: network" not in out


def test_seccomp_off_warning_points_at_the_users_line(tmp_path: Path) -> None:
    path = tmp_path / "off.toml"
    path.write_text('extends = ["strict"]\noverride = ["seccomp.enabled"]\n\n'
                    "[seccomp]\nenabled = false\n")
    code, out, _ = invoke("explain", str(path))
    assert code == 0
    assert "warning: seccomp is off (" in out and "off.toml:5): every syscall" in out


def test_explain_of_a_file_says_it_is_not_the_builtin(tmp_path: Path) -> None:
    path = tmp_path / "web.toml"
    path.write_text('extends = ["web"]\n')
    _, out, _ = invoke("explain", str(path))
    assert out.startswith(f"plan for profile web (the file {path}, not a built-in profile)\n")


def test_syscalls_lists_groups_members_and_decisions() -> None:
    code, out, _ = invoke("syscalls")
    assert code == 0 and "@file-system" in out and "@docker-default" in out
    code, out, _ = invoke("syscalls", "@clock")
    assert code == 0 and out.startswith("Setting the system clock.") and "  adjtimex\n" in out
    code, out, _ = invoke("syscalls", "ptrace")
    assert code == 0 and out.startswith("ptrace: in @debug")
    assert "  strict   errno:1: hardening: " in out
    code, out, _ = invoke("syscalls", "ioctl")
    assert "errno:1 (for some arguments): hardening: TIOCSTI" in out
    assert "then allow: seccomp.allow via @docker-default, <builtin>/strict.toml:" in out


def test_syscalls_unknown_name_suggests() -> None:
    code, _, err = invoke("syscalls", "opnat")
    assert code == 2
    assert "error: unknown syscall or group 'opnat'" in err and "did you mean 'openat'" in err


def test_check_refuses_a_missing_required_bind_source(tmp_path: Path) -> None:
    path = tmp_path / "miss.toml"
    path.write_text('extends = ["strict"]\n[[mounts]]\ntype = "ro-bind"\n'
                    'src = "/nonexistent/isorun-src"\ndst = "/data"\n')
    code, _, err = invoke("check", str(path))
    assert code == 2
    assert "miss.toml:2:1: error: ro-bind source /nonexistent/isorun-src does not exist" in err
    assert ("hint: create /nonexistent/isorun-src, or mark the mount optional = true "
            "(dst /data)") in err


def test_explain_backend_says_who_applies_the_landlock_layer() -> None:
    """bwrap and firejail apply the plan's Landlock ruleset through isorun's exec stage
    (issue 18): web's abstract-socket scope is no longer a rule bwrap loses."""
    code, out, _ = invoke("explain", "web", "--backend", "bwrap")
    assert code == 0, out
    assert "landlock ABI" in out
    assert "landlock: isorun's exec stage inside bwrap, after no_new_privs, before " \
        "seccomp" in out
    assert "abstract_unix_socket" not in out.split("backend bwrap:")[1]
    code, out, _ = invoke("explain", "strict", "--backend", "firejail")
    assert code == 0 and "exec stage inside firejail" in out, out
    code, out, _ = invoke("explain", "strict", "--backend", "nosuch")
    assert code != 0 and "unknown backend" in out + _, out
