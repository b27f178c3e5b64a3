"""What a plan's binds would expose of the caller, and the mounts that keep it hidden.

Three rules, applied by the planner after the mounts are resolved (issue #13):

* The working directory policy: a bind written with ``${CWD}`` whose source is ``/``, the
  caller's home or one of its ancestors, or a shared temporary directory is refused. Those
  are where ``isorun`` lands when started from a systemd unit, cron or a bare login shell,
  and binding them hands the sandbox every secret of the caller.
* Credential masks: every credential location of :data:`CREDENTIALS` (and the ssh-agent
  socket) that a bind would show inside gets a ``mask`` mount over it, unless the profile
  names that path itself (a bind of it or below it, or any mount at it).
* ``.git`` stays read-only under a writable bind: git runs hooks and reads config from
  there on the host, so a sandbox that could write them would run code outside later.

Pure: paths come from the plan's variables, and whether a path exists is decided by the
shim at run time (a ``mask`` or an ``optional`` bind of a missing path does nothing), so a
cached plan stays right when ``~/.ssh`` appears later.
"""

from __future__ import annotations

import os

from isorun.compile import plan as p
from isorun.errors import DEFAULT_LOC, Diagnostic
from isorun.kernel.abi import NOBODY
from isorun.profile import schema

#: credential locations relative to the caller's home: keys, tokens, agent sockets and
#: browser profiles (saved passwords and session cookies)
CREDENTIALS = (
    ".ssh", ".gnupg", ".aws", ".azure", ".config/gcloud", ".kube", ".docker", ".netrc",
    # git's credential store, at both places it looks (git-credential-store(1)), and
    # podman's registry logins where no runtime directory holds them (containers-auth.json(5))
    ".git-credentials", ".config/git/credentials", ".config/containers/auth.json",
    ".pypirc", ".npmrc", ".password-store", ".local/share/keyrings",
    ".config/gh", ".config/hub", ".cargo/credentials", ".cargo/credentials.toml",
    ".gem/credentials", ".terraform.d", ".vault-token", ".pgpass", ".my.cnf", ".s3cfg",
    ".boto", ".mozilla", ".config/google-chrome", ".config/chromium",
    ".config/BraveSoftware", ".thunderbird",
)
#: directories shared by every user of the host: a working directory there is no project
SHARED_DIRS = ("/", "/tmp", "/var/tmp", "/dev/shm", "/home", "/root")
#: the runtime directories of services and sessions: a read-only bind does not stop
#: connect(2) to a unix socket (the mount's read-only flag covers files, directories and
#: links only), so a bind of one of these hands the sandbox the D-Bus buses, docker.sock
#: and the session's agents (/run/user/UID), wherever it lies below them
RUNTIME_DIRS = ("/run", "/var/run")
#: the bind types: what they show inside comes from the host
BIND_TYPES = ("ro-bind", "rw-bind", "dev-bind", "overlay")
CWD_HINT = ("cd into the project directory first, or bind the directory you mean "
            "explicitly in your own profile (a literal src, which isorun does not refuse)")


def _under(path: str, top: str) -> bool:
    """``path`` is ``top`` or lies below it."""
    return path == top or top == "/" or path.startswith(top.rstrip("/") + "/")


def _ancestors(path: str) -> list[str]:
    out: list[str] = []
    while True:
        parent = os.path.dirname(path)
        if parent == path:
            return out
        out.append(parent)
        path = parent


def unsafe_cwd(cwd: str, home: str) -> str:
    """Why ``cwd`` must not be bound as a project directory, or "" when it may."""
    if any(_under(cwd, top) for top in RUNTIME_DIRS):
        return "in a runtime directory, where service and session sockets live"
    return _shared_or_home(cwd, home)


def _shared_or_home(cwd: str, home: str) -> str:
    if cwd == home:
        return "your home directory"
    if cwd in _ancestors(home):
        return "an ancestor of your home directory"
    if cwd in SHARED_DIRS:
        return "the root directory" if cwd == "/" else "a directory shared by every user"
    return ""


def homes(variables: dict[str, str]) -> list[str]:
    """The caller's homes: ``$HOME`` and the password database's, when they differ (a
    service unit or a test may set HOME=/tmp/x while ~/.ssh lies in the passwd home)."""
    out = [variables.get("HOME", ""), variables.get("PASSWD_HOME", "")]
    return [h for i, h in enumerate(out) if h.startswith("/") and h not in out[:i]]


def check_cwd(profile: schema.Profile, variables: dict[str, str],
              errors: list[Diagnostic]) -> None:
    """Refuse a bind of ``${CWD}`` itself when the working directory is no project."""
    cwd = variables.get("CWD", "")
    # the reason that names a home first: /root is also one of the shared directories
    reasons = sorted((unsafe_cwd(cwd, home) for home in homes(variables) or [""] if cwd),
                     key=lambda why: "home" not in why)
    why = next((r for r in reasons if r), "")
    if not why:
        return
    for mount in profile.mounts:
        raw = mount.src if mount.type in BIND_TYPES and mount.src else mount.dst
        if mount.type in BIND_TYPES and os.path.normpath(raw.replace("${CWD}", "/CWD")) == "/CWD":
            errors.append(Diagnostic(
                mount.loc, f"the working directory {cwd} is {why}: this {mount.type} of "
                "${CWD} would give the sandbox everything in it (keys, tokens, other "
                "projects)", CWD_HINT))
            return


def credential_paths(variables: dict[str, str]) -> list[tuple[str, str]]:
    """(host path, what it is) of every credential location of this caller, in each of
    its homes."""
    out = [(os.path.join(home, rel), "credential location") for home in homes(variables)
           for rel in CREDENTIALS]
    agent = variables.get("SSH_AUTH_SOCK", "")
    if agent.startswith("/"):
        out.append((agent, "ssh-agent socket"))
        folder = os.path.dirname(agent)
        # Its directory too (ssh-agent makes one per agent), unless that is a directory
        # everybody shares or a home: masking those would hide far more than the agent.
        if not any(_shared_or_home(folder, home) for home in homes(variables) or [""]):
            out.append((folder, "ssh-agent directory"))
    return out


def add_masks(mounts: list[p.MountStep], root: str,
              variables: dict[str, str]) -> list[p.MountStep]:
    """``mounts`` plus a ``mask`` for each credential location a bind would show.

    ``root`` is the rootfs directory of a NewRoot ("" for a tmpfs root): a rootfs shows
    its whole tree, like a bind of it at ``/``.
    """
    sources = [(m.src, m.dst, f"{m.type} {m.dst}", m.loc) for m in mounts
               if m.type in BIND_TYPES]
    if root:
        sources.insert(0, (root, "/", f"root {root}", DEFAULT_LOC))
    added: list[p.MountStep] = []
    seen: set[str] = set()
    for path, what in credential_paths(variables):
        # Named by the profile itself: a bind of it (or of something below it) is the
        # user asking for it, e.g. ro-bind ~/.ssh/known_hosts or ${SSH_AUTH_SOCK}.
        if any(m.type in BIND_TYPES and _under(m.src, path) for m in mounts):
            continue
        for src, dst, by, loc in sources:
            if path == src or not _under(path, src):
                continue
            target = os.path.normpath(dst + "/" + path[len(src.rstrip("/")):])
            if target in seen or any(_under(m.dst, target) for m in mounts):
                continue
            seen.add(target)
            added.append(p.MountStep(type="mask", dst=target, optional=True,
                                     reason=f"{what}, shown by {by}", loc=loc))
    return mounts + added


def add_git_guards(mounts: list[p.MountStep]) -> list[p.MountStep]:
    """``mounts`` plus a read-only bind of ``.git`` over each writable bind that has one."""
    added = []
    for mount in mounts:
        if mount.type != "rw-bind":
            continue
        dst = os.path.join(mount.dst, ".git")
        if any(_under(m.dst, dst) for m in mounts):
            continue  # the profile decides about this .git itself
        # optional: most writable binds are no repository, and the shim skips a missing
        # source at run time, so a later `git init` is covered without recompiling.
        added.append(p.MountStep(type="ro-bind", dst=dst, src=os.path.join(mount.src, ".git"),
                                 optional=True, loc=mount.loc,
                                 reason="kept read-only: git runs its hooks and config on "
                                 "the host"))
    return mounts + added


def root_writable_binds(plan: p.Plan) -> list[p.MountStep]:
    """The rw-bind steps of a root caller whose sandbox runs as 65534; [] otherwise."""
    ids = plan.find(p.MapIds)
    if os.geteuid() != 0 or not ids or ids[0].host_uid != NOBODY:
        return []
    return [step for step in plan.find(p.MountStep) if step.type == "rw-bind"]


def root_write_notes(plan: p.Plan) -> list[str]:
    """For a root caller whose sandbox runs as 65534: each writable bind that user cannot
    write (README, "Root"). The command would only say "Permission denied". Unlike the
    rules above, read from the files as they are now (said on every launch)."""
    import stat

    from isorun.host.nobody import nobody_cannot_write

    notes = []
    for step in root_writable_binds(plan):
        if not nobody_cannot_write(step.src):
            continue
        st = os.stat(step.src)
        notes.append(
            f"isorun: note: started by root, the sandbox runs as uid 65534 (nobody), which "
            f"cannot write {step.src} (owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o})"
            f" that {step.loc.short()} binds writable\n  hint: run isorun as the user who "
            "owns it, or extend the profile with [unsafe] map_root = true")
    return notes
