"""Learn mode: derive a minimal seccomp profile from what a command really does.

The command runs in the sandbox of a base profile (namespaces, mounts, capabilities as
usual) with one extra seccomp filter whose answer is SECCOMP_RET_USER_NOTIF. The launcher
takes its listener (shim/child/notify.c) and a C loop records every notified call (name,
architecture, the arguments rules look at) and lets it run with
SECCOMP_USER_NOTIF_FLAG_CONTINUE. Filters are inherited by every child and thread, so
the whole process tree is covered. Modes:

- ``learn``: every call is notified; the output allows exactly what was seen.
- ``widen``: only what the base would refuse is notified; the output extends the base
  with the smallest extra allow rules.
- ``check``: like ``widen``, but nothing is written: the refused calls are the result (a
  ratchet for CI, which runs untrusted pull requests: the supervisor answers each refused
  call with the profile's errno, so it never runs).

While learning (``learn``/``widen``) the base's hardening rules stay *enforced* by an
ordinary filter under the notifying one: the kernel gives ERRNO precedence over
USER_NOTIF (seccomp(2), "ordering of actions"), so those calls fail as they will under
the learned profile (clone3 gets ENOSYS and libc falls back to clone, whose flags we can
read) and are not recorded. ``check`` loads no enforcing filter: every call the profile
refuses is notified, refused by the supervisor's answer and listed.

User notification has a TOCTOU hole for decisions on pointer arguments (seccomp_unotify(2)
NOTES): irrelevant here, since every call continues and paths read from the command's
memory are only reported as suggestions, never decided on.

This module observes (and merges and reads back observations); turning an observation into
a profile, a Docker export or a ``check`` verdict is the sibling :mod:`isorun.learn.profile`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import subprocess
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from isorun.compile.plan import LoadSeccomp, Plan, WallTime
from isorun.compile.refusals import AUDIT_ARCH
from isorun.errors import IsorunError, UsageError
from isorun.kernel import syscalls
from isorun.kernel.abi import NAMESPACE_FLAGS, X32_SYSCALL_BIT
from isorun.learn.filters import Mode, learn_filters, native_arch
from isorun.profile.schema import Profile, Seccomp

if TYPE_CHECKING:
    from isorun.sandbox._shim import Supervised

#: every CLONE_NEW* bit (CLONE_NEWTIME shares its value with CSIGNAL's range but is only
#: meaningful to unshare and clone3; keeping it in the mask costs nothing)
NS_MASK = sum(NAMESPACE_FLAGS.values())
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
    """What one or more runs did: the input of every renderer in :mod:`isorun.learn.profile`."""

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


def _arch_tables(native: str) -> dict[int, dict[int, str]]:
    """AUDIT_ARCH -> number -> name (x32 numbers carry X32_SYSCALL_BIT in the x86_64 arch)."""
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
    from isorun.sandbox import native, process

    if mode not in ("learn", "widen", "check"):
        raise UsageError(f"unknown learn mode {mode!r}")
    profile = api.load_profile(base)
    plan = api.compile_plan(profile)
    policy = _policy_of(plan, profile)
    arch = native_arch()
    notify, enforce, answers = learn_filters(policy, mode, arch)
    spec = native.build_spec(plan, list(argv), os.environ if env is None else env, enforce)
    spec = dataclasses.replace(spec, seccomp_bpf=enforce, notify_bpf=notify)
    supervisor = _Supervisor(arch, answers)
    wall = plan.find(WallTime)
    # --timeout and the profile's wall_time are one limit, the smaller: the timer kills the
    # whole sandbox (exit 124) and what was observed until then is still learned. Waiting
    # with a timeout of its own as well would race the timer into a TimeoutExpired.
    limits = [s for s in (wall[0].seconds if wall else None, timeout) if s is not None]
    try:
        proc = process.spawn(spec, stdin=stdin, stdout=stdout, stderr=stderr,
                             wall_time=min(limits) if limits else None,
                             on_listener=supervisor.start)
        output: tuple[Any, Any] = (None, None)
        try:
            if stdout == subprocess.PIPE or stderr == subprocess.PIPE:
                output = proc.communicate(None)
            returncode = proc.wait()
        finally:
            proc.close()
        supervisor.join()
    finally:
        supervisor.close()
    result = supervisor.result()
    obs = _to_observation(result, base, mode, tuple(argv), arch, returncode)
    return dataclasses.replace(obs, output=output)


class _Supervisor:
    """The thread that answers the learn-mode listener (shim supervise), from the moment
    spawn hands the listener over until every filtered process is gone."""

    def __init__(self, arch: str, answers: tuple[tuple[int, ...], int]) -> None:
        self.argmask, self.mem = _tables_for_supervisor(arch)
        self.audit_arch = AUDIT_ARCH[arch]
        self.answer, self.answer_other = answers
        self.stop_r, self.stop_w = os.pipe2(os.O_CLOEXEC)
        self.thread: threading.Thread | None = None
        self.supervised: Supervised | None = None
        self.error: BaseException | None = None

    def start(self, listener: int) -> None:
        """spawn's ``on_listener``: answer ``listener`` from now on (the caller owns it)."""
        self.thread = threading.Thread(target=self._supervise, args=(listener,), daemon=True,
                                       name="isorun-learn")
        self.thread.start()

    def _supervise(self, listener: int) -> None:
        from isorun.sandbox import _shim

        try:
            self.supervised = _shim.supervise(listener, self.stop_r, self.audit_arch,
                                              self.argmask, self.mem, answer=self.answer,
                                              answer_other=self.answer_other)
        except BaseException as err:  # re-raised in the caller's thread
            self.error = err
        finally:
            os.close(listener)

    def join(self) -> None:
        if self.thread is not None:
            # The supervisor ends by itself once every filtered process was reaped
            # (EPOLLHUP); an orphan outside a pid namespace could outlive pid 1, so stop it.
            self.thread.join(5.0)
            if self.thread.is_alive():
                os.write(self.stop_w, b"x")
                self.thread.join(5.0)

    def close(self) -> None:
        os.close(self.stop_r)
        os.close(self.stop_w)

    def result(self) -> Supervised:
        """What the supervisor recorded; a LearnError when that is not a whole record."""
        if self.error is not None:
            raise LearnError(f"the supervisor failed: {self.error}") from self.error
        if self.supervised is None:
            raise LearnError("the command never reached execve, nothing was observed")
        if self.supervised.table_full:
            # Fail closed: a profile from a partial record would refuse what we did not keep.
            raise LearnError("too many distinct calls for the record table; nothing written")
        return self.supervised


def _to_observation(result: Any, base: str, mode: Mode, argv: tuple[str, ...], arch: str,
                    returncode: int) -> Observation:
    tables = _arch_tables(arch)
    counts: Counter[tuple[str, str, int | None]] = Counter()
    for c in result.calls:
        if c.arch == AUDIT_ARCH.get("x86_64") and c.nr & X32_SYSCALL_BIT:
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


def run_quietly(argv: Sequence[str], profile: str,
                timeout: float = 60) -> tuple[int, bytes, bytes]:
    """Run under a profile with the normal (enforcing) launch path; for tests and bench."""
    from isorun import api

    result = api.run(list(argv), profile=profile, capture_output=True, timeout=timeout)
    return result.returncode, result.stdout, result.stderr
