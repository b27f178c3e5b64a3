"""What bounds the memory a sandbox can take, mechanism by mechanism, and the worst case.

``explain`` prints these lines under the plan (issue #13): a limit per process reads like a
limit on the sandbox, and it is not one. Without a cgroup the kernel counts no process's
shared memory (shmem), tmpfs pages or kernel memory against a per-process rlimit except
where a mapping makes it address space, so each channel is named with what closes it:

* private memory: RLIMIT_DATA (``limits.data``), per process;
* every mapping, shared anonymous and memfd or SysV mappings included: RLIMIT_AS
  (``limits.address_space``), per process;
* a memfd that nothing maps: only its descriptor keeps it, so only refusing
  ``memfd_create`` bounds it (a seccomp rule; programs fall back to ``/dev/shm``);
* SysV segments outlive every process attached to them: a seccomp rule on ``shmget``'s
  size times the new IPC namespace's ``shmmni``;
* tmpfs mounts: their sizes;
* kernel memory (pipe and socket buffers, SysV message queues, page tables): nothing but a
  cgroup.

Pure: reads the plan's steps only.
"""

from __future__ import annotations

from isorun.compile import plan as p

#: kernel.shmmni of a new IPC namespace (ipc/shm.c, SHMMNI): segments it can hold; only
#: the namespace's uid 0 may raise it, and the sandbox's processes are not that uid
SHMMNI = 4096
#: kernel.msgmni x kernel.msgmnb of a new IPC namespace (ipc/msg.c): SysV message queue
#: bytes, kernel memory no rlimit counts
MSG_BYTES = 32000 * 16384
#: mounts whose pages are a tmpfs of the mount's size
_TMPFS_TYPES = ("tmpfs", "dev", "overlay")


def _size(size: int) -> str:
    """A byte count for reading (1g, 344m, 500m), rounded down to the unit."""
    for unit, factor in (("t", 1 << 40), ("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if size >= factor:
            whole = size / factor
            return f"{whole:.0f}{unit}" if whole >= 10 or size % factor == 0 else \
                f"{whole:.1f}{unit}"
    return f"{size}"


def _seccomp_rules(plan: p.Plan) -> tuple[bool, int | None]:
    """(memfd_create refused, largest SysV segment shmget allows or None) by the filter."""
    loads = plan.find(p.LoadSeccomp)
    if not loads:
        return False, None
    memfd, shm = False, None
    for rule in loads[0].policy.rules:
        if rule.action.kind == "allow" or rule.when is not None:
            continue
        if "memfd_create" in rule.syscalls and not rule.args:
            memfd = True
        if "shmget" in rule.syscalls and len(rule.args) == 1:
            cond = rule.args[0]
            if cond.index == 1 and cond.op in ("gt", "ge"):
                top = cond.value if cond.op == "gt" else cond.value - 1
                shm = top if shm is None else min(shm, top)
    return memfd, shm


def describe_memory(plan: p.Plan) -> list[str]:
    """The lines of ``explain``'s memory summary: each mechanism, what it covers, what it
    does not, and the worst case in all."""
    cgroup = plan.find(p.Cgroup)
    memory = cgroup[0].memory if cgroup else None
    clone = plan.find(p.Clone)
    own_ipc = bool(clone) and "ipc" in clone[0].namespaces
    lines = ["memory:"]
    if memory:
        lines.append(f"  the whole sandbox: limits.memory {_size(memory)} (cgroup memory.max: "
                     "private, shared, tmpfs, page cache and kernel memory alike); the "
                     "bounds below apply inside it")
    #: the worst case of each mechanism that has no bound of its own
    worst: list[str] = []
    _describe_processes(plan, lines, worst)
    _describe_shared(plan, own_ipc, lines, worst)
    _describe_tmpfs(plan, lines, worst)
    lines.append("  not counted by any rlimit: kernel memory (pipe and socket buffers, "
                 + (f"SysV message queues up to {_size(MSG_BYTES)}, " if own_ipc else
                    "SysV message queues, ")
                 + "page tables); only a cgroup (limits.memory) counts it")
    if memory:
        lines.append(f"  worst case: {_size(memory)} (limits.memory)")
    else:
        lines.append("  worst case: " + " + ".join(worst) + ", plus kernel memory")
    return lines


def _describe_processes(plan: p.Plan, lines: list[str], worst: list[str]) -> None:
    """Memory per process (RLIMIT_DATA, RLIMIT_AS) times the number of processes."""
    limits = {r.resource: r.value for r in plan.find(p.Rlimit)}
    cgroup = plan.find(p.Cgroup)
    pids = cgroup[0].pids if cgroup else None
    data, space = limits.get("data"), limits.get("address_space")
    nproc = limits.get("nproc")
    procs = min(x for x in (nproc, pids) if x) if (nproc or pids) else None
    lines.append("  private memory per process: " + (
        f"limits.data {_size(data)} (RLIMIT_DATA)" if data else "not bounded (no limits.data)"))
    if space:
        lines.append(f"  every mapping per process: limits.address_space {_size(space)} "
                     "(RLIMIT_AS: private, shared anonymous, memfd, SysV and file mappings, "
                     "reservations too)")
    else:
        lines.append("  shared memory per process (MAP_SHARED|MAP_ANONYMOUS, memfd and SysV "
                     "mappings): not bounded (no limits.address_space; limits.data counts "
                     "private memory only)")
    per_process = space or data
    if procs and per_process:
        lines.append(f"  processes: {procs} (RLIMIT_NPROC or cgroup pids.max), so mappings "
                     f"in all up to {procs} x {_size(per_process)} = "
                     f"{_size(procs * per_process)}")
        worst.append(_size(procs * per_process) if space else "unbounded shared memory")
    else:
        lines.append("  processes: not bounded (no limits.nproc or limits.pids), nor the "
                     "memory of all of them")
        worst.append("unbounded")


def _describe_shared(plan: p.Plan, own_ipc: bool, lines: list[str], worst: list[str]) -> None:
    """memfd and SysV shared memory: what the seccomp rules and the IPC namespace bound."""
    memfd, shm = _seccomp_rules(plan)
    if memfd:
        lines.append("  memfd: memfd_create refused (ENOSYS; programs fall back to /dev/shm)")
    else:
        lines.append("  memfd: allowed; a memfd no process maps is counted by no rlimit "
                     "(any size, as many as descriptors)")
        worst.append("unbounded memfd")
    where = "the sandbox's own IPC namespace" if own_ipc else "the host's IPC namespace " \
        "(they outlive the sandbox)"
    if shm is not None and own_ipc:
        lines.append(f"  SysV shared memory: segments of at most {_size(shm)} (shmget "
                     f"refuses more: EINVAL), {SHMMNI} in {where}: up to "
                     f"{_size(shm * SHMMNI)}")
        worst.append(_size(shm * SHMMNI))
    else:
        lines.append(f"  SysV shared memory: segments of any size in {where}, detached "
                     "ones counted by no rlimit")
        worst.append("unbounded SysV")


def _describe_tmpfs(plan: p.Plan, lines: list[str], worst: list[str]) -> None:
    """The tmpfs mounts (root, /dev, overlays included) and their sizes."""
    tmpfs = [(r.path or "/", r.size) for r in plan.find(p.NewRoot) if r.kind == "tmpfs"]
    tmpfs += [(m.dst, m.size) for m in plan.find(p.MountStep) if m.type in _TMPFS_TYPES]
    if tmpfs:
        sized = [size for _, size in tmpfs if size]
        total = _size(sum(sized)) if len(sized) == len(tmpfs) else "unbounded"
        lines.append("  tmpfs: " + ", ".join(f"{dst} {_size(size) if size else 'no size'}"
                                             for dst, size in tmpfs) + f": {total} in all")
        worst.append(total)
