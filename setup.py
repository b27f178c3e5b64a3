"""Builds the native shim (isorun._shim_c) with cffi, and the isorun-launch program next to
it (see src/isorun/shim/build_shim.py); all metadata is in pyproject.toml."""

import importlib.util
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext

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


setup(
    cffi_modules=["src/isorun/shim/build_shim.py:ffibuilder"],
    cmdclass={"build_ext": BuildExtWithLauncher},
)
