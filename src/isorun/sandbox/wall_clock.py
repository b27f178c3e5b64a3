"""The wall-clock limit (``limits.wall_time``), which the isorun parent enforces for
every backend: once the sandbox has run that long, the whole sandbox is killed and its
exit code is :data:`isorun.kernel.abi.EXIT_WALL_TIME` (124, as timeout(1))."""

from __future__ import annotations

import threading
from collections.abc import Callable


def start_wall_clock(seconds: float | None, expire: Callable[[], None]) -> threading.Timer | None:
    """Call ``expire`` once, from a daemon thread, after ``seconds``; None without a limit.

    The caller cancels the timer once it has reaped the sandbox, and ``expire`` checks
    under the caller's own rules that the sandbox still runs: a timer may fire just as
    the sandbox ends."""
    if seconds is None:
        return None
    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    return timer
