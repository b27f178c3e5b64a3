"""Whether this pytest runs inside the sandbox its launcher built, by kernel facts.

A variable alone cannot say so: tox ``setenv``, direnv or pytest-env set variables, and
``ISORUN_PYTEST_INNER=test pytest --isorun`` once ran the suite on the host. So the
launcher (``pytest --isorun`` or ``isorun pytest``) opens its own user namespace
(``/proc/self/ns/user``) and hands that descriptor to the sandbox at :data:`NS_FD`
(``process.pass_fds`` of the session profile). Inside, the descriptor names a namespace
(nsfs) other than the process's own, and the process's own user namespace is not the
initial one (its ``uid_map`` is not the identity of all ids). A variable cannot open a
descriptor, and the host's pytest is in its launcher's namespace: the check fails there.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping

#: set inside a session sandbox (the profile's [environment] set): the profile's name
INNER = "ISORUN_PYTEST_INNER"
#: the option that lets a project's configuration loosen the session sandbox
#: (testing.trust judges it); here because the plugin declares it on every pytest start,
#: and this module is all the plugin imports of isorun until --isorun or a marker asks
TRUST_FLAG = "--isorun-trust-project"
#: the launcher's user namespace, handed to the sandbox at this number. Fixed, because the
#: session profile names it and is cached by its text; below the usual soft RLIMIT_NOFILE
#: of 1024 so the launcher can place it there.
NS_FD = 1009
#: /proc/self/uid_map of the initial user namespace: every id maps to itself
_INITIAL_UID_MAP = ["0", "0", "4294967295"]


def requested_profile(args: list[str], default: str) -> str | None:
    """The profile --isorun asks for, normalising a bare --isorun in ``args`` in place.

    Here, not in pytest_session: every pytest start asks, and only an --isorun session
    needs the session module.
    """
    profile = None
    for index, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--isorun":
            args[index] = f"--isorun={default}"
            profile = default
        elif arg.startswith("--isorun="):
            profile = arg.partition("=")[2] or default
    return profile


def strip_isorun(args: tuple[str, ...] | list[str]) -> list[str]:
    return [a for a in args if a != "--isorun" and not a.startswith("--isorun=")]


def hand_over_namespace() -> int:
    """Open this process's user namespace at :data:`NS_FD`, inheritable; returns NS_FD.

    Refuses (OSError EBUSY) when something else holds that number: replacing it would
    close a descriptor the caller uses.
    """
    import errno

    try:
        os.fstat(NS_FD)
    except OSError:
        pass
    else:
        raise OSError(errno.EBUSY, f"descriptor {NS_FD} is already open", "/proc/self/ns/user")
    fd = os.open("/proc/self/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.dup2(fd, NS_FD, inheritable=True)
    finally:
        os.close(fd)
    return NS_FD


def why_not_inside() -> str | None:
    """None when this process is inside a sandbox made by a launcher that handed over
    :data:`NS_FD`; else why not, for the refusal message."""
    try:
        handed = os.fstat(NS_FD)
    except OSError:
        return f"no descriptor {NS_FD} from an isorun launcher"
    try:
        own = os.stat("/proc/self/ns/user")
        with open("/proc/self/uid_map") as f:
            uid_map = f.read().split()
    except OSError as err:
        return f"cannot read its own namespaces in /proc: {err.strerror}"
    if handed.st_dev != own.st_dev:
        return f"descriptor {NS_FD} is not a namespace"
    if handed.st_ino == own.st_ino:
        return "it runs in its launcher's user namespace"
    if uid_map == _INITIAL_UID_MAP:
        return "it runs in the host's initial user namespace"
    return None


def release_namespace() -> None:
    """Close the handed-over descriptor once checked: the tests need not hold a
    reference to the launcher's namespace."""
    try:
        own = os.stat("/proc/self/ns/user")
        if os.fstat(NS_FD).st_dev == own.st_dev:
            os.close(NS_FD)
    except OSError:
        return


def refusal(reason: str) -> str:
    return (
        f"isorun: error: {INNER} is set, but this pytest is not inside an isorun sandbox "
        f"({reason}); refusing to run the suite unconfined\n"
        f"  hint: unset {INNER} (a tox setenv, direnv or pytest-env may set it); "
        "isorun pytest and pytest --isorun set it themselves inside the sandbox"
    )


#: distributions whose modules are the launcher itself: pytest, isorun and what they need
_OWN = frozenset({"pytest", "isorun"})


def host_modules(
    modules: Iterable[str], plugins: Mapping[str, str] | None = None
) -> list[str]:
    """The modules of ``modules`` (``sys.modules`` keys) that ran on the host and belong
    to neither the standard library nor pytest, isorun and their requirements, each as
    ``name (distribution, how it was loaded)``: what ran before the sandbox existed."""
    from importlib import metadata

    tops = sorted({m.partition(".")[0] for m in modules})
    tops = [t for t in tops if t not in sys.stdlib_module_names and t not in ("__main__",)]
    by_module = metadata.packages_distributions()
    own = _requirement_closure(_OWN)
    out = []
    for top in tops:
        dists = by_module.get(top, [])
        if top in ("isorun", "_pytest", "pytest", "py") or any(
            d.lower().replace("_", "-") in own for d in dists
        ):
            continue
        if top.startswith("_isorun") or top == "_cffi_backend":
            continue
        how = (plugins or {}).get(top, "")
        label = ", ".join(filter(None, [", ".join(dists), how])) or "no distribution"
        out.append(f"{top} ({label})")
    return out


def _requirement_closure(names: Iterable[str]) -> set[str]:
    """The distributions ``names`` need, transitively (normalised names)."""
    import re
    from importlib import metadata

    seen: set[str] = set()
    todo = [n.lower() for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for req in requires:
            if "extra ==" in req:
                continue
            match = re.match(r"[A-Za-z0-9._-]+", req)
            if match:
                todo.append(match.group(0).lower().replace("_", "-"))
    return seen
