"""What uid 65534 (nobody), the user a root caller's sandbox runs as, may write here.

Kept to ``os`` and the constants of kernel/abi.py: the warm launch asks it before it uses
a cached record (isorun.cache.record.usable), and the compiler's notes ask it
(compile.exposure).
"""

from __future__ import annotations

import os

from isorun.kernel.abi import NOBODY


def nobody_cannot_write(path: str | bytes) -> bool:
    """``path`` exists and uid 65534 may not write it (owned by another, not o+w)."""
    try:
        st = os.stat(path)
    except OSError:
        return False  # not there (yet): an optional source, or a required one that fails
    return st.st_uid != NOBODY and not st.st_mode & 0o002
