"""What the backends share: the capability samples, the compiled inputs of a spawn
(:class:`Compiled`), the facts a backend checks, and the descriptors handed to a wrapper
(the running wrapper is sandbox/backend/wrapper_run.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from isorun.compile import plan as p
from isorun.compile.pipeline import seccomp_program
from isorun.compile.render.invocation import HELPER, Invocation
from isorun.errors import HostError, Lost, Unsupported
from isorun.host.probe import BackendFacts
from isorun.profile.schema import Seccomp

if TYPE_CHECKING:
    from isorun.sandbox.refusal_watch import RefusalWatch

DRY_RUN_FD = 1000  # descriptor numbers for dry renders (check); never opened


class Compiled(Protocol):
    """What a spawn needs compiled from a plan, from wherever the caller keeps it."""

    def program(self, plan: p.Plan) -> bytes:
        """The plan's seccomp program (b"" when it loads none)."""

    def launch_record(self, plan: p.Plan, caller_env: Mapping[str, str]
                      ) -> tuple[dict[str, Any], bytes]:
        """(record, flat.encode(record)) of the native spec of ``plan`` for this
        environment, without argv (see :func:`launch_record`)."""


class Fresh:
    """Compiled anew on every call: for a spawn without the API's memo."""

    def program(self, plan: p.Plan) -> bytes:
        return seccomp_program(plan)

    def launch_record(self, plan: p.Plan, caller_env: Mapping[str, str]
                      ) -> tuple[dict[str, Any], bytes]:
        return launch_record(plan, self.program(plan), caller_env)


def launch_record(plan: p.Plan, program: bytes, caller_env: Mapping[str, str]
                  ) -> tuple[dict[str, Any], bytes]:
    """The native launch record of ``plan`` for this environment (isorun-launch takes it
    with the command line's argv), and its flat encoding."""
    from isorun.compile.refusals import report_fields
    from isorun.sandbox import flat, native
    from isorun.sandbox.spec import spec_record

    spec = native.build_spec(plan, [], caller_env, program)
    record = {**spec_record(spec), **report_fields(plan, program)}
    del record["argv"]
    return record, flat.encode(record)


#: one representative step per step type and per option a backend may not support; the
#: capability matrix and the contract test are derived from these by rendering them
SAMPLES: tuple[tuple[str, p.Step], ...] = (
    *((f"Clone:{ns}", p.Clone((ns,))) for ns in
      ("user", "pid", "net", "mount", "ipc", "uts", "cgroup", "time")),
    ("MapIds", p.MapIds(1000, 1000, 1000, 1000)),
    ("MapIds:other", p.MapIds(0, 0, 1000, 1000)),
    ("Cgroup", p.Cgroup(1 << 30, 64)),
    ("WallTime", p.WallTime(10.0)),
    ("NewRoot:tmpfs", p.NewRoot("tmpfs")),
    ("NewRoot:rootfs", p.NewRoot("rootfs", "/srv/root")),
    *((f"MountStep:{kind}", p.MountStep(kind, "/tmp" if kind == "tmpfs" else "/x",
                                        "t" if kind == "symlink" else
                                        "/x" if "bind" in kind or kind == "overlay" else ""))
      for kind in ("ro-bind", "rw-bind", "dev-bind", "tmpfs", "proc", "dev", "symlink",
                   "file", "dir", "mqueue", "overlay", "mask")),
    ("MountStep:noexec", p.MountStep("ro-bind", "/x", "/x", noexec=True)),
    ("MountStep:src", p.MountStep("ro-bind", "/x", "/y")),
    ("MountStep:tmpfs-size", p.MountStep("tmpfs", "/tmp", size=1 << 20, mode=0o700)),
    ("ReadOnlyRoot", p.ReadOnlyRoot()),
    ("PivotRoot", p.PivotRoot()),
    ("Hostname", p.Hostname("sandbox")),
    ("Loopback", p.Loopback()),
    ("Rlimit", p.Rlimit("nofile", 64)),
    ("Chdir", p.Chdir("/")),
    ("NewSession", p.NewSession()),
    ("DieWithParent", p.DieWithParent()),
    ("CloseFds", p.CloseFds((5,))),
    ("Environment", p.Environment(True, ("TERM",), (("A", "1"),))),
    ("DropCaps", p.DropCaps(())),
    ("DropCaps:keep", p.DropCaps(("CAP_NET_BIND_SERVICE",))),
    ("NoNewPrivs", p.NoNewPrivs()),
    ("Landlock", p.Landlock(("read_file",), (), (), (p.LandlockRule(("read_file",), "/x"),),
                            7)),
    ("Landlock:tcp", p.Landlock((), ("connect_tcp",), (),
                                (p.LandlockRule(("connect_tcp",), port=443),), 7)),
    ("Landlock:scope abstract_unix_socket", p.Landlock((), (), ("abstract_unix_socket",), (),
                                                       7)),
    ("Landlock:scope signal", p.Landlock((), (), ("signal",), (), 7)),
    ("LoadSeccomp", p.LoadSeccomp(Seccomp())),
    ("Exec", p.Exec()),
)


def sample_plan(step: p.Step) -> p.Plan:
    """The smallest valid plan holding ``step``."""
    if isinstance(step, p.Exec):
        return p.Plan("sample", (step,))
    before: tuple[p.Step, ...] = ((p.NoNewPrivs(),) if isinstance(step, p.LoadSeccomp | p.Landlock)
                                   else ())
    if isinstance(step, p.Landlock):
        # bwrap's exec stage applies it from inside, which needs /proc (as binds, below)
        before = (p.MountStep("proc", "/proc"), *before)
    if isinstance(step, p.MountStep) and "bind" in step.type:
        # bwrap checks a bind from inside, with its exec stage run as /proc/self/fd/N
        # (compile/render/bwrap.py): it enforces binds in plans that mount /proc
        before = (p.MountStep("proc", "/proc"),)
    return p.Plan("sample", (*before, step, p.Exec()))


def capabilities_of(check: Callable[[p.Plan, BackendFacts | None], list[Lost]]
                    ) -> frozenset[str]:
    return frozenset(aspect for aspect, step in SAMPLES
                     if not check(sample_plan(step), None))


def render_lost(render: Callable[[], Invocation]) -> list[Lost]:
    try:
        return list(render().lost)
    except Unsupported as err:  # pragma: no cover - renders below pass allow_weaker
        return list(err.lost)


def _needs_userns(plan: p.Plan) -> bool:
    return any("user" in c.namespaces for c in plan.find(p.Clone))


def userns_missing(plan: p.Plan, facts: BackendFacts) -> tuple[str, str]:
    if _needs_userns(plan) and not facts.userns.allowed:
        return (f"user namespaces are disabled ({facts.userns.blocker})", facts.userns.fix)
    return "", ""


#: a stateless Compiled for spawns without the API's memo
FRESH = Fresh()


def landlock_here() -> bool:
    """Whether this kernel has Landlock: bwrap's terminal mode needs it (render/bwrap.py)."""
    from isorun.host.facts import probe

    return probe().landlock >= 1


def userns_allowed(facts: BackendFacts | None) -> bool:
    return True if facts is None else facts.userns.allowed


def identity_missing(plan: p.Plan, facts: BackendFacts, tool: str) -> tuple[str, str]:
    """A wrapper maps the uid that runs it, so the runner spawns it as the plan's host
    uid; only root can become another uid."""
    for step in plan.find(p.MapIds):
        if step.host_uid != facts.host.uid and not facts.host.root:
            return (f"{tool} maps the uid that runs it ({facts.host.uid}) but the plan runs "
                    f"as host uid {step.host_uid}", "run isorun as that user, or as root")
    return "", ""


def which_tool(name: str) -> str:
    import shutil

    path = shutil.which(name)
    if path is None:
        raise HostError(f"backend {name}", f"{name} is not installed",
                        f"apt-get install {'bubblewrap' if name == 'bwrap' else name}")
    return path


def data_fd(data: bytes, stack: ExitStack) -> int:
    # close-on-exec here; the spawn clears it only for the descriptors the plan passes
    from isorun.host.anonfile import handed_file

    fd = handed_file(data)
    stack.callback(os.close, fd)
    return fd


def program_fd(plan: p.Plan, program: bytes, stack: ExitStack) -> int | None:
    """The same BPF program the native shim loads, in a descriptor."""
    if not plan.find(p.LoadSeccomp):
        return None
    return data_fd(program, stack)


def refusal_watch_for(plan: p.Plan, program: bytes, refusals: bool, stack: ExitStack
                      ) -> RefusalWatch | None:
    """The refusal report's watch for a wrapper's exec stage; None when not asked for,
    or when the plan's program has no reporting form (refusals.reporting_filter)."""
    if not refusals or not plan.find(p.LoadSeccomp):
        return None
    from isorun.compile.refusals import reporting_filter
    from isorun.sandbox.refusal_watch import RefusalWatch

    report_bpf = reporting_filter(program, os.uname().machine, head=False)
    if not report_bpf:
        return None
    watch = RefusalWatch.for_stage(plan, program, report_bpf)
    stack.callback(watch.abandon)  # until started: a failed render leaves nothing open
    return watch


def landlock_fd(plan: p.Plan, stack: ExitStack) -> int | None:
    """The plan's Landlock ruleset for the exec stage, in a descriptor (None: the plan
    has none, or one that handles nothing, as native.landlock_fields decides)."""
    from isorun.sandbox.flat import landlock_section
    from isorun.sandbox.native import landlock_fields

    steps = plan.find(p.Landlock)
    fields = landlock_fields(steps[0]) if steps else {}
    if not fields:
        return None
    return data_fd(landlock_section(fields), stack)


def with_exec_stage(inv: Invocation) -> Invocation:
    if inv.argv and inv.argv[0] == HELPER:
        from isorun.sandbox.exec_stage import exec_stage_path

        return replace(inv, argv=(exec_stage_path(), *inv.argv[1:]))
    return inv
