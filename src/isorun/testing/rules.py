"""The rule a marked test broke, named in its failure: "connect() refused: network =
none (test profile)" instead of a bare ECONNREFUSED deep in a library's traceback."""

from __future__ import annotations

import errno
import os
import socket

from isorun.testing.plan import sandbox_ids

TYPE_CHECKING = False
if TYPE_CHECKING:
    from isorun.testing.sandbox import Policy


#: the session's writable paths, for messages only (set by the session profile)
WRITABLE_ENV = "ISORUN_PYTEST_WRITABLE"


def network_mode() -> str:
    """ "none" when this process sees only loopback (a sandbox's network namespace)."""
    names = {name for _, name in socket.if_nameindex()}
    return "none" if names <= {"lo"} else "host"


_NETWORK_ERRNOS = {
    errno.ENETUNREACH,
    errno.ECONNREFUSED,
    errno.EHOSTUNREACH,
    errno.EADDRNOTAVAIL,
    errno.ENETDOWN,
}


def explain(exc: BaseException, policy: Policy) -> str:
    """A line naming the sandbox rule behind ``exc`` (or its causes), or ""."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        rule = _rule_for(current, policy)
        if rule:
            # The location on the rule's line; a hint, if any, below it.
            what, hint, how = rule.partition("\n  hint: ")
            where = f"isorun: {what} ({policy.profile} profile, marker at {policy.where})"
            return f"{where}{hint}{how}"
        current = current.__cause__ or current.__context__
    return ""


def _rule_for(exc: BaseException, policy: Policy) -> str:
    if isinstance(exc, socket.gaierror) and policy.network == "none":
        return "name resolution failed: network = none, the sandbox has only loopback"
    if not isinstance(exc, OSError) or exc.errno is None:
        return ""
    name = f" {exc.filename}" if exc.filename else ""
    home = os.path.realpath(os.path.expanduser("~"))
    if exc.errno in _NETWORK_ERRNOS and policy.network == "none":
        return "connect() refused: network = none, the sandbox has only loopback"
    if exc.errno == errno.EROFS:
        session = os.environ.get("ISORUN_PYTEST_INNER") is not None
        if session:
            # The session's writable paths: the profile's and isorun_writable, which the
            # launcher names here (isorun.testing.profiles.session_profile_text).
            writable = [p for p in os.environ.get(WRITABLE_ENV, "").split(os.pathsep) if p]
            hint = (
                "add the path to isorun_writable in your pytest configuration (inside "
                "the project), or a [[mounts]] rw-bind to your own profile"
            )
        else:
            writable = list(policy.writable)
            hint = "add the path to the marker: @pytest.mark.isorun(writable=[...])"
        allowed = ", ".join(writable) or "nothing"
        return (
            f"write{name} refused: read-only file system outside writable = "
            f"[{allowed}] and the private /tmp and $HOME\n  hint: {hint}"
        )
    if exc.errno == errno.ENOENT and exc.filename and str(exc.filename).startswith(home):
        return f"{exc.filename} not found: $HOME is an empty private directory (secrets hidden)"
    if exc.errno == errno.ENOENT and exc.filename and policy.visible:
        path = os.path.abspath(os.fsdecode(exc.filename))
        if not any(path == v or path.startswith(v.rstrip("/") + "/") for v in policy.visible):
            return (
                f"{path} not found: outside the sandbox's root, which shows only the "
                "profile's mounts (isorun explain PROFILE lists them)"
            )
    if exc.errno == errno.EACCES and exc.filename and policy.writable:
        owned = _owner_refuses(os.path.abspath(os.fsdecode(exc.filename)), policy)
        if owned:
            return owned
    if exc.errno in (errno.EPERM, errno.EACCES):
        uid = sandbox_ids()[0]
        return (
            f"{errno.errorcode[exc.errno]}{name}: refused by the sandbox (seccomp filter, "
            f"no capabilities, running as uid {uid})"
        )
    return ""


def _owner_refuses(path: str, policy: Policy) -> str:
    """The ownership rule behind EACCES on a writable path, or "": the sandbox's user
    may not write the directory the kernel checked. Judged inside the sandbox, where a
    host owner that is not mapped (host root, for a root caller) shows as the overflow
    uid, so by access(2), not by the owner stat gives."""
    uid = sandbox_ids()[0]
    for top in policy.writable:
        if path != top and not path.startswith(top.rstrip("/") + "/"):
            continue
        checked = path if os.path.isdir(path) else os.path.dirname(path)
        if not os.path.exists(checked) or os.access(checked, os.W_OK):
            return ""
        return (
            f"write {path} refused: {checked} is not writable by uid {uid}, the sandbox's "
            "user (a root caller's sandbox runs as 65534, and host root is never mapped "
            "in); writable= binds a path, it does not change its owner\n"
            f"  hint: chown {uid} {checked} (or chmod o+w it), or run the suite as a "
            "normal user"
        )
    return ""
