"""Builds the native shim (isorun._shim_c) with cffi; all metadata is in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["src/isorun/shim/build_shim.py:ffibuilder"])
