"""Generate ``src/isorun/data/syscalls.json``: every syscall name per architecture.

Names come from libseccomp (``seccomp_syscall_resolve_num_arch`` over every number), so the
table matches what the compiler can resolve. Syscalls newer than the installed libseccomp
are added from the kernel's syscall tables (``arch/x86/entry/syscalls/syscall_64.tbl`` and
``include/uapi/asm-generic/unistd.h``): since Linux 5.1 every architecture numbers new
syscalls the same (424 and up), so one list serves all four ABIs, with the x32 bit added.

Run: ``.venv/bin/python scripts/gen_syscall_table.py`` (rewrites the file; review the diff).
"""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "src" / "isorun" / "data" / "syscalls.json"

# AUDIT_ARCH_* values (linux/audit.h): EM_* | 64BIT 0x80000000 | LE 0x40000000
ARCHES = {
    "x86_64": 0xC000003E,
    "x32": 0x4000003E,
    "i386": 0x40000003,
    "aarch64": 0xC00000B7,
}
X32_SYSCALL_BIT = 0x40000000
SCAN = 1024

# Syscalls of Linux 6.5-6.15 that libseccomp 2.5.4 does not know, with their unified numbers
# (asm-generic/unistd.h, syscall_64.tbl). Facts, cited from the kernel tree.
KERNEL_EXTRA = {
    "cachestat": 451,
    "fchmodat2": 452,
    "map_shadow_stack": 453,  # x86_64 only (shadow stacks)
    "futex_wake": 454,
    "futex_wait": 455,
    "futex_requeue": 456,
    "statmount": 457,
    "listmount": 458,
    "lsm_get_self_attr": 459,
    "lsm_set_self_attr": 460,
    "lsm_list_modules": 461,
    "mseal": 462,
    "setxattrat": 463,
    "getxattrat": 464,
    "listxattrat": 465,
    "removexattrat": 466,
    "open_tree_attr": 467,
}


def main() -> int:
    lib = ctypes.CDLL("libseccomp.so.2")
    libc = ctypes.CDLL("libc.so.6")
    lib.seccomp_syscall_resolve_num_arch.argtypes = (ctypes.c_uint32, ctypes.c_int)
    lib.seccomp_syscall_resolve_num_arch.restype = ctypes.c_void_p
    libc.free.argtypes = (ctypes.c_void_p,)
    lib.seccomp_version.restype = ctypes.POINTER(ctypes.c_uint * 3)
    ver = ".".join(str(x) for x in lib.seccomp_version().contents)
    tables: dict[str, dict[str, int]] = {}
    for arch, token in ARCHES.items():
        base = X32_SYSCALL_BIT if arch == "x32" else 0
        names: dict[str, int] = {}
        for nr in range(base, base + SCAN):
            ptr = lib.seccomp_syscall_resolve_num_arch(token, nr)
            if ptr:
                names[ctypes.string_at(ptr).decode()] = nr
                libc.free(ptr)
        for name, nr in KERNEL_EXTRA.items():
            if name == "map_shadow_stack" and arch != "x86_64":
                continue
            if name not in names and base + nr not in names.values():
                names[name] = base + nr
        tables[arch] = dict(sorted(names.items(), key=lambda kv: (kv[1], kv[0])))
    doc = {
        "source": f"libseccomp {ver} seccomp_syscall_resolve_num_arch, numbers 0..{SCAN - 1}"
        " (x32: with the 0x40000000 bit); newer syscalls from the Linux syscall tables"
        " (scripts/gen_syscall_table.py KERNEL_EXTRA)",
        "arches": tables,
    }
    OUT.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    for arch, names in tables.items():
        print(f"{arch}: {len(names)} names", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
