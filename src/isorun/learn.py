"""Learn mode: derive a minimal seccomp profile from what a command really does.

The command runs in the sandbox of a base profile (namespaces, mounts, capabilities as
usual) with one extra seccomp filter whose answer is SECCOMP_RET_USER_NOTIF. The launcher
takes its listener (shim/notify.c) and a C loop records every notified call (name,
architecture, the arguments rules look at) and lets it run with
SECCOMP_USER_NOTIF_FLAG_CONTINUE. Filters are inherited by every child and thread, so
the whole process tree is covered. Modes:

- ``learn``: every call is notified; the output allows exactly what was seen.
- ``widen``: only what the base would refuse is notified; the output extends the base
  with the smallest extra allow rules.
- ``check``: like ``widen``, but nothing is written: the refused calls are the result (a
  ratchet for CI).

While learning (``learn``/``widen``) the base's hardening rules stay *enforced* by an
ordinary filter under the notifying one: the kernel gives ERRNO precedence over
USER_NOTIF (seccomp(2), "ordering of actions"), so those calls fail as they will under
the learned profile (clone3 gets ENOSYS and libc falls back to clone, whose flags we can
read) and are not recorded. ``check`` loads no enforcing filter: it observes every call
the profile would refuse, lets it run, and lists it.

User notification has a TOCTOU hole for decisions on pointer arguments (seccomp_unotify(2)
NOTES): irrelevant here, since every call continues and paths read from the command's
memory are only reported as suggestions, never decided on.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import struct
import subprocess
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from isorun.compile import argspace, syscalls
from isorun.compile.plan import LoadSeccomp, MountStep, Plan, WallTime
from isorun.errors import DEFAULT_LOC, IsorunError, UsageError
from isorun.profile.schema import Action, ArgCond, Profile, Seccomp, SeccompRule

Mode = Literal["learn", "widen", "check"]

#: linux/seccomp.h; the action the notifying filter answers with
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_RET_ERRNO = 0x00050000
BPF_RET_K = 0x06
BPF_LD_W_ABS = 0x20
BPF_JEQ_K = 0x15
#: an errno no rule uses: the observing filter is compiled with it for every refusal and
#: its ``ret`` instructions are then rewritten to USER_NOTIF (see observing_filter)
SENTINEL_ERRNO = 4094
#: AUDIT_ARCH_* (linux/audit.h) by our architecture name
AUDIT_ARCH = {"x86_64": 0xC000003E, "i386": 0x40000003, "aarch64": 0xC00000B7}
X32_BIT = 0x40000000

#: every CLONE_NEW* bit (CLONE_NEWTIME shares its value with CSIGNAL's range but is only
#: meaningful to unshare and clone3; keeping it in the mask costs nothing)
NS_MASK = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 \
    | 0x40000000 | 0x00000080
U32 = 0xFFFFFFFF
#: the arguments a learned rule conditions on: name -> (index, mask, what it is). These
#: are the arguments Docker's default profile and isorun's hardening look at; 32-bit
#: values are compared on their low 32 bits, as the kernel truncates them
#: (CVE-2019-10063).
KEY_ARGS: dict[str, tuple[int, int, str]] = {
    "socket": (0, U32, "family"),
    "socketpair": (0, U32, "family"),
    "personality": (0, U32, "persona"),
    "clone": (0, NS_MASK, "namespace flags"),
    "unshare": (0, NS_MASK, "namespace flags"),
    "ioctl": (1, U32, "request"),
}
#: calls whose memory arguments are read for suggestions: name -> (kind, ptr, len arg)
MEM_ARGS: dict[str, tuple[int, int, int]] = {
    "open": (1, 0, 0), "creat": (1, 0, 0), "openat": (1, 1, 0), "openat2": (1, 1, 0),
    "execve": (1, 0, 0), "execveat": (1, 1, 0),
    "connect": (2, 1, 2), "bind": (2, 1, 2), "sendto": (2, 4, 5),
}
FAMILIES = {0: "AF_UNSPEC", 1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK",
            17: "AF_PACKET", 40: "AF_VSOCK"}
#: the line of a learned profile that carries its observation, so --merge can fold it
MARKER = "# isorun-learn: "


class LearnError(IsorunError):
    """Learning could not produce a trustworthy result (incomplete record, bad input)."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class Call:
    """One distinct call: syscall name, architecture, the key argument (reduced by the
    mask of :data:`KEY_ARGS`, None for other syscalls) and how often it was made."""

    name: str
    arch: str
    key: int | None
    count: int


@dataclass(frozen=True, slots=True)
class Observation:
    """What one or more runs did: the input of every renderer here."""

    base: str
    mode: Mode
    commands: tuple[tuple[str, ...], ...]
    calls: tuple[Call, ...]
    #: (syscall, path) of the open/exec family, and how often
    paths: tuple[tuple[str, str, int], ...] = ()
    #: (syscall, address) of connect/bind/sendto, and how often
    addresses: tuple[tuple[str, str, int], ...] = ()
    total: int = 0
    returncode: int = 0
    #: what the command wrote when observe() was asked to capture it (not merged, not saved)
    output: tuple[bytes | None, bytes | None] = dataclasses.field(
        default=(None, None), compare=False, repr=False)


# ----------------------------------------------------------------------- filters


def observing_filter(policy: Seccomp, *, arch: str = "native") -> bytes:
    """The base policy's filter with every refusal turned into USER_NOTIF.

    Compiled by the ordinary compiler with each refusing action replaced by a sentinel
    errno, so the decisions (argument conditions, precedence, hardening) are exactly the
    base's; only the ``ret`` instructions carrying the sentinel are rewritten. clone3's
    hardening ENOSYS is kept: it is what the learned profile answers too.
    """
    from isorun.compile.seccomp import compile_seccomp

    sentinel = Action("errno", SENTINEL_ERRNO)

    def refuse(action: Action) -> Action:
        return action if action.kind == "allow" else sentinel

    rules = tuple(dataclasses.replace(r, action=refuse(r.action)) for r in policy.rules)
    marked = dataclasses.replace(policy, default_action=refuse(policy.default_action),
                                 unknown_action=refuse(policy.unknown_action),
                                 deny_action=sentinel, rules=rules)
    program = compile_seccomp(marked, arch=arch).bpf
    # execve is always notified: the listener is O_CLOEXEC, so an execve the base allows
    # would run before the launcher took the listener, and the closed listener would then
    # answer every later notification with ENOSYS. Waiting on the notified execve is what
    # makes the hand-over race-free (see shim/notify.c). Prepended; BPF jumps are relative.
    native = _native_arch() if arch == "native" else arch
    execve = syscalls.table(native)["execve"]
    head = b"".join(struct.pack("=HBBI", *insn) for insn in (
        (BPF_LD_W_ABS, 0, 0, 4),                     # A = seccomp_data.arch
        (BPF_JEQ_K, 0, 3, AUDIT_ARCH[native]),       # other ABI: the base program decides
        (BPF_LD_W_ABS, 0, 0, 0),                     # A = seccomp_data.nr
        (BPF_JEQ_K, 0, 1, execve),
        (BPF_RET_K, 0, 0, SECCOMP_RET_USER_NOTIF),
    ))
    out = bytearray(head + program)
    want = SECCOMP_RET_ERRNO | SENTINEL_ERRNO
    for off in range(0, len(out), 8):
        code, _jt, _jf, k = struct.unpack_from("=HBBI", out, off)
        if code == BPF_RET_K and k == want:
            struct.pack_into("=HBBI", out, off, code, 0, 0, SECCOMP_RET_USER_NOTIF)
    return bytes(out)


def notify_everything() -> bytes:
    """One instruction: every call of every architecture goes to the supervisor."""
    return struct.pack("=HBBI", BPF_RET_K, 0, 0, SECCOMP_RET_USER_NOTIF)


def hardening_filter(policy: Seccomp) -> bytes:
    """Only the base's hardening, everything else allowed: enforced while learning."""
    from isorun.compile.seccomp import compile_seccomp

    if not policy.enabled or not policy.hardening:
        return b""
    only = Seccomp(default_action=Action("allow"), unknown_action=Action("allow"),
                   deny_action=policy.deny_action, architectures=policy.architectures,
                   hardening=True)
    return compile_seccomp(only).bpf


# ----------------------------------------------------------------------- running


def _native_arch() -> str:
    machine = os.uname().machine
    return "x86_64" if machine == "x86_64" else machine


def _arch_tables(native: str) -> dict[int, dict[int, str]]:
    """AUDIT_ARCH -> number -> name (x32 numbers carry X32_BIT in the x86_64 arch)."""
    out: dict[int, dict[int, str]] = {}
    for name in syscalls.arches():
        audit = AUDIT_ARCH.get("x86_64" if name == "x32" else name)
        if audit is None:
            continue
        table = out.setdefault(audit, {})
        for sc, nr in syscalls.table(name).items():
            table.setdefault(nr, sc)
    return out


def _tables_for_supervisor(native: str) -> tuple[bytes, tuple[int, ...]]:
    table = syscalls.table(native)
    size = max(table.values()) + 1
    mask = bytearray(size)
    mem = [0] * size
    for name, (index, _m, _w) in KEY_ARGS.items():
        if name in table:
            mask[table[name]] |= 1 << index
    for name, (kind, ptr, length) in MEM_ARGS.items():
        if name in table:
            mem[table[name]] = kind | (ptr << 8) | (length << 12)
    return bytes(mask), tuple(mem)


def _policy_of(plan: Plan, profile: Profile) -> Seccomp:
    found = plan.find(LoadSeccomp)
    return found[0].policy if found else dataclasses.replace(profile.seccomp, enabled=False)


def observe(argv: Sequence[str], base: str = "strict", mode: Mode = "learn", *,
            env: Mapping[str, str] | None = None, stdin: Any = None, stdout: Any = None,
            stderr: Any = None, timeout: float | None = None) -> Observation:
    """Run ``argv`` in ``base``'s sandbox under a notifying filter and record it."""
    from isorun import api
    from isorun.sandbox import _shim, native, process

    if mode not in ("learn", "widen", "check"):
        raise UsageError(f"unknown learn mode {mode!r}")
    profile = api.load_profile(base)
    plan = api.compile_plan(profile)
    policy = _policy_of(plan, profile)
    arch = _native_arch()
    if mode == "learn" or not policy.enabled:
        notify = notify_everything()
    else:
        notify = observing_filter(policy)
    enforce = hardening_filter(policy) if mode != "check" else b""
    spec = native.build_spec(plan, list(argv), os.environ if env is None else env, enforce)
    spec = dataclasses.replace(spec, seccomp_bpf=enforce, notify_bpf=notify)
    argmask, mem = _tables_for_supervisor(arch)
    stop_r, stop_w = os.pipe2(os.O_CLOEXEC)
    box: dict[str, Any] = {}

    def supervise(listener: int) -> None:
        try:
            box["result"] = _shim.supervise(listener, stop_r, AUDIT_ARCH[arch], argmask, mem)
        except BaseException as err:  # re-raised in the caller's thread
            box["error"] = err
        finally:
            os.close(listener)

    def start(listener: int) -> None:
        thread = threading.Thread(target=supervise, args=(listener,), daemon=True,
                                  name="isorun-learn")
        box["thread"] = thread
        thread.start()

    wall = plan.find(WallTime)
    try:
        proc = process.spawn(spec, stdin=stdin, stdout=stdout, stderr=stderr,
                             wall_time=wall[0].seconds if wall else timeout,
                             on_listener=start)
        try:
            if stdout == subprocess.PIPE or stderr == subprocess.PIPE:
                out, err = proc.communicate(None, timeout)
                box["stdout"], box["stderr"] = out, err
            returncode = proc.wait(timeout)
        finally:
            proc.close()
        thread = box.get("thread")
        if thread is not None:
            # The supervisor ends by itself once every filtered process was reaped
            # (EPOLLHUP); an orphan outside a pid namespace could outlive pid 1, so stop it.
            thread.join(5.0)
            if thread.is_alive():
                os.write(stop_w, b"x")
                thread.join(5.0)
    finally:
        os.close(stop_r)
        os.close(stop_w)
    if "error" in box:
        raise LearnError(f"the supervisor failed: {box['error']}") from box["error"]
    if "result" not in box:
        raise LearnError("the command never reached execve, nothing was observed")
    result: _shim.Supervised = box["result"]
    if result.table_full:
        # Fail closed: a profile from a partial record would refuse what we did not keep.
        raise LearnError("too many distinct calls for the record table; nothing written")
    obs = _to_observation(result, base, mode, tuple(argv), arch, returncode)
    return dataclasses.replace(obs, output=(box.get("stdout"), box.get("stderr")))


def _to_observation(result: Any, base: str, mode: Mode, argv: tuple[str, ...], arch: str,
                    returncode: int) -> Observation:
    tables = _arch_tables(arch)
    counts: Counter[tuple[str, str, int | None]] = Counter()
    for c in result.calls:
        if c.arch == AUDIT_ARCH.get("x86_64") and c.nr & X32_BIT:
            arch_name = "x32"
        else:
            arch_name = next((a for a, v in AUDIT_ARCH.items() if v == c.arch), hex(c.arch))
        name = tables.get(c.arch, {}).get(c.nr, f"nr{c.nr}")
        key = None
        if name in KEY_ARGS and arch_name == arch:
            index, mask, _what = KEY_ARGS[name]
            key = c.args[index] & mask
        counts[(name, arch_name, key)] += c.count
    calls = tuple(Call(n, a, k, v) for (n, a, k), v in sorted(
        counts.items(), key=lambda kv: (kv[0][0], kv[0][1], -1 if kv[0][2] is None else kv[0][2])))
    table = syscalls.table(arch)
    names = {nr: n for n, nr in table.items()}
    paths: Counter[tuple[str, str]] = Counter()
    addrs: Counter[tuple[str, str]] = Counter()
    for e in result.events:
        sc = names.get(e.nr, f"nr{e.nr}")
        if MEM_ARGS.get(sc, (0, 0, 0))[0] == 1:
            paths[(sc, os.fsdecode(e.data))] += e.count
        else:
            addrs[(sc, format_sockaddr(e.data))] += e.count
    return Observation(base, mode, (argv,), calls,
                       tuple((s, p, n) for (s, p), n in sorted(paths.items())),
                       tuple((s, a, n) for (s, a), n in sorted(addrs.items())),
                       result.total, returncode)


def format_sockaddr(data: bytes) -> str:
    """A readable socket address: ``inet 127.0.0.1:80``, ``unix /run/x``, ``inet6 [::1]:443``."""
    if len(data) < 2:
        return "?"
    family = struct.unpack_from("=H", data)[0]
    if family == 2 and len(data) >= 8:
        port = struct.unpack_from("!H", data, 2)[0]
        return f"inet {'.'.join(str(b) for b in data[4:8])}:{port}"
    if family == 10 and len(data) >= 24:
        import ipaddress

        port = struct.unpack_from("!H", data, 2)[0]
        return f"inet6 [{ipaddress.IPv6Address(bytes(data[8:24]))}]:{port}"
    if family == 1:
        path = data[2:]
        if path[:1] == b"\0":
            return "unix @" + os.fsdecode(path[1:].split(b"\0", 1)[0])
        return "unix " + os.fsdecode(path.split(b"\0", 1)[0])
    return FAMILIES.get(family, f"family {family}")


# ----------------------------------------------------------------------- merging


def merge(observations: Sequence[Observation]) -> Observation:
    """Fold runs into one observation (counts add up); all must share base and mode."""
    if not observations:
        raise UsageError("nothing to merge")
    first = observations[0]
    for o in observations[1:]:
        if (o.base, o.mode) != (first.base, first.mode):
            raise UsageError(
                f"cannot merge a {o.mode} run over {o.base!r} with a {first.mode} run over"
                f" {first.base!r}\n  hint: learn every run with the same --profile and mode")
    calls: Counter[tuple[str, str, int | None]] = Counter()
    paths: Counter[tuple[str, str]] = Counter()
    addrs: Counter[tuple[str, str]] = Counter()
    for o in observations:
        for c in o.calls:
            calls[(c.name, c.arch, c.key)] += c.count
        for s, p, n in o.paths:
            paths[(s, p)] += n
        for s, a, n in o.addresses:
            addrs[(s, a)] += n
    return Observation(
        first.base, first.mode, tuple(cmd for o in observations for cmd in o.commands),
        tuple(Call(n, a, k, v) for (n, a, k), v in sorted(
            calls.items(), key=lambda kv: (kv[0][0], kv[0][1], -1 if kv[0][2] is None
                                           else kv[0][2]))),
        tuple((s, p, n) for (s, p), n in sorted(paths.items())),
        tuple((s, a, n) for (s, a), n in sorted(addrs.items())),
        sum(o.total for o in observations),
        max((o.returncode for o in observations), default=0))


def to_json(obs: Observation) -> str:
    """One line of JSON, embedded in the learned profile for ``--merge``."""
    return json.dumps({
        "base": obs.base, "mode": obs.mode, "commands": [list(c) for c in obs.commands],
        "calls": [[c.name, c.arch, c.key, c.count] for c in obs.calls],
        "paths": [list(p) for p in obs.paths], "addresses": [list(a) for a in obs.addresses],
        "total": obs.total, "returncode": obs.returncode}, separators=(",", ":"))


def read_learned(path: str) -> Observation:
    """The observation a learned profile carries (its :data:`MARKER` line)."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise UsageError(f"--merge {path}: {err.strerror}") from err
    for line in text.splitlines():
        if line.startswith(MARKER):
            raw = json.loads(line[len(MARKER):])
            return Observation(
                raw["base"], raw["mode"], tuple(tuple(c) for c in raw["commands"]),
                tuple(Call(n, a, k, v) for n, a, k, v in raw["calls"]),
                tuple((s, p, n) for s, p, n in raw["paths"]),
                tuple((s, a, n) for s, a, n in raw["addresses"]),
                raw["total"], raw["returncode"])
    raise UsageError(f"--merge {path}: not a profile written by `isorun learn` (no"
                     f" {MARKER.strip()!r} line)\n  hint: merge only files that isorun learn"
                     " wrote; re-learn the others")


# ----------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class Learned:
    """The seccomp additions of a learned profile and what could not be granted."""

    allow: tuple[str, ...]
    rules: tuple[SeccompRule, ...]
    architectures: tuple[str, ...]
    #: lines for the person: calls seen but not granted, and why
    notes: tuple[str, ...]


def _describe_key(name: str, key: int) -> str:
    what = KEY_ARGS[name][2]
    if what == "family":
        return f"{what} {FAMILIES.get(key, key)}"
    return f"{what} {key:#x}"


def _refusers(policy: Seccomp) -> dict[str, str]:
    """Syscalls the base refuses on purpose (deny list, refusing rules, hardening)."""
    from isorun.compile.seccomp import HARDENING_DENY

    out: dict[str, str] = {}
    if policy.hardening:
        out |= {n: "seccomp.hardening" for n in (*HARDENING_DENY, "clone3")}
    for item in policy.deny:
        out |= {n: "seccomp.deny" for n in syscalls.expand(item)}
    for n, rule in enumerate(policy.rules):
        if rule.action.kind != "allow" and not rule.args and rule.when is None:
            out |= {s: f"seccomp.rules[{n}]" for s in (
                name for item in rule.syscalls for name in syscalls.expand(item))}
    return out


def learned_rules(obs: Observation, policy: Seccomp) -> Learned:
    """Allow names and conditioned allow rules covering every observed call."""
    native = _native_arch()
    refused = _refusers(policy)
    allow: set[str] = set()
    keyed: dict[tuple[str, int], int] = {}
    arches = set(policy.architectures)
    notes: list[str] = []
    for c in obs.calls:
        if c.name.startswith("nr"):
            notes.append(f"{c.name} ({c.arch}, {c.count}x): not in isorun's syscall table;"
                         " cannot be allowed by name")
            continue
        if c.name in refused:
            notes.append(f"{c.name} ({c.count}x): refused on purpose by the base's"
                         f" {refused[c.name]}; not granted, edit the profile by hand if"
                         " it is really needed")
            continue
        if c.arch != native:
            arches.add(c.arch)
        if c.key is not None:
            keyed[(c.name, c.key)] = keyed.get((c.name, c.key), 0) + c.count
        else:
            allow.add(c.name)
    rules = []
    for (name, key), count in sorted(keyed.items()):
        index, mask, _what = KEY_ARGS[name]
        rules.append(SeccompRule((name,), Action("allow"),
                                 (ArgCond(index, "masked_eq", key, mask),),
                                 f"learned: {_describe_key(name, key)}, {count}x"))
    ordered = tuple(a for a in ("native", "x86_64", "x32", "i386", "aarch64") if a in arches)
    return Learned(tuple(sorted(allow)), tuple(rules), ordered, tuple(notes))


def docker_default_count(arch: str = "x86_64") -> int:
    """How many of ``arch``'s syscalls Docker's default profile allows by name."""
    return len(syscalls.expand("@docker-default") & set(syscalls.table(arch)))


def outside_mounts(obs: Observation, plan: Plan) -> tuple[str, ...]:
    """Absolute paths the command opened that no mount of the plan covers."""
    dsts = [m.dst.rstrip("/") or "/" for m in plan.find(MountStep)]
    out = []
    for _sc, path, _n in obs.paths:
        if not path.startswith("/"):
            continue
        if not any(path == d or path.startswith(d + "/") or d == "/" for d in dsts):
            out.append(path)
    return tuple(sorted(set(out)))


def _base_ref(base: str, out_path: str | None) -> str:
    from isorun.profile.includes import is_path

    if not is_path(base):
        return base
    return os.path.abspath(base) if out_path is None else os.path.relpath(
        os.path.abspath(base), os.path.dirname(os.path.abspath(out_path)))


def render_profile(obs: Observation, *, out_path: str | None = None,
                   grant_fs: bool = False) -> tuple[str, Learned]:
    """The learned profile as TOML text, and what went into it."""
    from isorun import __version__, api
    from isorun.compile.docker_import import render_toml

    if obs.mode == "check":
        raise UsageError("a --check run produces a verdict, not a profile")
    profile = api.load_profile(obs.base)
    plan = api.compile_plan(profile)
    policy = _policy_of(plan, profile)
    if obs.mode == "widen":
        # execve is notified even when allowed (see observing_filter): keep what the base
        # refuses only.
        obs = dataclasses.replace(obs, calls=tuple(r.call for r in refusals(obs)))
    learned = learned_rules(obs, policy)
    counts = Counter[str]()
    for c in obs.calls:
        counts[c.name] += c.count
    header = [f"Learned by `isorun learn` (isorun {__version__}), mode {obs.mode}, base"
              f" {obs.base}, from {len(obs.commands)} run(s):"]
    # A newline inside an argument would end the comment: show it escaped.
    header += [f"  {shlex.join(cmd)}".replace("\n", "\\n") for cmd in obs.commands]
    n_allowed = len(learned.allow) + len({r.syscalls[0] for r in learned.rules})
    if obs.mode == "learn":
        header.append(f"{n_allowed} syscalls allowed ({len(learned.rules)} rules with argument"
                      f" conditions); Docker's default allows {docker_default_count()}.")
    else:
        header.append(f"{n_allowed} syscalls added to what {obs.base} allows.")
    header.append(f"{obs.total} calls observed. Counts: " + ", ".join(
        f"{n} {v}" for n, v in counts.most_common()))
    header += [f"not granted: {n}" for n in learned.notes]
    outside = outside_mounts(obs, plan)
    if outside:
        verb = "granted read-only (--grant-fs)" if grant_fs else "suggestion, not granted"
        header.append(f"paths opened outside the mounts ({verb}): " + " ".join(outside))
    if obs.addresses:
        header.append("addresses used (suggestion, not granted): " + ", ".join(
            f"{s} {a}" for s, a, _n in obs.addresses))
    lines = [f"# {line}" for h in header for line in h.splitlines()]
    lines.append(MARKER + to_json(obs))
    lines.append(f"extends = [{json.dumps(_base_ref(obs.base, out_path))}]")
    if obs.mode == "learn":
        # The base's grants are replaced; its refusing rules are carried over below.
        lines.append('override = ["seccomp.allow", "seccomp.rules"]')
        kept = tuple(r for r in policy.rules if r.action.kind != "allow")
        seccomp = dataclasses.replace(
            policy, allow=learned.allow, rules=(*kept, *learned.rules),
            architectures=learned.architectures or policy.architectures)
    else:
        seccomp = dataclasses.replace(
            policy, allow=learned.allow, rules=learned.rules, deny=(),
            architectures=learned.architectures or policy.architectures)
    if grant_fs:
        for path in outside:
            if os.path.exists(path):
                lines += ["", "[[mounts]]", 'type = "ro-bind"', f"dst = {json.dumps(path)}",
                          "optional = true"]
    lines.append("")
    lines.append(render_toml(seccomp).rstrip("\n"))
    return "\n".join(lines) + "\n", learned


#: What a container engine's runtime itself calls between loading the filter and the
#: command's execve; the filter applies to it too, so a Docker export must allow these or
#: the container never starts (runc then fails with "cannot start a container that has
#: stopped"). Measured on podman 4.3.1 + runc 1.1.5 (Debian 12) by running a learned
#: profile with defaultAction SCMP_ACT_LOG and reading the audit records (type=1326) of
#: comm "runc:[2:INIT]": fcntl, fstatfs, epoll_ctl, fstat, chdir, setgroups, capget,
#: capset (podman does not set no_new_privs, so runc loads the filter before it drops
#: capabilities and changes ids). The rest are what runc's Go runtime threads may call at
#: any moment (scheduler, signals, memory), so a lucky run does not hide them. openat and
#: getdents64: runc closes the descriptors it must not leak by listing /proc/self/fd after
#: the filter is in place ("error closing exec fds" otherwise), which went unseen while
#: the learned command itself happened to open directories.
RUNTIME_SYSCALLS = (
    "fcntl", "fstatfs", "epoll_ctl", "fstat", "chdir", "setgroups", "capget", "capset",
    "openat", "getdents64",
    "prctl", "newfstatat", "epoll_pwait", "futex", "nanosleep", "sched_yield",
    "getpid", "gettid", "tgkill", "rt_sigreturn", "rt_sigprocmask", "sigaltstack", "mmap",
    "munmap", "madvise", "read", "write", "close", "exit", "exit_group", "execve",
)


def export_docker_json(toml_path: str, *, runtime: bool = True) -> str:
    """Docker JSON of a learned profile, through the same loader and exporter as any.

    ``runtime`` adds :data:`RUNTIME_SYSCALLS` (the engine's own needs, not the command's).
    """
    from isorun import api
    from isorun.compile.docker import export_docker

    profile = api.load_profile(toml_path)
    policy = _policy_of(api.compile_plan(profile), profile)
    if runtime:
        extra = tuple(n for n in RUNTIME_SYSCALLS if n not in policy.allow)
        policy = dataclasses.replace(policy, allow=(*policy.allow, *extra))
    return export_docker(policy, arch=_native_arch())


def allowed_count(profile_spec: str) -> int:
    """Syscalls of the host's table that a profile allows for at least some arguments."""
    from isorun import api
    from isorun.compile.seccomp import Context, plan_rules

    profile = api.load_profile(profile_spec)
    policy = _policy_of(api.compile_plan(profile), profile)
    rules, _ = plan_rules(policy, (_native_arch(),), Context(arch=_native_arch()))
    return len({r.syscall for r in rules if r.action == "allow"})


# ----------------------------------------------------------------------- check


@dataclass(frozen=True, slots=True)
class Refusal:
    """A call the profile would have refused, and which rule refuses it."""

    call: Call
    action: str
    origin: str

    def render(self) -> str:
        key = f" ({_describe_key(self.call.name, self.call.key)})" \
            if self.call.key is not None else ""
        arch = f" [{self.call.arch}]" if self.call.arch != _native_arch() else ""
        return (f"{self.call.name}{arch}{key}: {self.call.count}x, answered {self.action}"
                f" by {self.origin}")


def refusals(obs: Observation) -> tuple[Refusal, ...]:
    """Each observed call of a check run with the base's answer and the rule behind it."""
    from isorun import api
    from isorun.compile.seccomp import build_entries

    profile = api.load_profile(obs.base)
    policy = _policy_of(api.compile_plan(profile), profile)
    entries, _ = build_entries(policy)
    out = []
    for c in obs.calls:
        args = [0] * 6
        if c.key is not None:
            args[KEY_ARGS[c.name][0]] = c.key
        action, origin = str(policy.default_action), "seccomp.default_action"
        if c.name.startswith("nr"):
            action, origin = str(policy.unknown_action), "seccomp.unknown_action"
        elif c.arch not in (_native_arch(), *policy.architectures):
            action, origin = "kill_process", "seccomp.architectures"
        for entry in entries.get(c.name, []):
            if argspace.contains(entry.region, tuple(args)):
                action = str(entry.action)
                where = f" ({entry.loc.short()})" if entry.loc != DEFAULT_LOC else ""
                origin = entry.origin + where
                break
        if action != "allow":
            out.append(Refusal(c, action, origin))
    return tuple(out)


def run_quietly(argv: Sequence[str], profile: str,
                timeout: float = 60) -> tuple[int, bytes, bytes]:
    """Run under a profile with the normal (enforcing) launch path; for tests and bench."""
    from isorun import api

    result = api.run(list(argv), profile=profile, capture_output=True, timeout=timeout)
    return result.returncode, result.stdout, result.stderr
