"""cffi API-mode build of the native shim: ``isorun._shim_c``.

The cdef is isorun_shim.h verbatim (which is why that header holds no #include or #if);
the C sources are compiled with the warnings the style guide asks for. Used by setup.py
(``cffi_modules``) at install time, or run directly to build in place for development.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from cffi import FFI  # type: ignore[import-untyped]

HERE = Path(__file__).resolve().parent
SOURCES = ("ns.c", "mount.c", "caps.c", "seccomp.c", "exec.c", "notify.c")
CFLAGS = ("-std=c11", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-O2")


def _relative(path: Path) -> str:
    # setuptools wants source paths relative to the project root, which is its cwd; run
    # directly, cffi chdirs into its build directory, so absolute paths are needed there.
    if __name__ == "__main__":
        return str(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


ffibuilder = FFI()
ffibuilder.cdef((HERE / "isorun_shim.h").read_text())
ffibuilder.set_source(
    "isorun._shim_c",
    '#include "isorun_shim.h"\n',
    sources=[_relative(HERE / name) for name in SOURCES],
    include_dirs=[_relative(HERE)],
    extra_compile_args=list(CFLAGS),
)


def build_in_place() -> Path:
    """Compile into build/shim and copy the module next to the package (``make shim``)."""
    tmp = HERE.parent.parent.parent / "build" / "shim"
    built = Path(ffibuilder.compile(tmpdir=str(tmp), verbose=False))
    target = HERE.parent / built.name
    # pip names the module _shim_c.abi3.so, this build _shim_c.cpython-3XX-...so; Python
    # prefers the latter, so a stale copy of either would shadow a fresh build.
    for stale in HERE.parent.glob("_shim_c.*.so"):
        stale.unlink()
    shutil.copy2(built, target)
    return target


if __name__ == "__main__":
    sys.stdout.write(f"{build_in_place()}\n")
