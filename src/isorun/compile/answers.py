"""What a seccomp policy answers, per syscall number: the errno table ``isorun learn
--check`` hands its supervisor, which answers each notified call as the profile would."""

from __future__ import annotations

from isorun.compile.seccomp import build_entries
from isorun.kernel import syscalls
from isorun.profile.schema import Action, Seccomp


def check_answers(policy: Seccomp, native: str) -> tuple[tuple[int, ...], int]:
    """What ``check`` answers a notified call with, per native number, and for the rest.

    In ``check`` mode only calls the profile refuses are notified (plus execve, for the
    hand-over, which runs), so each number maps to the errno of its first refusing entry
    or of the default. A refusal that kills or traps is answered EPERM: the call is still
    refused, the run goes on and the report names the profile's real action.
    """

    def errno_of(action: Action) -> int:
        return action.errno if action.kind == "errno" else 1

    entries, _ = build_entries(policy)
    table = syscalls.table(native)
    out = [errno_of(policy.unknown_action)] * (max(table.values()) + 1)
    for name, nr in table.items():
        refusing = [e.action for e in entries.get(name, [])
                    if e.action.kind not in ("allow", "log")]
        out[nr] = errno_of(refusing[0] if refusing else policy.default_action)
    out[table["execve"]] = 0
    return tuple(out), errno_of(policy.default_action)
