"""The shared constants' one definition (kernel/abi.py, shim/abi.py, sandbox/record.py)
against what Python itself knows; the C side is generated from them and checked by the
build's _Static_asserts, so no test reads C source."""

from __future__ import annotations

import dataclasses
import resource
import signal
from pathlib import Path

import pytest

from isorun.kernel import abi
from isorun.sandbox import record
from isorun.sandbox.spec import Rlimit, ShimMount, ShimSpec
from isorun.shim import headers


def test_shim_spec_fields_are_the_record_table() -> None:
    assert tuple(f.name for f in dataclasses.fields(ShimSpec)) == tuple(
        name for name, _how in record.FIELDS)


def test_tuple_positions_are_the_dataclasses_fields() -> None:
    assert tuple(f.name for f in dataclasses.fields(ShimMount)) == record.MOUNT_FIELDS
    assert tuple(f.name for f in dataclasses.fields(Rlimit)) == (
        "resource", "soft", "hard", "step")
    assert set(record.RLIMIT_FIELDS) == {"resource", "soft", "hard", "step"}
    assert record.LANDLOCK_RULE_FIELDS == ("path", "port", "access", "optional")


def test_positions_with_a_gap_are_refused() -> None:
    class Gap:
        a = 0
        b = 2

    with pytest.raises(ValueError, match=r"not 0\.\.1"):
        record._names(Gap)


def test_forwarded_signal_numbers_are_pythons() -> None:
    assert {name: int(getattr(signal, name)) for name in abi.FORWARDED_SIGNALS} == (
        abi.FORWARDED_SIGNALS)


def test_rlimit_numbers_are_pythons() -> None:
    for c_name, number in abi.RLIMITS.values():
        assert getattr(resource, c_name) == number, c_name


def test_generated_headers_escape_strings_and_check_every_member(tmp_path: Path) -> None:
    headers.write(tmp_path)
    tables = (tmp_path / "tables.h").read_text()
    # the magic's newline as an octal escape: a literal newline would end the #define
    assert '#define ISORUN_INDEX_MAGIC "isorun-launch-index\\012"' in tables
    for name, how in record.FIELDS:
        assert (f"((struct isorun_spec *)0)->{name})" in tables) == (how != "parent"), name
    assert "((struct isorun_mount *)0)->tree_fd)" in tables


def test_mount_kinds_are_the_record_table() -> None:
    from isorun.sandbox.spec import MountKind

    assert {kind.name: int(kind) for kind in MountKind} == record.MOUNT_KINDS


def test_errors_exit_with_the_setup_status_kernel_abi_names() -> None:
    # errors.py sits below kernel/ (it imports nothing of isorun), so it spells 125 itself
    from isorun.errors import InternalError, IsorunError

    assert IsorunError.exit_code == InternalError.exit_code == abi.EXIT_SETUP


def test_the_namespace_masks_are_the_flags_docker_names() -> None:
    from isorun.compile.seccomp_entries import CLONE_NAMESPACES, UNSHARE_NAMESPACES

    # moby's default profile masks clone's flags with 2114060288 (0x7E020000)
    assert CLONE_NAMESPACES == 0x7E020000
    assert UNSHARE_NAMESPACES == 0x7E020080
    assert len(set(abi.NAMESPACE_FLAGS.values())) == len(abi.NAMESPACE_FLAGS)
