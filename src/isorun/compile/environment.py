"""The command's environment, from an ``Environment`` step and the caller's variables.

Every backend builds it the same way (native into the spec, bwrap and firejail into their
argv), and it is the one thing resolved per launch rather than per plan: ``keep`` takes
the caller's current values.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Mapping

from isorun.compile import plan as p


def build_environment(step: p.Environment, caller: Mapping[str, str]) -> tuple[bytes, ...]:
    """The command's environment: start, then ``set``, then kept variables the caller has.

    A kept variable wins over ``set`` (which is its fallback), so a profile can say "the
    caller's PATH, or this one".
    """
    env: dict[str, str] = {} if step.clear else dict(caller)
    env.update(step.set)
    for pattern in step.keep:
        for name, value in caller.items():
            if name == pattern or (pattern.endswith("*") and fnmatch.fnmatchcase(name, pattern)):
                env[name] = value
    # fsencode, not encode(): os.environ holds bytes that are not UTF-8 as surrogates
    # (PEP 383), and the command must get the caller's bytes back, not an error.
    return tuple(os.fsencode(k) + b"=" + os.fsencode(v) for k, v in sorted(env.items()))
