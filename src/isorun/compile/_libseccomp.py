"""A minimal typed ctypes binding to libseccomp, used only at compile time.

Why not pyseccomp's module: it locates the library with ``ctypes.util.find_library``,
which runs ``ldconfig -p`` (about 50 ms per import); we load the soname ``libseccomp.so.2``
directly (about 2 ms), and we need only the calls that build and export a filter.
Import this module lazily: the profile loader must not pay for it.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from typing import Any

from isorun.host.anonfile import anon_file

SONAME = "libseccomp.so.2"

# enum scmp_filter_attr (seccomp.h, libseccomp >= 2.5)
ATTR_ACT_DEFAULT = 1
ATTR_ACT_BADARCH = 2
ATTR_CTL_NNP = 3
ATTR_CTL_OPTIMIZE = 8

# enum scmp_compare
CMP = {"ne": 1, "lt": 2, "le": 3, "eq": 4, "ge": 5, "gt": 6, "masked_eq": 7}

# AUDIT_ARCH_* == SCMP_ARCH_*
ARCH_TOKENS = {
    "x86_64": 0xC000003E,
    "x32": 0x4000003E,
    "i386": 0x40000003,
    "aarch64": 0xC00000B7,
}

NR_SCMP_ERROR = -1


class _ArgCmp(ctypes.Structure):
    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


@dataclass(frozen=True, slots=True)
class Lib:
    """The loaded library with its prototypes set."""

    dll: Any
    version: tuple[int, int, int]


def load() -> Lib:
    dll = ctypes.CDLL(SONAME, use_errno=True)
    dll.seccomp_init.argtypes = (ctypes.c_uint32,)
    dll.seccomp_init.restype = ctypes.c_void_p
    dll.seccomp_release.argtypes = (ctypes.c_void_p,)
    dll.seccomp_release.restype = None
    dll.seccomp_attr_set.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32)
    dll.seccomp_attr_set.restype = ctypes.c_int
    dll.seccomp_arch_add.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
    dll.seccomp_arch_add.restype = ctypes.c_int
    dll.seccomp_arch_remove.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
    dll.seccomp_arch_remove.restype = ctypes.c_int
    dll.seccomp_arch_native.argtypes = ()
    dll.seccomp_arch_native.restype = ctypes.c_uint32
    dll.seccomp_syscall_resolve_name_arch.argtypes = (ctypes.c_uint32, ctypes.c_char_p)
    dll.seccomp_syscall_resolve_name_arch.restype = ctypes.c_int
    dll.seccomp_rule_add_array.argtypes = (
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    )
    dll.seccomp_rule_add_array.restype = ctypes.c_int
    dll.seccomp_merge.argtypes = (ctypes.c_void_p, ctypes.c_void_p)
    dll.seccomp_merge.restype = ctypes.c_int
    dll.seccomp_export_bpf.argtypes = (ctypes.c_void_p, ctypes.c_int)
    dll.seccomp_export_bpf.restype = ctypes.c_int
    dll.seccomp_export_pfc.argtypes = (ctypes.c_void_p, ctypes.c_int)
    dll.seccomp_export_pfc.restype = ctypes.c_int
    dll.seccomp_version.argtypes = ()
    dll.seccomp_version.restype = ctypes.POINTER(ctypes.c_uint * 3)
    v = dll.seccomp_version().contents
    return Lib(dll, (int(v[0]), int(v[1]), int(v[2])))


def _check(rc: int, what: str) -> None:
    if rc < 0:
        raise OSError(-rc, f"libseccomp {what}: {os.strerror(-rc)}")


class Filter:
    """One libseccomp filter context; call :meth:`close` (or use ``with``)."""

    def __init__(self, lib: Lib, default_action: int) -> None:
        self._lib = lib.dll
        ctx = self._lib.seccomp_init(default_action)
        if not ctx:
            raise OSError(22, f"seccomp_init({default_action:#x}) failed")
        self._ctx: int = ctx

    def __enter__(self) -> Filter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._ctx:
            self._lib.seccomp_release(self._ctx)
            self._ctx = 0

    def set_attr(self, attr: int, value: int) -> None:
        _check(self._lib.seccomp_attr_set(self._ctx, attr, value), f"attr_set({attr})")

    def add_arch(self, token: int) -> None:
        _check(self._lib.seccomp_arch_add(self._ctx, token), f"arch_add({token:#x})")

    def remove_arch(self, token: int) -> None:
        _check(self._lib.seccomp_arch_remove(self._ctx, token), f"arch_remove({token:#x})")

    def resolve(self, token: int, name: str) -> int:
        """The syscall number (or libseccomp pseudo-number) of a name, or NR_SCMP_ERROR."""
        return int(self._lib.seccomp_syscall_resolve_name_arch(token, name.encode()))

    def add_rule(self, action: int, nr: int, cmps: list[tuple[int, str, int, int]]) -> None:
        arr = (_ArgCmp * max(1, len(cmps)))()
        for n, (index, op, a, b) in enumerate(cmps):
            arr[n].arg, arr[n].op, arr[n].datum_a, arr[n].datum_b = index, CMP[op], a, b
        _check(
            self._lib.seccomp_rule_add_array(self._ctx, action, nr, len(cmps), arr),
            f"rule_add(nr={nr}, action={action:#x}, {cmps})",
        )

    def merge(self, other: Filter) -> None:
        """Take ``other``'s ABIs and rules (it must have none of ours); libseccomp releases
        ``other`` on success."""
        _check(self._lib.seccomp_merge(self._ctx, other._ctx), "merge")
        other._ctx = 0

    def _export(self, fn: Any, what: str) -> bytes:
        # an anonymous file, not a pipe: a large program would block a pipe before we
        # read it
        fd = anon_file(f"isorun-{what}")
        try:
            _check(fn(self._ctx, fd), f"export_{what}")
            os.lseek(fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def export_bpf(self) -> bytes:
        return self._export(self._lib.seccomp_export_bpf, "bpf")

    def export_pfc(self) -> str:
        return self._export(self._lib.seccomp_export_pfc, "pfc").decode()


def native_arch(lib: Lib) -> str:
    token = int(lib.dll.seccomp_arch_native())
    for name, value in ARCH_TOKENS.items():
        if value == token:
            return name
    raise OSError(95, f"unsupported native architecture {token:#x}")
