"""The Landlock layer as the planner and the landlock backend build it (compile side)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from isorun import api
from isorun.compile import landlock
from isorun.compile import plan as p
from isorun.errors import DEFAULT_LOC, InternalError, ProfileError
from isorun.host.facts import HostFacts
from isorun.sandbox import native
from isorun.sandbox.landlock_mode import lost_rules, mode_plan
from isorun.sandbox.shim_ffi import load_shim

FACTS = HostFacts(uid=1000, gid=1000, arch="x86_64", kernel="6.18", landlock=7)


def plan_for(profile: str = "strict", **facts: object) -> p.Plan:
    return api.compile_plan(profile, replace(FACTS, **facts),  # type: ignore[arg-type]
                            {"CWD": "/home/u/proj", "HOME": "/home/u"})


def rules(plan: p.Plan) -> dict[str, tuple[str, ...]]:
    (step,) = plan.find(p.Landlock)
    return {r.path or f"port {r.port}": r.access for r in step.rules}


def test_file_rights_equal_the_shims_mask() -> None:
    lib = load_shim().lib
    assert landlock.mask(landlock.FILE_RIGHTS, landlock.ACCESS_FS) == \
        lib.ISORUN_LANDLOCK_FILE_RIGHTS


def test_ro_binds_read_and_execute_writable_mounts_write_nothing_else() -> None:
    got = rules(plan_for())
    assert got["/usr"] == ("execute", "read_file", "read_dir")
    assert "write_file" in got["/tmp"] and "make_reg" in got["/tmp"]
    assert "write_file" not in got["/home/u/proj"]
    assert got["/"] == ("read_dir",)  # the new root's names, nothing of its files
    assert "execute" not in got["/proc"] and "execute" not in got["/dev"]
    assert not any("make_char" in a or "make_block" in a for a in got.values())


def test_the_topmost_mount_at_a_destination_decides_its_rule() -> None:
    steps = (p.MountStep("rw-bind", "/data", "/data"), p.MountStep("ro-bind", "/data", "/data"))
    step = landlock.build_landlock(steps, root="tmpfs", tcp_connect=None, tcp_bind=None,
                                   loc=DEFAULT_LOC)
    assert [(r.path, "write_file" in r.access) for r in step.rules] == [
        ("/", False), ("/data", False)]


def test_older_abi_drops_rights_and_names_each_loss() -> None:
    plan = plan_for("web", landlock=3)
    (step,) = plan.find(p.Landlock)
    assert step.abi == 3 and step.scopes == ()
    assert "ioctl_dev" not in step.handled_fs and "truncate" in step.handled_fs
    joined = "\n".join(plan.warnings)
    assert "ioctl_dev (needs ABI 5, this kernel has 3)" in joined
    assert "abstract_unix_socket, signal (needs ABI 6" in joined
    assert "can reach abstract unix sockets" in joined


def test_no_landlock_on_the_kernel_is_named_not_silent() -> None:
    plan = plan_for(landlock=0)
    (step,) = plan.find(p.Landlock)
    assert step.abi == 0 and step.rules == ()
    assert any("no Landlock" in w for w in plan.warnings)
    spec = native.build_spec(plan, ["true"], {}, b"")
    assert spec.landlock_abi == 0


def test_tcp_ports_become_port_rules(tmp_path: object) -> None:
    step = landlock.build_landlock((), root="host", tcp_connect=(443, 80), tcp_bind=(),
                                   loc=DEFAULT_LOC)
    assert step.handled_fs == () and step.handled_net == ("connect_tcp", "bind_tcp")
    assert [(r.port, r.access) for r in step.rules] == [(80, ("connect_tcp",)),
                                                       (443, ("connect_tcp",))]
    assert "tcp port 80: connect_tcp (ABI 4)" in p.Landlock.details(step)[0]


def test_landlock_comes_after_no_new_privs_and_the_mounts_before_seccomp() -> None:
    steps = plan_for().steps
    kinds = [type(s) for s in steps]
    at = kinds.index(p.Landlock)
    assert kinds.index(p.NoNewPrivs) < at < kinds.index(p.LoadSeccomp)
    with pytest.raises(InternalError, match="phase order"):
        p.Plan("x", (p.NoNewPrivs(), steps[at], p.MountStep("tmpfs", "/tmp"), p.Exec()))
    with pytest.raises(InternalError, match="NoNewPrivs must come before Landlock"):
        p.Plan("x", (steps[at], p.Exec()))


def test_spec_carries_masks_and_rules() -> None:
    spec = native.build_spec(plan_for(), ["true"], {}, b"")
    assert spec.landlock_abi == 7
    assert spec.landlock_fs == (1 << 16) - 1
    assert spec.landlock_scoped == 3 and spec.landlock_net == 0
    assert (b"/usr", 0, 0b1101, True) not in spec.landlock_rules
    assert (b"/usr", 0, 0b1101, False) in spec.landlock_rules


def test_landlock_mode_names_what_it_cannot_enforce() -> None:
    plan = plan_for()
    names = "\n".join(item.rule for item in lost_rules(plan, 7))
    for rule in ("pid namespace", "net namespace", "ipc namespace", "uts namespace",
                 "new root: empty tmpfs", "tmpfs /tmp", "hostname sandbox"):
        assert rule in names
    assert "ro-bind /usr" not in names  # a bind at its own path is a Landlock grant
    assert "scope abstract_unix_socket, signal" in [i.rule for i in lost_rules(plan, 5)]


def test_landlock_mode_loses_a_read_only_bind_inside_a_writable_one() -> None:
    """Landlock rights add up along a path: build's .git guard cannot hold without a
    mount, and web's host network leaves pathname unix sockets reachable."""
    lost = {item.rule: item.why for item in lost_rules(plan_for("build"), 7)}
    guard = lost["ro-bind /home/u/proj/.git (optional, kept read-only: git runs its hooks "
                 "and config on the host)"]
    assert "inside the writable grant of /home/u/proj" in guard
    assert "ro-bind /usr" not in lost and "pathname unix sockets" not in lost
    web = [item.rule for item in lost_rules(plan_for("web"), 7)]
    assert "pathname unix sockets" in web


def test_landlock_mode_grants_host_paths_and_refuses_sockets_under_network_none() -> None:
    plan = mode_plan(plan_for(), 7)
    got = rules(plan)
    assert "/tmp" not in got and "/" not in got  # no private tmpfs, no new root
    assert got["/dev/null"] == ("write_file", "read_file", "truncate", "ioctl_dev")
    (step,) = plan.find(p.Landlock)
    assert step.handled_net == ("bind_tcp", "connect_tcp")
    (seccomp,) = plan.find(p.LoadSeccomp)
    first = {r.syscalls: r for r in seccomp.policy.rules[:2]}
    # every family, AF_UNIX too: Landlock does not govern connect(2) to a pathname socket
    assert first[("socket",)].args == ()
    # no pid namespace: prlimit of any process but the caller (pid 0) is refused
    assert [(a.index, a.op, a.value) for a in first[("prlimit64",)].args] == [(0, "ne", 0)]


def test_tcp_ports_outside_the_range_are_refused_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('extends = ["web"]\n[network]\ntcp_connect = [443, 70000]\n')
    with pytest.raises(ProfileError) as info:
        api.load_profile(str(path))
    assert "p.toml:3" in info.value.render()
    assert "network.tcp_connect: 70000 is not a TCP port" in info.value.render()
