"""What a failed sandbox start says: the parent's own failed steps, and the child's failure
record (:func:`isorun.sandbox.parent.parse_failure`) turned into the domain error, with the
link that was refused or the directory the sandbox's user cannot walk.

Imported only when something failed, so the warm launch never loads it.
"""

from __future__ import annotations

import os

from isorun.errors import SandboxSetupError
from isorun.kernel.abi import MS_RDONLY, NOBODY
from isorun.sandbox.record import MOUNT
from isorun.sandbox.shim_ffi import load_shim, resolve_in_parent
from isorun.sandbox.spec import MountKind

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from isorun.sandbox.parent import Failure, Record

EACCES, ELOOP = 13, 40


def setup_error(
    record: Record, step: str, syscall: str, errno: int, detail: str = ""
) -> SandboxSetupError:
    """A failed parent-side step, tied to its plan step through ``step_index``."""
    return SandboxSetupError(
        step, syscall, errno, detail=detail, step_index=record["step_index"].get(step, -1)
    )



def mount_name(kind: int, flags: int) -> str:
    """The profile's word for a mount of the record (ro-bind, rw-bind, ...)."""
    if kind in (MountKind.BIND, MountKind.TREE):
        return "ro-bind" if flags & MS_RDONLY else "rw-bind"
    return MountKind(kind).name.lower().replace("_", "-")



def link_refused(record: Record, mount: tuple[Any, ...], link: bytes) -> SandboxSetupError:
    """The refusal of a mount whose path goes through ``link``, a symbolic link that the
    sandbox's side could have written: what, which link, where it points, how to fix."""
    try:
        target = f" (to {os.fsdecode(os.readlink(link))})"
    except OSError:
        target = ""  # gone again: the message still names it
    kind, dst, src, flags = mount[:4]
    # The rootfs directory (filesystem.root) travels as a mount of src at "/".
    step = "root" if dst == b"/" and src == record["root"] else "mount"
    what = ("root" if step == "root" else
            f"{mount_name(kind, flags)} {os.fsdecode(dst)}"
            + (f" from {os.fsdecode(src)}" if src != dst else ""))  # fmt: skip
    detail = (f"{what}: {os.fsdecode(link)} is a symbolic link{target}, which isorun does"
              " not follow (docs/security.md)")  # fmt: skip
    err = setup_error(record, step, "openat", ELOOP, detail)
    err.step_index = mount[MOUNT.step]
    err.hint = "remove the link, or bind its target explicitly"
    return err



def failure_error(record: Record, failure: Failure) -> SandboxSetupError:
    """The domain error for a child's failure, with its plan step index when known."""
    step, syscall, errno, index = failure
    if index < 0:
        index = record["step_index"].get(step, -1)
    if step == "root" and errno == ELOOP and record["root"] not in (b"", b"tmpfs"):
        fd, path = resolve_in_parent(load_shim(), record["root"])
        if fd >= 0:
            os.close(fd)
        else:
            root = (MountKind.BIND, b"/", record["root"], 0, b"", 0o755, False, index, -1)
            return link_refused(record, root, path)
    detail = ""
    if step == "mount" and index >= 0:
        for mount in record["mounts"]:
            kind, dst, src, mount_step = (mount[MOUNT.kind], mount[MOUNT.dst],
                                          mount[MOUNT.src], mount[MOUNT.step])  # fmt: skip
            if mount_step == index and errno == ELOOP:
                return _link_error(record, mount)
            if mount_step == index:
                detail = f"{MountKind(kind).name.lower()} {os.fsdecode(dst)}"
                if src and kind != MountKind.FILE:
                    detail += f" from {os.fsdecode(src)}"
                if errno == EACCES:
                    hint = closed_to_sandbox_hint(os.fsdecode(dst))
                    if hint:
                        return SandboxSetupError(step, syscall, errno, detail=detail,
                                                 step_index=index, hint=hint)  # fmt: skip
                break
    return SandboxSetupError(step, syscall, errno, detail=detail, step_index=index)



def closed_to_sandbox_hint(dst: str) -> str:
    """As root, the hint for a mount point the sandbox cannot reach: its user is uid
    65534 (host root is never mapped in), and a root-owned directory on the way that
    others may not search (tox makes ``.tox`` 0700) stops the mkdir or walk; "" when
    no such directory is found."""
    if os.geteuid() != 0:
        return ""
    path = os.path.dirname(dst.rstrip("/")) or "/"
    closed = ""
    while True:
        try:
            st = os.stat(path)
        except OSError:
            st = None
        if st is not None and st.st_uid != NOBODY and not st.st_mode & 0o001:
            # The innermost: a closed directory above the binds the launcher resolves as
            # root; one inside a bound tree (.tox under the project) the sandbox walks.
            closed = path
            break
        if path == "/":
            break
        path = os.path.dirname(path)
    if not closed:
        return ""
    return (f"{closed} is mode {os.stat(closed).st_mode & 0o777:04o}: the sandbox runs as "
            "uid 65534 when you are root (host root is never mapped in) and cannot walk "
            f"it to mount {dst}; allow it with `chmod o+x {closed}` (tox creates .tox "
            "0700), or run isorun as the user who owns the project")  # fmt: skip



def _link_error(record: Record, mount: tuple[Any, ...]) -> SandboxSetupError:
    """The child met a link in a mount's path (mount.c refuses every one): say which.
    Either the source has one the parent refuses too (planted after its check), or the
    link is in the destination, inside a directory an earlier mount of this sandbox
    brought in from the host."""
    kind, dst, src, flags = mount[:4]
    if kind in (MountKind.BIND, MountKind.DEV_BIND, MountKind.TREE):
        fd, path = resolve_in_parent(load_shim(), src)
        if fd >= 0:
            os.close(fd)
        elif fd == -ELOOP:
            return link_refused(record, mount, path)
    err = setup_error(record, "mount", "openat", ELOOP,
                      f"{mount_name(kind, flags)} {os.fsdecode(dst)}: a symbolic link in"
                      f" {os.fsdecode(dst)} inside the sandbox, which isorun does not follow"
                      " (docs/security.md)")  # fmt: skip
    err.step_index = mount[MOUNT.step]
    err.hint = ("remove the link (it lies in a directory an earlier mount brought in), or"
                " mount at the path it points to")
    return err

