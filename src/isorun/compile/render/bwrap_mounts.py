"""The mounts of a bwrap command line: each mount step's options, which binds bwrap is
given, and what the exec stage checks after it bound them.

bwrap resolves bind sources with realpath(3) and creates and mounts destinations by path,
following links, after isorun walked them (issue #12). :func:`elide_redundant` leaves out
the binds that would only give it that chance for nothing; :func:`expects` lists what the
stage inside checks at each destination against what the runner's walk found.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace

from isorun.compile import plan as p
from isorun.compile.render.invocation import Expect, Identity
from isorun.errors import InternalError

#: paths below a new procfs bound read-only over themselves, as the native shim does
#: (mount.c, do_proc): kernel-wide knobs a process with CAP_SYS_ADMIN in the sandbox's
#: user namespace could otherwise write. /proc/sys must exist; the others may not.
PROC_READ_ONLY = (("sys", True), ("sysrq-trigger", False), ("irq", False), ("bus", False))
#: mount step types that put a mount on their destination
MOUNTS = ("ro-bind", "rw-bind", "dev-bind", "tmpfs", "proc", "dev", "mqueue")
BINDS = ("ro-bind", "rw-bind", "dev-bind")


def beneath(path: str, top: str) -> bool:
    """Whether ``path`` is ``top`` or lies below it (both normalised, absolute)."""
    return top == "/" or path == top or path.startswith(top + "/")


def elide_redundant(plan: p.Plan, identities: Mapping[str, Identity]) -> p.Plan:
    """``plan`` less the binds that change nothing: a path bound onto itself, inside a
    bind of the same kind (ro in ro, rw in rw) of one of its ancestors onto itself, with
    no other mount between, both walked by the runner and found without a link. The outer
    bind (recursive) already shows that very path, with the same flags; the inner one
    would only make bwrap resolve, create and mount a destination inside a tree someone
    else may write (issue #12), for nothing. The common case: the test profile's
    ${PYTHON_PREFIX} when the virtual environment is in the project.
    """
    def plain(step: p.MountStep) -> bool:
        found = identities.get(step.src)
        return step.src == step.dst and found is not None and found[0] == step.src

    mounts: list[p.MountStep] = []
    keep: list[p.Step] = []
    for step in plan.steps:
        if isinstance(step, p.MountStep) and step.type in MOUNTS:
            cover = next((m for m in reversed(mounts)
                          if m.dst != step.dst and beneath(step.dst, m.dst)), None)
            if (cover is not None and step.type in ("ro-bind", "rw-bind")
                    and cover.type == step.type and cover.noexec == step.noexec
                    and plain(cover) and plain(step)):
                continue
            mounts.append(step)
        keep.append(step)
    if len(keep) == len(plan.steps):
        return plan
    return replace(plan, steps=tuple(keep))


def expects(plan: p.Plan, identities: Mapping[str, Identity]) -> list[Expect]:
    """The inner stage's checks: each bind whose source the runner walked must show, at
    its destination, the file walked. A bind a later mount covers (at it or above it) is
    left out: what is seen there is the later mount, checked on its own."""
    steps = [s for s in plan.steps if isinstance(s, p.MountStep) and s.type in MOUNTS]
    out: list[Expect] = []
    for root in plan.find(p.NewRoot):
        found = identities.get(root.path) if root.kind == "rootfs" else None
        if found is not None and not any(s.dst == "/" for s in steps):
            out.append(Expect("/", found[1], found[2]))
    for i, step in enumerate(steps):
        found = identities.get(step.src) if step.type in BINDS else None
        if found is None or any(beneath(step.dst, later.dst) for later in steps[i + 1:]):
            continue
        out.append(Expect(step.dst, found[1], found[2], readonly=step.type == "ro-bind"))
    return out


def mount_args(step: p.MountStep, files: Iterator[int],
           lose: Callable[[p.Step, str, str], None]) -> list[str]:
    """One mount step. Binds are recursive; bwrap adds nosuid to every bind and nodev to
    all but --dev-bind, matching the native shim's flags."""
    try_ = "-try" if step.optional else ""
    if step.noexec and step.type != "proc":
        lose(step, f"noexec on {step.dst}", "bwrap has no noexec mount option")
    match step.type:
        case "ro-bind":
            return [f"--ro-bind{try_}", step.src, step.dst]
        case "rw-bind":
            return [f"--bind{try_}", step.src, step.dst]
        case "dev-bind":
            return [f"--dev-bind{try_}", step.src, step.dst]
        case "tmpfs":
            out = ["--perms", f"{0o755 if step.mode is None else step.mode:04o}"]
            # --size only: bwrap has no inode limit, the size still bounds the data.
            if step.size:
                out += ["--size", str(step.size)]
            return [*out, "--tmpfs", step.dst]
        case "overlay":
            lose(step, step.describe(), "bwrap's --tmp-overlay keeps the changes on a tmpfs "
                 "it gives no size")
            return []
        case "mask":
            lose(step, step.describe(), "bwrap cannot hide a path whose type it learns only "
                 "at run time (--tmpfs fails on a file, a bind of /dev/null on a directory)")
            return []
        case "proc":
            out = ["--proc", step.dst]
            for name, required in PROC_READ_ONLY:
                # The source is the host's /proc (bwrap resolves bind sources in the old
                # root); these files answer for the reader's namespaces, not the mounter's.
                out += ["--ro-bind" if required else "--ro-bind-try", f"/proc/{name}",
                        os.path.join(step.dst, name)]
            return out
        case "dev":
            return ["--dev", step.dst]
        case "symlink":
            return ["--symlink", step.src, step.dst]
        case "file":
            fd = next(files, None)
            if fd is None:
                raise InternalError("bwrap: fewer file descriptors than file mounts")
            mode = 0o644 if step.mode is None else step.mode
            return ["--perms", f"{mode:04o}", "--file", str(fd), step.dst]
        case "dir":
            mode = 0o755 if step.mode is None else step.mode
            return ["--perms", f"{mode:04o}", "--dir", step.dst]
        case "mqueue":
            return ["--mqueue", step.dst]
    raise InternalError(f"bwrap: mount type {step.type!r} has no mapping")
