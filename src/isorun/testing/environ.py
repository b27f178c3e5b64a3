"""A marked test's environment as the kernel shows it: /proc/self/environ of the forked
child holds only the policy's variables, not the host's block that pytest was started
with (isorun.testing.sandbox calls this between the fork and the sandbox's set-up)."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: prctl(2) options: PR_SET_MM, and its PR_SET_MM_MAP (which, unlike the single-field
#: options, needs no CAP_SYS_RESOURCE: kernel/sys.c prctl_set_mm_map checks only the
#: addresses, and a capability only for exe_fd, which is left alone here)
PR_SET_MM, PR_SET_MM_MAP = 35, 14
#: struct prctl_mm_map (linux/prctl.h): eleven addresses, auxv pointer, auxv_size, exe_fd
_MM_FIELDS = ("start_code", "end_code", "start_data", "end_data", "start_brk", "brk",
              "start_stack", "arg_start", "arg_end", "env_start", "env_end")  # fmt: skip


@functools.cache
def libc() -> Any:
    """libc through ctypes, loaded once, in the parent: the child must not pay for it."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.sbrk.restype = ctypes.c_void_p
    libc.sbrk.argtypes = [ctypes.c_long]
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                           ctypes.c_ulong]  # fmt: skip
    return libc


@functools.cache
def _mm_map_type() -> Any:
    import ctypes

    class MmMap(ctypes.Structure):
        _fields_ = [*((name, ctypes.c_uint64) for name in _MM_FIELDS),
                    ("auxv", ctypes.c_uint64), ("auxv_size", ctypes.c_uint32),
                    ("exe_fd", ctypes.c_uint32)]  # fmt: skip

    return MmMap


@functools.cache
def _mm_layout() -> dict[str, int]:
    """The addresses of pytest's memory map that PR_SET_MM_MAP must be given back
    unchanged (proc_pid_stat(5) fields 26-28 and 45-51; all but brk fixed after execve,
    and a fork copies them): read once per session, not in every child."""
    with open("/proc/self/stat", "rb") as f:
        data = f.read()
    # Fields after the command name (which may hold spaces and parentheses); field 3 first.
    fields = data[data.rindex(b")") + 2 :].split()
    numbers = dict(start_code=26, end_code=27, start_stack=28, start_data=45, end_data=46,
                   start_brk=47, arg_start=48, arg_end=49, env_start=50, env_end=51)  # fmt: skip
    return {name: int(fields[n - 3]) for name, n in numbers.items()}


@dataclass(frozen=True, slots=True)
class EnvironBlock:
    """What the child needs to replace its environment block, built by the parent."""

    #: the new block (``NAME=value\0`` each), a ctypes buffer the fork copies
    buf: Any
    #: struct prctl_mm_map pointing at ``buf``; the child fills in brk
    mm_map: Any
    #: the block execve made, which the child overwrites with zeros
    old: tuple[int, int]
    env: Mapping[str, str]


def environ_block(env: Mapping[str, str]) -> EnvironBlock:
    """In the parent, before the fork: the child's new environment block for ``env``."""
    import ctypes

    layout = _mm_layout()
    data = b"".join(f"{k}={v}".encode() + b"\0" for k, v in env.items())
    buf = ctypes.create_string_buffer(data, len(data) or 1)
    addr = ctypes.addressof(buf)
    mm_map = _mm_map_type()(**{**layout, "brk": 0, "env_start": addr,
                               "env_end": addr + len(data), "exe_fd": 0xFFFFFFFF})  # fmt: skip
    return EnvironBlock(buf, mm_map, (layout["env_start"], layout["env_end"]), dict(env))


def replace_environ_block(block: EnvironBlock, libc: Any) -> None:
    """In the child: make the environment the kernel shows (/proc/self/environ, that is
    mm->env_start..env_end) hold ``block.env`` only, and erase the host's.

    os.environ is a Python copy; the kernel shows the block execve put on pytest's
    stack, tokens included, and the fork copied it. So: every kept variable is set again
    (libc then points at fresh heap copies, not into the old block), the old block is
    overwritten with zeros, and PR_SET_MM_MAP points the kernel at the new block. If the
    kernel refuses that, the variables are written into the old block as far as they
    fit: a shorter view, never the host's.
    """
    import ctypes

    for name, value in block.env.items():
        os.putenv(name, value)
    start, end = block.old
    ctypes.memset(start, 0, end - start)
    # brk moves as the child allocates; the kernel takes the value given as the new one.
    block.mm_map.brk = libc.sbrk(0) or 0
    size = ctypes.sizeof(block.mm_map)
    if libc.prctl(PR_SET_MM, PR_SET_MM_MAP, ctypes.addressof(block.mm_map), size, 0) == 0:
        return
    fits = bytes(block.buf)[: end - start]
    fits = fits[: fits.rfind(b"\0") + 1]
    ctypes.memmove(start, fits, len(fits))
