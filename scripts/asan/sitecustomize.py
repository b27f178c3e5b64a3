"""``make test-asan``: make ``isorun._shim_c`` the sanitized build in build/asan.

On PYTHONPATH (the Makefile puts this directory there), Python imports this file at
start-up, in the test run and in every ``sys.executable`` child that inherits the
environment. It adds one finder for exactly that module name, so nothing in the package
changes: shim_ffi.load_shim() imports ``isorun._shim_c`` as always and still refuses a
module of another ABI. A missing build fails the import (ShimAbiError, "not built")
instead of quietly testing the unsanitized module next to the package.

A child whose environment is rebuilt from scratch (tests/integration/conftest.py's
run_as_user keeps PATH and LANG only) loses this file and LD_PRELOAD together, so it
consistently loads the regular module: the unprivileged-caller half of a parametrized
test is not sanitized.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD = HERE.parent.parent / "build" / "asan" / "isorun"
NAME = "isorun._shim_c"


class SanitizedShimFinder:
    """Finds isorun._shim_c in build/asan and nothing else."""

    @classmethod
    def find_spec(
        cls, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != NAME:
            return None
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            candidate = BUILD / f"_shim_c{suffix}"
            if candidate.is_file():
                return importlib.util.spec_from_file_location(fullname, candidate)
        raise ImportError(f"no sanitized shim in {BUILD}; run make test-asan", name=fullname)


sys.meta_path.insert(0, SanitizedShimFinder)

# This file shadows the interpreter's own sitecustomize (Debian's installs the apport
# hook); run that one too, so the test run differs from a normal one only in the shim.
_others = [p for p in sys.path if Path(p or ".").resolve() != HERE]
_spec = importlib.machinery.PathFinder.find_spec("sitecustomize", _others)
if _spec is not None and _spec.loader is not None:
    _module = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_module)
