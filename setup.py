"""Builds the native shim (isorun._shim_c) with cffi, and the isorun-launch program next to
it (see src/isorun/shim/build_shim.py); all metadata is in pyproject.toml."""

import importlib.util
import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.dist import Distribution

HERE = Path(__file__).resolve().parent


def _build_shim():  # type: ignore[no-untyped-def]
    # By path: the package itself is not importable before it is built.
    spec = importlib.util.spec_from_file_location(
        "_isorun_build_shim", HERE / "src" / "isorun" / "shim" / "build_shim.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class BuildExtWithLauncher(build_ext):
    """build_ext, then isorun-launch into the package: under build_lib for a wheel or an
    install, into src/isorun for an editable install (pip install -e) or --inplace."""

    def run(self):  # type: ignore[no-untyped-def]
        super().run()
        shim = _build_shim()
        if self.inplace or getattr(self, "editable_mode", False):
            package = HERE / "src" / "isorun"
        else:
            package = Path(self.build_lib) / "isorun"
        compiler = None
        if self.compiler is not None and hasattr(self.compiler, "compiler_so"):
            compiler = self.compiler.compiler_so[0]
        self._launcher = shim.build_launcher(package / shim.LAUNCHER_NAME, compiler)

    def get_outputs(self):  # type: ignore[no-untyped-def]
        launcher = getattr(self, "_launcher", None)
        return [*super().get_outputs(), *([str(launcher)] if launcher else [])]


# setuptools has no build_scripts of its own; this is the distutils one it runs.
build_scripts = Distribution().get_command_class("build_scripts")


class BuildFrontendScript(build_scripts):  # type: ignore[misc, valid-type]
    """The `isorun` command is isorun-launch itself (its front end, frontend.c, launches a
    cached plan without starting Python), so it goes into the environment's bin as a
    script; the Python CLI is the console script isorun-py (pyproject.toml).

    The stock build_scripts cannot copy it: it opens every script with tokenize.open() to
    rewrite a #! line, which fails on an ELF file. This copies the program build_ext made
    (or builds it) and leaves the rest to install_scripts, which a wheel (pip install .)
    and an editable install (pip install -e .) both run: pip then puts it in bin.
    """

    def run(self):  # type: ignore[no-untyped-def]
        self.mkpath(self.build_dir)
        target = Path(self.build_dir) / "isorun"
        built = getattr(self.get_finalized_command("build_ext"), "_launcher", None)
        if built is not None and Path(built).is_file():
            self.copy_file(str(built), str(target))
            os.chmod(target, 0o755)
        else:
            _build_shim().build_launcher(target)
        self.outfiles = [str(target)]

    def get_outputs(self):  # type: ignore[no-untyped-def]
        return [str(Path(self.build_dir) / "isorun")]


setup(
    cffi_modules=["src/isorun/shim/build_shim.py:ffibuilder"],
    # setuptools runs build_scripts only when there are scripts; `isorun` is built from
    # frontend.c (with the rest of isorun-launch), so that is the one named here.
    scripts=["src/isorun/shim/launcher/frontend.c"],
    cmdclass={"build_ext": BuildExtWithLauncher, "build_scripts": BuildFrontendScript},
)
