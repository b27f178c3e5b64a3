"""cffi API-mode build of the native shim, ``isorun._shim_c``, and of ``isorun-launch``.

The cdef is the generated consts.h then isorun_shim.h verbatim (which is why that header
holds no #include or #if). consts.h and tables.h are written into build/gen first from
the Python definitions (headers.py): the C side of every shared constant. The C sources
are compiled with the warnings the style guide asks for. Used by setup.py
(``cffi_modules``, and its build_ext for the program) at install time, or run directly to
build both in place for development (``make shim``).

The sources lie by role: child/ (the child side, from clone to execve), launcher/
(``isorun-launch``), stage/ (the wrapper backends' exec stage, which
isorun.sandbox.exec_stage builds) and, beside isorun_shim.h, the parent side's path walks.

``isorun-launch`` (launcher/launch_main.c) is the shim's child side linked into a small
program with the parent side in C (launcher/launch.c) and the ``isorun`` front end
(launcher/frontend.c). It is linked statically where libc.a exists: no dynamic loader at
each exec (it runs once per launch) and nothing of the caller's environment (LD_PRELOAD,
LD_LIBRARY_PATH) in it.
"""

from __future__ import annotations

import os
import runpy
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from cffi import FFI  # type: ignore[import-untyped]

HERE = Path(__file__).resolve().parent
#: where consts.h and tables.h are generated, outside the source tree
GEN = HERE.parent.parent.parent / "build" / "gen"
#: the cffi module: the child side (child/) and the parent side's path walks, which
#: Python calls too (resolve.c, planted.c)
SOURCES = (
    "child/ns.c", "resolve.c", "child/beneath.c", "child/mount.c", "child/mount_fs.c",
    "child/mount_dev.c", "child/mount_overlay.c", "child/mount_mask.c", "child/mount_root.c",
    "child/caps.c", "child/seccomp.c", "child/exec.c", "child/fail.c", "child/fds.c",
    "child/notify.c", "child/bpf_eval.c", "child/apply.c", "child/landlock.c", "planted.c",
)
#: where the sources' quoted #includes are found, each header by its bare name (GEN
#: first, for the generated ones)
INCLUDE_DIRS = (".", "child", "launcher")
CFLAGS = ("-std=c11", "-Wall", "-Wextra", "-Werror", "-Wconversion", "-O2")
#: isorun-launch: its own main and parent side, the front end, and the whole shim
LAUNCHER_SOURCES = (
    "launcher/launch_main.c", "launcher/launch.c", "launcher/launch_mounts.c",
    "launcher/idmap.c", "launcher/terminal.c", "launcher/caller.c", "launcher/launch_record.c",
    "launcher/launch_record_read.c", "launcher/launch_record_dump.c",
    "launcher/launch_report.c", "launcher/frontend.c", "launcher/launch_index.c",
    "launcher/index_auto.c", "launcher/index_env.c", "launcher/index_name.c",
    "launcher/blake2b.c", "launcher/git_guard.c", *SOURCES
)
#: installed next to the package's modules; isorun.sandbox.process looks for it there
LAUNCHER_NAME = "isorun-launch"


def _relative(path: Path) -> str:
    # setuptools wants source paths relative to the project root, which is its cwd; run
    # directly, cffi chdirs into its build directory, so absolute paths are needed there.
    if __name__ == "__main__":
        return str(path)
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# By path, as setup.py loads this file: the package is not importable during the build.
runpy.run_path(str(HERE / "headers.py"))["write"](GEN)
CDEF = (GEN / "consts.h").read_text() + (HERE / "isorun_shim.h").read_text()
PRELUDE = '#include "consts.h"\n#include "isorun_shim.h"\n'

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
ffibuilder.set_source(
    "isorun._shim_c",
    PRELUDE,
    sources=[_relative(HERE / name) for name in SOURCES],
    include_dirs=[_relative(GEN), *(_relative(HERE / name) for name in INCLUDE_DIRS)],
    extra_compile_args=list(CFLAGS),
)


def build_launcher(
    target: Path,
    compiler: str | None = None,
    cflags: tuple[str, ...] = CFLAGS,
    links: tuple[tuple[str, ...], ...] = (("-static",), ()),
    extra_sources: tuple[Path, ...] = (),
) -> Path:
    """Compile isorun-launch into ``target`` (replaced atomically).

    ``compiler`` defaults to $CC, then cc: the C compiler the extension uses too. Each of
    ``links`` is tried in turn: -static needs libc.a (libc6-dev ships it on Debian); where
    it is missing, dynamic linking still works, only each launch pays the loader.
    """
    cc = shlex.split(compiler or os.environ.get("CC") or "cc")
    sources = [str(HERE / name) for name in LAUNCHER_SOURCES] + [str(s) for s in extra_sources]
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    errors = []
    for link in links:
        includes = [f"-I{GEN}", *(f"-I{HERE / name}" for name in INCLUDE_DIRS)]
        done = subprocess.run([*cc, *cflags, *includes, *link, "-o", str(tmp), *sources],
                              capture_output=True, text=True, check=False)
        if done.returncode == 0:
            break
        errors.append(done.stderr.strip())
    else:
        raise RuntimeError(f"building {LAUNCHER_NAME} failed:\n" + "\n".join(errors))
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)
    return target


def build_in_place() -> Path:
    """Compile into build/shim and copy the module next to the package (``make shim``),
    and isorun-launch next to it."""
    build_launcher(HERE.parent / LAUNCHER_NAME)
    tmp = HERE.parent.parent.parent / "build" / "shim"
    built = Path(ffibuilder.compile(tmpdir=str(tmp), verbose=False))
    target = HERE.parent / built.name
    # pip names the module _shim_c.abi3.so, this build _shim_c.cpython-3XX-...so; Python
    # prefers the latter, so a stale copy of either would shadow a fresh build.
    for stale in HERE.parent.glob("_shim_c.*.so"):
        stale.unlink()
    shutil.copy2(built, target)
    return target


#: ``make test-asan``: AddressSanitizer + UBSan, any UB fatal (a report that only prints
#: would pass the test that caused it); -g -O1 and frame pointers for whole, readable
#: stacks from ASan's frame-pointer unwinder.
SANITIZE = (
    "-fsanitize=address,undefined",
    "-fno-omit-frame-pointer",
    "-fno-sanitize-recover=undefined",
)
SANITIZE_CFLAGS = (*CFLAGS, "-O1", "-g", *SANITIZE)
#: tells ASan about the stacks the child runs on; linked in through --wrap=clone, so the
#: shipped sources stay free of sanitizer code (see the file for why it is needed)
CLONE_STACK = HERE.parent.parent.parent / "scripts" / "asan" / "clone_stack.c"


def build_sanitized() -> Path:
    """Compile a sanitized module into build/asan, leaving the package's own untouched.

    Only ``ISORUN_SHIM_BUILD=asan python build_shim.py`` gets here, never pip (which
    imports ``ffibuilder`` above), so an exported variable cannot slip the sanitizers
    into an installed module. The module keeps its name, isorun._shim_c, and is found by
    scripts/asan/sitecustomize.py; its ABI is checked on import like any other build.
    A sanitized isorun-launch goes next to it.
    """
    asan = FFI()
    asan.cdef(CDEF)
    asan.set_source(
        "isorun._shim_c",
        PRELUDE,
        sources=[*(_relative(HERE / name) for name in SOURCES), _relative(CLONE_STACK)],
        include_dirs=[_relative(GEN), *(_relative(HERE / name) for name in INCLUDE_DIRS)],
        extra_compile_args=list(SANITIZE_CFLAGS),
        extra_link_args=[*SANITIZE, "-Wl,--wrap=clone"],
    )
    tmp = HERE.parent.parent.parent / "build" / "asan"
    module = Path(asan.compile(tmpdir=str(tmp), verbose=False))
    # isorun.sandbox.process looks for isorun-launch next to the loaded module, so the
    # API's launches run this sanitized pair too. Dynamic: ASan has no static runtime.
    # The API starts it with an empty environment, so the Makefile's ASAN_OPTIONS and
    # UBSAN_OPTIONS are compiled in instead (the sanitizers' documented hook). Without
    # detect_leaks=0, LeakSanitizer fails every run under strace (tests/integration do).
    options = tmp / "launcher_sanitizer_options.c"
    options.write_text(
        'const char *__asan_default_options(void);\n'
        'const char *__ubsan_default_options(void);\n'
        'const char *__asan_default_options(void) {\n'
        '    return "detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=0";\n}\n'
        'const char *__ubsan_default_options(void) {\n'
        '    return "print_stacktrace=1:halt_on_error=1";\n}\n'
    )
    build_launcher(module.parent / LAUNCHER_NAME, cflags=SANITIZE_CFLAGS,
                   links=((*SANITIZE, "-Wl,--wrap=clone"),),
                   extra_sources=(CLONE_STACK, options))  # fmt: skip
    return module


if __name__ == "__main__":
    if os.environ.get("ISORUN_SHIM_BUILD") == "asan":
        sys.stdout.write(f"{build_sanitized()}\n")
    else:
        sys.stdout.write(f"{build_in_place()}\n")
