"""The mount paths of a plan, checked on the host before a wrapper backend runs it.

bwrap 0.8 and firejail 0.9.72 resolve mount paths themselves, by path, following links
(bwrap: realpath(3) of each bind source, then mkdir and mount(2) of the destination under
its new root; firejail: realpath(3) of each --read-only/--read-write path), so a link the
sandbox's side planted in a project would take a mount wherever it points (issue #12).
Here, before the launch:

* every bind source is walked without following an untrusted link (safepath.py): a planted
  link is refused with the profile line, the link and its target; a missing optional
  source is dropped from the plan, so the wrapper never looks at that path again;
* the identity of each source (device, inode) goes to the exec stage, which checks inside
  the sandbox, before the command, that each mount shows what was walked: a link swapped
  in after the walk stops the run (compile/render/bwrap.py, compile/render/firejail.py);
* for bwrap, every destination whose path runs through a directory someone other than
  root can change is refused (:func:`unsafe_destination`): there bwrap would create the
  destination through a swapped-in link, on the host, before any check could run.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field, replace

from isorun.compile import plan as p
from isorun.compile.render.bwrap_mounts import BINDS, MOUNTS, beneath, elide_redundant
from isorun.compile.render.invocation import Identity
from isorun.errors import HostError
from isorun.sandbox import safepath


@dataclass(frozen=True, slots=True)
class Checked:
    """A plan whose mount sources were walked."""

    #: the plan, less the optional binds whose source does not exist
    plan: p.Plan
    #: bind source (as written in the plan) -> what the walk found there
    identities: dict[str, Identity] = field(default_factory=dict)


def _where(step: p.MountStep | p.NewRoot) -> str:
    return f"{step.loc.short()}: {step.describe()}"


def check_sources(plan: p.Plan, *, launch: bool = True) -> Checked:
    """Walk every bind source and a rootfs of ``plan``.

    Raises :class:`~isorun.sandbox.safepath.SymlinkRefused` (naming the mount's profile
    line) for a planted link, and at ``launch`` :class:`HostError` for a required source
    that is missing (at selection that is for the launch to report, on any backend).
    """
    identities: dict[str, Identity] = {}
    steps: list[p.Step] = []
    for step in plan.steps:
        source = ""
        if isinstance(step, p.MountStep) and step.type in BINDS:
            source = step.src
        elif isinstance(step, p.NewRoot) and step.kind == "rootfs":
            source = step.path
        if not source:
            steps.append(step)
            continue
        assert isinstance(step, p.MountStep | p.NewRoot)
        try:
            found = safepath.probe(source)
        except safepath.SymlinkRefused as err:
            raise err.with_what(_where(step)) from None
        except FileNotFoundError:
            if isinstance(step, p.MountStep) and step.optional:
                continue  # as the wrapper's -try would, but decided once, here
            if not launch:
                steps.append(step)
                continue
            raise HostError(_where(step), f"{source} does not exist",
                            "create it, or mark the mount optional = true") from None
        except OSError as err:
            # Fail closed: a bind without an identity would get no check inside, and the
            # wrapper would resolve the path on its own (EACCES, ENOTDIR mid-swap, ...).
            raise HostError(_where(step), f"{source} cannot be checked: "
                            f"{os.strerror(err.errno or 0)}",
                            "make the path readable by the caller, or remove the "
                            "mount") from None
        identities[source] = (found.path, found.dev, found.ino)
        steps.append(step)
    if len(steps) != len(plan.steps):
        plan = replace(plan, steps=tuple(steps))
    return Checked(plan, identities)


def _ancestors(path: str) -> list[str]:
    """The proper ancestors of an absolute path, from "/" down."""
    parts = [c for c in path.split("/") if c]
    return ["/" + "/".join(parts[:i]) for i in range(len(parts))]


def _host_dir(top: str, host: str, path: str) -> str:
    rest = path[len(top):] if top != "/" else path
    return (host.rstrip("/") + "/" + rest.lstrip("/")).rstrip("/") or "/"


def _describe_untrusted(host: str) -> str:
    """Why nobody but root can be trusted not to change ``host``'s entries, or ""."""
    try:
        found = safepath.probe(host)
    except safepath.SymlinkRefused as err:
        return f"reached through the link {err.link} -> {err.target!r}"
    except FileNotFoundError:
        return "missing (bwrap would create it, and so could someone else)"
    except OSError as err:
        return f"not checkable ({os.strerror(err.errno or 0)})"
    st = os.stat_result((found.mode, found.ino, found.dev, 0, found.uid, 0, 0, 0, 0, 0))
    if safepath.trusted_dir(st):
        return ""
    if not stat.S_ISDIR(found.mode):
        return "not a directory"
    if found.uid != 0:
        return f"owned by uid {found.uid}"
    return f"writable by group or others (mode {stat.S_IMODE(found.mode):04o})"


def unsafe_destination(checked: Checked) -> tuple[str, str]:
    """("", "") when bwrap can make every destination of the plan safely, else (why, fix)
    for the first that it cannot.

    bwrap makes each destination by path under its new root: mkdir of the missing parents
    and the mount point, then mount(2), all following links. Each ancestor of a
    destination lies on whichever mount covers it there: a tmpfs, procfs or /dev bwrap
    made itself (nobody else writes those before the command runs), or a bind of a host
    directory, whose entries anyone who can write that directory can swap for a link at
    any moment. So every such host directory must be one only root can change, which the
    sandbox never is. A link swapped in there would make bwrap create directories and
    files on the host and mount over them (its old root is still reachable during the
    set-up), before any check inside could stop it: refused.
    """
    identities = checked.identities
    covers: list[tuple[str, str | None]] = []  # (destination, host directory bound there)
    if not checked.plan.find(p.NewRoot):
        covers.append(("/", "/"))  # filesystem.root = "host": --dev-bind / / first
    verdicts: dict[str, str] = {}
    # what render_bwrap hands to bwrap: an elided bind is never made
    for step in elide_redundant(checked.plan, identities).steps:
        if isinstance(step, p.NewRoot):
            found = identities.get(step.path) if step.kind == "rootfs" else None
            covers.append(("/", found[0] if found else None))
            continue
        if not isinstance(step, p.MountStep):
            continue
        for ancestor in _ancestors(step.dst):
            top, host = next(((d, h) for d, h in reversed(covers) if beneath(ancestor, d)),
                             ("/", None))
            if host is None:
                continue
            where = _host_dir(top, host, ancestor)
            if where not in verdicts:
                verdicts[where] = _describe_untrusted(where)
            if verdicts[where]:
                return (f"{_where(step)}: bwrap 0.8 creates and mounts {step.dst} by path, "
                        f"following links, inside {ancestor}, which is {where} on the host, "
                        f"{verdicts[where]}: a link put there after isorun's check would "
                        f"redirect it, onto the host too",
                        f"use --backend native (or auto), which opens every destination "
                        f"without following links; or make {where} owned by root and not "
                        f"writable by group or others")
        if step.type in MOUNTS:
            found = identities.get(step.src) if step.type in BINDS else None
            covers.append((step.dst, found[0] if found else
                           None if step.type not in BINDS else step.src))
    return "", ""
