"""``isorun doctor``: what this host lets isorun enforce, and how to fix what is missing.

Every check is a :class:`Check` with a one-line remedy. The backend section runs the real
selection for a profile, so the doctor says which backend ``auto`` would take and why the
stronger ones were passed over, with the same words a verbose launch prints.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from isorun.errors import HostError, IsorunError, Unsupported
from isorun.host import probe
from isorun.host.probe import BackendFacts

OK, WARN, FAIL, INFO = "ok", "warn", "fail", "info"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str
    detail: str
    remedy: str = ""
    #: structured facts for ``--json`` (the Landlock ABI and what each level adds)
    data: dict[str, Any] = field(default_factory=dict, compare=False)


def check_userns(facts: BackendFacts, root: Path, clone: tuple[bool, str] | None) -> list[Check]:
    out = []
    for name, path in probe.USERNS_SYSCTLS:
        value = probe._read(root / path.lstrip("/"))
        if value is None:
            out.append(Check(name, INFO, "not present on this kernel"))
            continue
        bad = (name.startswith("user.") and value.strip() == "0") or (
            not name.startswith("user.") and name in facts.userns.blocker)
        out.append(Check(name, FAIL if bad else OK, f"= {value.strip()}",
                         facts.userns.fix if bad else ""))
    if clone is not None:
        worked, err = clone
        if worked:
            out.append(Check("clone(CLONE_NEWUSER)", OK,
                             "a forked child created a user namespace"))
        else:
            # Why, from kernel facts of this process: an outer sandbox, a container's
            # seccomp profile, or an LSM (the sysctls above were read already).
            import errno as errno_mod

            step, _, name = err.rpartition(": ")
            why = probe.userns_refusal(root, getattr(errno_mod, name, 0),
                                       step or "unshare(CLONE_NEWUSER)")
            out.append(Check("clone(CLONE_NEWUSER)", FAIL,
                             f"a forked child could not create a user namespace: "
                             f"{why.blocker}", why.fix))
    return out


def check_container(root: Path) -> list[Check]:
    runtime = probe.read_container(root)
    mode = probe.read_seccomp_mode(root)
    filtered = mode == "2"
    detail = (f"inside {runtime}" if runtime else "not in a container") + (
        "; this process already runs under a seccomp filter" if filtered else "")
    remedy = ("if namespaces fail, the runtime's filter is the cause: run it with a "
              "profile that allows unshare, clone3, mount, pivot_root" if filtered else "")
    return [Check("container", INFO if not filtered else WARN, detail, remedy)]


def check_seccomp(root: Path) -> list[Check]:
    actions = probe.read_seccomp_actions(root)
    if not actions:
        return [Check("seccomp", FAIL, "no seccomp filter support (actions_avail missing)",
                      "use a kernel built with CONFIG_SECCOMP_FILTER=y")]
    need = {"allow", "errno", "kill_process"}
    missing = sorted(need - actions)
    out = [Check("seccomp actions", FAIL if missing else OK, " ".join(sorted(actions)),
                 f"kernel lacks {', '.join(missing)}: upgrade to Linux 4.14+" if missing
                 else "")]
    out.append(Check("seccomp user notification", OK if "user_notif" in actions else INFO,
                     "available" if "user_notif" in actions else "not available",
                     "" if "user_notif" in actions else "needs Linux 5.0+"))
    return out


def check_landlock(abi: int | None) -> list[Check]:
    from isorun.compile.landlock import ABI_ADDS

    if abi is None:
        return []
    missing = [f"ABI {k}: {v}" for k, v in ABI_ADDS.items() if k > abi]
    data: dict[str, Any] = {"abi": abi, "levels": {str(k): v for k, v in ABI_ADDS.items()},
                            "missing": missing}
    if abi >= max(ABI_ADDS):
        return [Check("landlock", OK, f"ABI version {abi}: every rule of the Landlock layer "
                      "is enforced, and the landlock backend can run where user namespaces "
                      "cannot", data=data)]
    if abi > 0:
        return [Check("landlock", WARN, f"ABI version {abi}; lacks "
                      + "; ".join(missing), "a newer kernel (6.12+ for scoping)",
                      data=data)]
    return [Check("landlock", WARN, "not available: no Landlock layer, no landlock backend",
                  "boot with landlock in lsm= (e.g. lsm=landlock,lockdown,yama,apparmor)",
                  data=data)]


def check_cgroups(root: Path) -> list[Check]:
    state = probe.read_cgroups(root)
    if state.version == "none":
        return [Check("cgroups", WARN, "no cgroup filesystem mounted",
                      "mount cgroup2 on /sys/fs/cgroup; limits.memory/pids are refused")]
    out = []
    if state.v2_dir:
        # limits.memory and limits.pids need both controllers in our own v2 subtree
        missing = sorted({"memory", "pids"} - set(state.v2_controllers))
        good = state.v2_writable and not missing
        detail = (f"{state.v2_dir} is {'writable' if state.v2_writable else 'not writable'}"
                  f"; controllers: {' '.join(state.v2_controllers) or 'none'}")
        if missing:
            detail += f" (no {', '.join(missing)}"
            detail += ": held by cgroup v1)" if state.version == "hybrid" else ")"
        remedy = ("" if good else "run under a delegated scope with the controllers: "
                  "systemd-run --user --scope -p Delegate=yes isorun ...")
        out.append(Check("cgroup v2 delegation", OK if good else WARN, detail, remedy))
    if state.v1_controllers:
        out.append(Check("cgroup v1 controllers", INFO, " ".join(state.v1_controllers)))
    return out


def check_tools(facts: BackendFacts) -> list[Check]:
    out = []
    if facts.bwrap is None:
        out.append(Check("bwrap", WARN, "not installed", "apt-get install bubblewrap"))
    else:
        out.append(Check("bwrap", OK, f"{facts.bwrap.version} at {facts.bwrap.path}, "
                         + ("setuid" if facts.bwrap.setuid else "not setuid (needs user "
                            "namespaces)")))
    if facts.firejail is None:
        out.append(Check("firejail", INFO, "not installed", "apt-get install firejail"))
    else:
        users = ("" if facts.firejail_users is None else
                 f"; only users in firejail.users: {', '.join(sorted(facts.firejail_users))}")
        out.append(Check("firejail", OK if facts.firejail.setuid else WARN,
                         f"{facts.firejail.version} at {facts.firejail.path}, "
                         + ("setuid" if facts.firejail.setuid else "not setuid") + users,
                         "" if facts.firejail.setuid else f"chmod u+s {facts.firejail.path}"))
    from isorun.sandbox.backends import native_missing

    missing = native_missing(facts)
    if missing:
        out.append(Check("native shim", FAIL, missing,
                         "rebuild it: pip install --no-deps -e . (make shim)"))
    else:
        out.append(Check("native shim", OK, "loads"))
    return out


def check_backend(facts: BackendFacts, profile: str) -> list[Check]:
    """Run the real selection for ``profile``, keeping the reasons a verbose launch prints."""
    from isorun import api
    from isorun.sandbox.backends import select_backend

    reasons: list[str] = []
    try:
        plan = api.compile_plan(api.load_profile(profile), facts.host)
        backend, _ = select_backend(plan, "auto", facts, False, log=reasons.append)
    except Unsupported as err:
        remedy = "install a backend that enforces the profile, or pass --allow-weaker"
        if err.backend == "landlock" and not facts.userns.allowed:
            # Only the landlock backend runs here: what brings namespaces back comes first.
            remedy = (f"{facts.userns.fix}; or pass --allow-weaker to run in landlock mode "
                      "without the rules listed")
        return [Check(f"backend for {profile}", FAIL, "; ".join([*reasons, err.render()]),
                      remedy)]
    except HostError as err:
        return [Check(f"backend for {profile}", FAIL, "; ".join([*reasons, str(err)]),
                      err.fix)]
    except IsorunError as err:
        return [Check(f"backend for {profile}", FAIL, str(err))]
    checks = [Check(f"backend for {profile}", OK, f"auto selects {backend.name}: "
                    + "; ".join(r.removeprefix("isorun: ") for r in reasons))]
    try:
        api.check_limits(plan)
    except HostError as err:
        checks.append(Check(f"limits of {profile}", FAIL, str(err), err.fix))
    return checks


def diagnose(facts: BackendFacts | None = None, *, root: Path = Path("/"),
             clone: tuple[bool, str] | None = None, landlock: int | None = None,
             profile: str = "strict", live: bool = True) -> list[Check]:
    """All checks. ``live`` runs the probes that act (fork a child into a user namespace,
    call landlock_create_ruleset); tests pass recorded results and ``live=False``."""
    facts = probe.probe_backends() if facts is None else facts
    if live:
        clone = probe.try_userns_clone() if clone is None else clone
        landlock = probe.landlock_abi() if landlock is None else landlock
    return [*check_userns(facts, root, clone), *check_container(root), *check_seccomp(root),
            *check_landlock(landlock), *check_cgroups(root), *check_tools(facts),
            *check_backend(facts, profile)]


def render_text(checks: list[Check]) -> str:
    lines = []
    for check in checks:
        lines.append(f"[{check.status:>4}] {check.name}: {check.detail}")
        if check.remedy:
            lines.append(f"       fix: {check.remedy}")
    return "\n".join(lines)


def to_json(checks: list[Check]) -> list[dict[str, Any]]:
    return [{k: v for k, v in asdict(c).items() if k != "data" or v} for c in checks]


def exit_code(checks: list[Check]) -> int:
    """0 when nothing failed; 1 otherwise (scripts can gate on the doctor)."""
    return 1 if any(c.status == FAIL for c in checks) else 0
