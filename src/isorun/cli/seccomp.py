"""``isorun export|import|diff``: seccomp policies to and from other engines' formats.

Click only: parse arguments, call :mod:`isorun.api` and :mod:`isorun.compile.render.docker`
(``docker_import``, ``docker_diff``), write the result. Registered by ``isorun.cli.main``
through :data:`COMMANDS`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from isorun.errors import UsageError


def _policy(spec: str):  # type: ignore[no-untyped-def]  # returns schema.Seccomp
    from isorun import api

    return api.load_profile(spec).seccomp


def _write(text: str | bytes, output: str | None) -> None:
    data = text.encode() if isinstance(text, str) else text
    if output in (None, "-"):
        if isinstance(text, bytes) and sys.stdout.isatty():
            raise UsageError("refusing to write binary BPF to a terminal; use -o FILE")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        try:
            Path(output).write_bytes(data)
        except OSError as err:
            raise UsageError(f"cannot write {output}: {err.strerror or err}") from err


def _read(path: str) -> str:
    """A file the user named, read; one that cannot be read is their error to fix."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        why = err.strerror if isinstance(err, OSError) else "not UTF-8 text"
        raise UsageError(f"cannot read {path}: {why or err}") from err


_output = click.option("-o", "--output", metavar="FILE", help="Write here instead of stdout.")
_arch = click.option(
    "--arch",
    type=click.Choice(["x86_64", "aarch64"]),
    default=None,
    help="Architecture the filter is for (default: this machine's).",
)


_runtime = click.option(
    "--runtime",
    "runtimes",
    multiple=True,
    default=("none",),
    show_default=True,
    help="Also allow what these OCI runtimes call after loading the filter (runc-1.1,"
    " runc-1.1-nnp, runc-1.2, runc-1.3, runc-1.4, crun, all; repeatable): a minimal"
    " profile needs it to start in a container.",
)


def _with_runtime(policy, runtimes: tuple[str, ...], arch: str):  # type: ignore[no-untyped-def]
    from isorun.compile import engines

    return engines.with_runtime(policy, runtimes, arch)[0]


def _arch_or_native(arch: str | None) -> str:
    import os

    return arch or ("x86_64" if os.uname().machine == "x86_64" else os.uname().machine)


def _warn(policy) -> None:  # type: ignore[no-untyped-def]  # policy: schema.Seccomp
    from isorun.compile import engines

    for line in engines.export_warnings(policy):
        click.echo(f"isorun: warning: {line}", err=True)


@click.group("export")
def export() -> None:
    """Export a profile's seccomp filter for another engine (docker, oci, k8s, bpf, pfc)."""


@export.command("docker")
@click.argument("profile")
@_arch
@_runtime
@_output
def export_docker_cmd(
    profile: str, arch: str | None, runtimes: tuple[str, ...], output: str | None
) -> None:
    """moby's seccomp JSON (docker run --security-opt seccomp=FILE, podman too)."""
    from isorun.compile.render import docker

    policy = _with_runtime(_policy(profile), runtimes, _arch_or_native(arch))
    _write(docker.export_docker(policy, arch=_arch_or_native(arch)), output)
    _warn(policy)


@export.command("oci")
@click.argument("profile")
@_arch
@_runtime
@_output
def export_oci_cmd(
    profile: str, arch: str | None, runtimes: tuple[str, ...], output: str | None
) -> None:
    """The OCI runtime-spec linux.seccomp object (config.json)."""
    from isorun.compile.render import docker

    policy = _with_runtime(_policy(profile), runtimes, _arch_or_native(arch))
    _write(docker.export_oci(policy, arch=_arch_or_native(arch)), output)
    _warn(policy)


@export.command("k8s")
@click.argument("profile")
@click.option("--name", default="", help="metadata.name (default: the profile's name).")
@_arch
@_runtime
@_output
def export_k8s_cmd(
    profile: str, name: str, arch: str | None, runtimes: tuple[str, ...], output: str | None
) -> None:
    """A security-profiles-operator SeccompProfile (cluster-scoped, API v1) plus the pod
    snippet using it (localhostProfile: operator/NAME.json)."""
    from isorun import api
    from isorun.compile.render import k8s

    loaded = api.load_profile(profile)
    policy = _with_runtime(loaded.seccomp, runtimes, _arch_or_native(arch))
    text = k8s.export_k8s(policy, name=name or loaded.name, arch=_arch_or_native(arch))
    _write(text, output)
    _warn(policy)


@export.command("bpf")
@click.argument("profile")
@click.option("--layout", type=click.Choice(["tree", "linear"]), default="tree", show_default=True)
@_output
def export_bpf_cmd(profile: str, layout: str, output: str | None) -> None:
    """The raw BPF program (struct sock_filter array) the shim loads."""
    from isorun.compile.seccomp import compile_seccomp

    _write(compile_seccomp(_policy(profile), layout=layout).bpf, output)


@export.command("pfc")
@click.argument("profile")
@_output
def export_pfc_cmd(profile: str, output: str | None) -> None:
    """libseccomp's pseudo-C rendering of the filter, for reading."""
    from isorun.compile.seccomp import compile_seccomp

    _write(compile_seccomp(_policy(profile)).pfc, output)


@click.group("import")
def import_() -> None:
    """Import another engine's seccomp profile as an isorun profile."""


@import_.command("docker")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@_output
def import_docker_cmd(file: str, output: str | None) -> None:
    """Docker/moby seccomp JSON -> profile TOML; warns about what engines would ignore."""
    from isorun.compile.render import docker_import

    text, warnings = docker_import.import_docker(_read(file), file)
    for warning in warnings:
        click.echo(warning.render(), err=True)
    _write(text, output)


def _policy_and_doc(spec: str):  # type: ignore[no-untyped-def]  # (Seccomp, dict | None)
    """A profile, or a Docker JSON file read as engines read it (then also its JSON, so
    runc's ENOSYS stub is modelled from what the file lists)."""
    import json

    from isorun.compile.render import docker, docker_import
    from isorun.errors import ProfileError

    if spec.endswith(".json") and Path(spec).is_file():
        text = _read(spec)
        policy, _warnings = docker_import.docker_to_policy(text, spec)
        return policy, json.loads(text)
    policy = _policy(spec)
    try:
        return policy, docker.docker_object(policy)
    except ProfileError:
        return policy, None  # not exportable: no engine to model


@click.command("diff")
@click.argument("a")
@click.argument("b")
def diff(a: str, b: str) -> None:
    """Semantic difference of two profiles' seccomp filters (a profile, or a Docker JSON
    file); exit 1 when they differ. Also lists the numbers runc answers differently
    because of its ENOSYS stub above the highest listed syscall."""
    from isorun.compile.render import docker_diff

    pa, doc_a = _policy_and_doc(a)
    pb, doc_b = _policy_and_doc(b)
    lines = docker_diff.diff_policies(pa, pb)
    if doc_a is not None and doc_b is not None:
        lines += docker_diff.diff_engine_numbers(pa, pb, doc_a, doc_b)
    for line in lines:
        click.echo(line)
    if lines:
        sys.exit(1)
    click.echo("same decisions for every syscall")


#: what isorun.cli.main registers into the main group
COMMANDS = (export, import_, diff)
