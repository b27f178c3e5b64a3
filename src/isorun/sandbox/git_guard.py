"""The .git guard's second half (issue #13) for launches through :class:`isorun.api.Popen`
(every backend); shim/launcher/git_guard.c does the same for the ``isorun`` command's front end.

Over a writable bind with no ``.git``, nothing can be mounted (a mount needs a mount point,
and making one would write the caller's directory), so the sandbox may create one, and git
on the host, run there later, would find it before any repository above and run its
config (``core.fsmonitor``) and hooks as the caller. Each guard whose source is missing
at the start is looked at again once the sandbox has ended (with a pid namespace, every
process of it ended with its pid 1), and a ``.git`` that appeared is moved aside by name
(``renameat2(RENAME_NOREPLACE)`` never follows it), with a warning.

A guard is what :func:`isorun.compile.exposure.add_git_guards` makes, recognised by
shape as the C side does: an optional read-only bind from a ``.git`` to a ``.git``.

Below each guard's directory (a writable bind's source), a nested ``.git`` the run created
or changed, and a ``.pth`` it wrote into a virtual environment, are shim/planted.c's
(:func:`walk_planted`): one definition of that rule, in C, for both front ends.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from typing import Any

from isorun.kernel.abi import MS_RDONLY
from isorun.sandbox.record import MOUNT_KINDS

TYPE_CHECKING = False
if TYPE_CHECKING:
    from isorun.compile import plan as p

RENAME_NOREPLACE = 1
#: <linux/time.h>; the time module does not name it
CLOCK_REALTIME_COARSE = 5


def is_git_guard(step: p.MountStep) -> bool:
    """An optional read-only bind from a ``.git`` to a ``.git``: only such a name is ever
    moved aside."""
    return (step.type == "ro-bind" and step.optional and os.path.basename(step.src) == ".git"
            and os.path.basename(step.dst) == ".git")


def since() -> int:
    """The launch's start for :func:`walk_planted`, read before the sandbox can write: the
    coarse clock lags file times and never leads them, so nothing the run wrote is older."""
    import time

    return time.clock_gettime_ns(CLOCK_REALTIME_COARSE)


def all_guards(steps: Iterable[p.MountStep]) -> tuple[str, ...]:
    """The sources of every .git guard among ``steps``, present or not."""
    return tuple(s.src for s in steps if is_git_guard(s))


def all_in_record(mounts: Iterable[tuple[Any, ...]]) -> tuple[str, ...]:
    """:func:`all_guards` for a launch record's mounts (see :func:`missing_in_record`)."""
    return tuple(os.fsdecode(src) for kind, dst, src, flags, _data, _mode, optional, *_
                 in mounts if _record_guard(kind, dst, src, flags, optional))


def walk_planted(guards: Iterable[str], since_ns: int) -> list[str]:
    """Once the sandbox has ended, below each guard's directory: the messages of
    shim/planted.c's walk, one string per bind that had something to say."""
    from isorun.sandbox import _shim

    notes = []
    for guard in guards:
        text = _shim.planted_walk(os.path.dirname(guard) or "/", since_ns)
        if text:
            notes.append(text.rstrip("\n"))
    return notes


def missing_guards(steps: Iterable[p.MountStep]) -> tuple[str, ...]:
    """The sources of the .git guards among ``steps`` that do not exist now."""
    return tuple(s.src for s in steps if is_git_guard(s) and not os.path.lexists(s.src))


def missing_in_record(mounts: Iterable[tuple[Any, ...]]) -> tuple[str, ...]:
    """:func:`missing_guards` for a launch record's mounts (the warm path, which has no
    plan): kind, dst, src, flags, data, mode, optional, ... as spec_record makes them."""
    return tuple(os.fsdecode(src) for kind, dst, src, flags, _data, _mode, optional, *_
                 in mounts if _record_guard(kind, dst, src, flags, optional)
                 and not os.path.lexists(src))


def _record_guard(kind: int, dst: Any, src: Any, flags: int, optional: Any) -> bool:
    return bool(kind == MOUNT_KINDS["BIND"] and optional and flags & MS_RDONLY
                and os.path.basename(os.fsdecode(src)) == ".git"
                and os.path.basename(os.fsdecode(dst)) == ".git")


def _rename_noreplace(src: str, dst: str) -> None:
    import ctypes  # only here: a .git appeared, which is rare and not the launch path

    libc = ctypes.CDLL(None, use_errno=True)
    at_fdcwd = -100
    if libc.renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst),
                      RENAME_NOREPLACE) < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), src)


def quarantine(missing: Iterable[str]) -> list[str]:
    """Move aside each of ``missing`` that exists now; the messages to show, one each."""
    notes = []
    for path in missing:
        if not os.path.lexists(path):
            continue
        error: OSError | None = None
        for k in range(100):
            target = f"{path}.isorun-quarantine-{os.getpid()}-{k}"
            try:
                _rename_noreplace(path, target)
                error = None
                break
            except OSError as err:
                error = err
                if err.errno != errno.EEXIST:
                    break
        if error is None:
            notes.append(f"isorun: warning: the sandbox created {path} where there was "
                         "none; git on the host would run its config and hooks as you "
                         f"there. Moved to {target}\n"
                         "  hint: inspect it as untrusted output, then delete it")
        else:
            notes.append(f"isorun: error: the sandbox created {path} where there was none, "
                         f"and it could not be moved aside: {error.strerror}\n"
                         "  hint: delete it before running git in that directory")
    return notes
