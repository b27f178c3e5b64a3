"""A classic-BPF interpreter for seccomp programs, independent of libseccomp.

The compiler's output is checked by running it here on ``struct seccomp_data`` values, so a
test can prove, for every syscall number and chosen arguments, that the filter answers what
the profile says. It follows the kernel's cBPF semantics (``net/core/filter.c``,
``Documentation/networking/filter.rst``) restricted to what seccomp accepts
(``seccomp_check_filter``): 32-bit loads from the data, ALU, jumps, scratch memory, RET.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# struct seccomp_data (linux/seccomp.h): int nr; __u32 arch; __u64 instruction_pointer;
# __u64 args[6]; 64 bytes, native (little) endian on every architecture we build for.
SECCOMP_DATA_SIZE = 64

RET_KILL_PROCESS = 0x80000000
RET_KILL_THREAD = 0x00000000
RET_TRAP = 0x00030000
RET_ERRNO = 0x00050000
RET_USER_NOTIF = 0x7FC00000
RET_TRACE = 0x7FF00000
RET_LOG = 0x7FFC0000
RET_ALLOW = 0x7FFF0000
RET_ACTION_FULL = 0xFFFF0000
RET_DATA = 0x0000FFFF

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
AUDIT_ARCH_AARCH64 = 0xC00000B7

_M32 = 0xFFFFFFFF


class BpfError(ValueError):
    """The program is not a valid seccomp cBPF program (or ran off its end)."""


@dataclass(frozen=True, slots=True)
class Insn:
    code: int
    jt: int
    jf: int
    k: int


def decode(bpf: bytes) -> tuple[Insn, ...]:
    """Split raw ``struct sock_filter`` bytes (u16 code, u8 jt, u8 jf, u32 k) into insns."""
    if len(bpf) % 8 or not bpf:
        raise BpfError(f"program length {len(bpf)} is not a positive multiple of 8")
    if len(bpf) // 8 > 4096:  # BPF_MAXINSNS: the kernel refuses longer programs
        raise BpfError(f"{len(bpf) // 8} instructions, more than the kernel's 4096")
    return tuple(Insn(*f) for f in struct.iter_unpack("<HBBI", bpf))


def seccomp_data(
    nr: int, arch: int = AUDIT_ARCH_X86_64, args: tuple[int, ...] = (), ip: int = 0
) -> bytes:
    """Pack a ``struct seccomp_data``; missing args are 0, values are taken modulo 2**64."""
    full = tuple(a & 0xFFFFFFFFFFFFFFFF for a in args) + (0,) * (6 - len(args))
    return struct.pack("<iIQ6Q", _s32(nr), arch, ip, *full)


def _s32(v: int) -> int:
    v &= _M32
    return v - (1 << 32) if v & 0x80000000 else v


def run(program: bytes | tuple[Insn, ...], data: bytes) -> int:
    """Run the filter on one ``seccomp_data`` and return the 32-bit SECCOMP_RET_* value."""
    insns = decode(program) if isinstance(program, bytes) else program
    a = x = 0
    mem = [0] * 16
    pc = 0
    steps = 0
    while True:
        if pc >= len(insns):
            raise BpfError(f"fell off the end at {pc}")
        steps += 1
        if steps > 100_000:  # cBPF only jumps forward; a loop means a decoder bug
            raise BpfError("too many steps")
        ins = insns[pc]
        pc += 1
        code, k = ins.code, ins.k
        cls = code & 0x07
        if cls == 0x00:  # LD
            a = _load(code, k, data, mem, pc - 1)
        elif cls == 0x01:  # LDX
            x = _load(code, k, data, mem, pc - 1)
        elif cls == 0x02:  # ST
            mem[_slot(k)] = a
        elif cls == 0x03:  # STX
            mem[_slot(k)] = x
        elif cls == 0x04:  # ALU
            src = x if code & 0x08 else k
            a = _alu(code & 0xF0, a, src) & _M32
        elif cls == 0x05:  # JMP
            pc += _jump(ins, a, x, pc - 1)
        elif cls == 0x06:  # RET
            rval = code & 0x18
            if rval == 0x00:
                return k & _M32
            if rval == 0x10:
                return a
            raise BpfError(f"bad ret {code:#x}")
        elif cls == 0x07:  # MISC
            if code & 0xF8 == 0x00:  # TAX
                x = a
            else:  # TXA
                a = x


def _load(code: int, k: int, data: bytes, mem: list[int], at: int) -> int:
    """The value an LD or LDX instruction (at index ``at``) loads."""
    mode, size = code & 0xE0, code & 0x18
    if mode == 0x20:  # ABS: seccomp only allows aligned 32-bit loads of the data
        if size != 0x00 or k % 4 or k + 4 > SECCOMP_DATA_SIZE:
            raise BpfError(f"bad load at {at}: code {code:#x} k {k}")
        return int.from_bytes(data[k : k + 4], "little")
    if mode == 0x00:  # IMM
        return k
    if mode == 0x60:  # MEM
        return mem[_slot(k)]
    if mode == 0x80:  # LEN
        return SECCOMP_DATA_SIZE
    raise BpfError(f"load mode {mode:#x} not allowed in seccomp at {at}")


def _jump(ins: Insn, a: int, x: int, at: int) -> int:
    """How many instructions a JMP (at index ``at``) skips."""
    code, k = ins.code, ins.k
    op = code & 0xF0
    if op == 0x00:  # JA
        return k
    src = x if code & 0x08 else k
    if op == 0x10:
        cond = a == src
    elif op == 0x20:
        cond = a > src
    elif op == 0x30:
        cond = a >= src
    elif op == 0x40:
        cond = bool(a & src)
    else:
        raise BpfError(f"bad jump {code:#x} at {at}")
    return ins.jt if cond else ins.jf


def _slot(k: int) -> int:
    if k >= 16:
        raise BpfError(f"scratch memory slot {k} out of range")
    return k


def _alu(op: int, a: int, src: int) -> int:
    if op == 0x00:
        return a + src
    if op == 0x10:
        return a - src
    if op == 0x20:
        return a * src
    if op == 0x30:
        if src == 0:
            raise BpfError("division by zero")
        return a // src
    if op == 0x40:
        return a | src
    if op == 0x50:
        return a & src
    if op == 0x60:
        return a << (src & 31)
    if op == 0x70:
        return a >> (src & 31)
    if op == 0x80:
        return -a
    if op == 0x90:
        if src == 0:
            raise BpfError("modulo by zero")
        return a % src
    if op == 0xA0:
        return a ^ src
    raise BpfError(f"bad alu op {op:#x}")


def evaluate(
    program: bytes | tuple[Insn, ...],
    nr: int,
    arch: int = AUDIT_ARCH_X86_64,
    args: tuple[int, ...] = (),
) -> int:
    """The filter's answer for one syscall: ``run`` on a packed ``seccomp_data``."""
    return run(program, seccomp_data(nr, arch, args))


def describe(ret: int) -> str:
    """``allow``, ``errno:1``, ``kill_process``... in the profile's own words."""
    action = ret & RET_ACTION_FULL
    data = ret & RET_DATA
    names = {
        RET_KILL_PROCESS: "kill_process",
        RET_KILL_THREAD: "kill_thread",
        RET_TRAP: "trap",
        RET_LOG: "log",
        RET_ALLOW: "allow",
        RET_USER_NOTIF: "notify",
    }
    if action == RET_ERRNO:
        return f"errno:{data}"
    if action == RET_TRACE:
        return f"trace:{data}"
    return names.get(action, f"unknown:{ret:#x}")
