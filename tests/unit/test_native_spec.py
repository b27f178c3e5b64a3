"""Plan -> ShimSpec: flags, maps, mounts, environment, and failure-to-profile-line mapping."""

from __future__ import annotations

from isorun import api
from isorun.compile import plan as p
from isorun.compile.environment import build_environment
from isorun.host.facts import HostFacts
from isorun.kernel import abi
from isorun.sandbox import native
from isorun.sandbox.spec import MountKind

FACTS = HostFacts(uid=1000, gid=1000, arch="x86_64", kernel="6.1.0")
VARS = {"HOME": "/home/u", "CWD": "/home/u/proj", "TMPDIR": "/tmp", "UID": "1000",
        "GID": "1000", "USER": "u"}


def spec_for(profile: str, env: dict[str, str] | None = None) -> tuple[p.Plan, object]:
    plan = api.compile_plan(profile, FACTS, VARS)
    return plan, native.build_spec(plan, ["/bin/true"], env or {}, b"\0" * 8)


def test_every_shim_step_name_maps_to_a_plan_step_or_carries_its_own() -> None:
    from isorun.sandbox import _shim

    # mount and rlimit failures carry their own step index; init and stdio are isorun's
    # own machinery, with no profile line behind them.
    own = {"mount", "init", "stdio"}
    assert set(_shim.STEP_NAMES) - own <= set(native.SHIM_STEPS)


def test_strict_spec_flags_and_maps() -> None:
    plan, spec = spec_for("strict")
    assert spec.clone_flags == sum(abi.NAMESPACE_FLAGS[n] for n in
                                   ("user", "pid", "net", "mount", "ipc", "uts", "cgroup"))
    assert spec.uid_map == b"1000 1000 1\n" and spec.gid_map == b"1000 1000 1\n"
    assert spec.root == b"tmpfs" and spec.loopback_up and spec.new_session
    assert spec.no_new_privs and spec.seccomp_bpf and spec.caps_keep == ()
    usr = next(m for m in spec.mounts if m.dst == b"/usr")
    assert usr.kind is MountKind.BIND
    assert usr.flags & (abi.MS_RDONLY | abi.MS_NOSUID | abi.MS_NODEV) == 7
    assert plan.steps[usr.step].describe().startswith("ro-bind /usr")
    assert spec.step_index["hostname"] == plan.steps.index(plan.find(p.Hostname)[0])


def test_web_keeps_host_network() -> None:
    _, spec = spec_for("web")
    assert not spec.clone_flags & abi.NAMESPACE_FLAGS["net"]
    assert not spec.loopback_up


def test_environment_clear_set_then_keep_wins() -> None:
    step = p.Environment(clear=True, keep=("TERM", "LC_*", "PATH"),
                         set=(("PATH", "/bin"), ("HOME", "/tmp")))
    env = build_environment(step, {"TERM": "xterm", "LC_ALL": "C", "SECRET": "x",
                                   "AWS_TOKEN": "t"})
    assert env == (b"HOME=/tmp", b"LC_ALL=C", b"PATH=/bin", b"TERM=xterm")
    env = build_environment(step, {"PATH": "/usr/bin"})
    assert b"PATH=/usr/bin" in env


def test_root_caller_runs_as_overflow_user() -> None:
    plan = api.compile_plan("strict", HostFacts(0, 0, "x86_64", "6.1"), VARS)
    spec = native.build_spec(plan, ["/bin/true"], {}, b"")
    assert spec.uid_map == b"65534 65534 1\n" and spec.uid == 65534


def test_spec_record_carries_every_field_in_declaration_order() -> None:
    import dataclasses
    import marshal

    from isorun.sandbox.spec import Rlimit, ShimMount, ShimSpec, spec_record

    # Distinct values per field, so a swapped pair of tuple positions shows.
    mount = ShimMount(MountKind.TMPFS, b"/t", b"s", 3, b"size=1", 0o700, True, 4, 5)
    limit = Rlimit(7, 8, 9, 10)
    spec = ShimSpec(argv=(b"/bin/true",), mounts=(mount,), rlimits=(limit,),
                    step_index={"clone": 0})
    record = spec_record(spec)
    assert set(record) == {f.name for f in dataclasses.fields(ShimSpec)}
    assert record["mounts"] == (
        tuple(int(v) if isinstance(v, MountKind) else v for v in dataclasses.astuple(mount)),)
    assert record["rlimits"] == (dataclasses.astuple(limit),)
    # The plan cache stores it with marshal, which knows no dataclass or enum.
    assert marshal.loads(marshal.dumps(record)) == record
