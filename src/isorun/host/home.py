"""The caller's home as the password database gives it (``${PASSWD_HOME}``).

A module of its own, kept to ``os`` and ``pwd``: the warm launch resolves the profile
variables (isorun.cache.entry.variables) before it uses a cached record, and
isorun.host.facts, the compiler's view of the host, imports dataclasses for its record.
"""

from __future__ import annotations

import os


def passwd_home(uid: int) -> str:
    """The home directory of ``uid`` in the password database (root's /etc/passwd, or
    NSS), resolved; "" when the uid has no entry or a relative one."""
    import pwd

    try:
        home = pwd.getpwuid(uid).pw_dir
    except KeyError:
        return ""
    return os.path.realpath(home) if home.startswith("/") else ""
