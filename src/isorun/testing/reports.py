"""The report files a pytest session writes (``--junitxml``): bound writable into the
sandbox so they persist, and, as root, written privately and copied back afterwards."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

#: options naming a report file the run writes (pytest takes "--opt=V" and "--opt V")
REPORT_OPTIONS = ("--junitxml", "--junit-xml")


def report_files(args: list[str], cwd: str) -> list[str]:
    """The absolute paths of the report files ``args`` name (--junitxml)."""
    out = []
    for index, arg in enumerate(args):
        if arg == "--":
            break
        for option in REPORT_OPTIONS:
            if arg == option and index + 1 < len(args):
                out.append(args[index + 1])
            elif arg.startswith(option + "="):
                out.append(arg.partition("=")[2])
    return [os.path.abspath(os.path.join(cwd, p)) for p in out]


@dataclass(frozen=True, slots=True)
class ReportFile:
    """A report file the run writes (--junitxml), bound writable so it persists."""

    #: where the user wants it: the bind's destination
    path: str
    #: what is bound there: ``path`` itself, or, as root, a private file copied back
    src: str
    #: as root, the private 0700 directory holding ``src``, removed after the copy
    scratch: str = ""


def prepare_report(path: str) -> ReportFile | None:
    """Make ``path`` exist (empty, when missing) so it can be a mount point, and the file
    to bind there, or None when it is not a regular file reached without a link (then it
    is not bound, and pytest reports what it could not write).

    As root, the sandbox's uid 65534 may not write a root-owned file, and lending the
    file itself (a chown) would open it to every host process running as nobody for the
    run. So it gets a fresh file of its own in a 0700 directory only root can walk (the
    launcher clones bind sources it cannot reach), and :func:`collect_reports` copies it
    into ``path`` afterwards.
    """
    import stat
    import tempfile

    from isorun.testing.plan import sandbox_ids

    parent = os.path.dirname(path)
    if os.path.realpath(parent) != parent:
        return None  # a link on the way: the file would be made elsewhere
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o644)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(st.st_mode):
        return None
    if os.geteuid() != 0:
        return ReportFile(path, path)
    scratch = tempfile.mkdtemp(prefix="isorun-report-")
    src = os.path.join(scratch, "report")
    fd = os.open(src, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        os.fchown(fd, *sandbox_ids())
    finally:
        os.close(fd)
    return ReportFile(path, src, scratch)


def prepare_reports(paths: list[str]) -> list[ReportFile]:
    """The report files of ``paths`` that can be bound writable."""
    return [r for r in (prepare_report(p) for p in paths) if r is not None]


def collect_reports(reports: Sequence[ReportFile]) -> None:
    """As root, copy each private report into the file the user named (opened without
    following a link, truncated), then remove the private directory."""
    import shutil

    for report in reports:
        if not report.scratch:
            continue
        try:
            with (
                open(os.open(report.src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK), "rb") as src,
                open(os.open(report.path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW
                             | os.O_NONBLOCK), "wb") as dst,
            ):  # fmt: skip
                shutil.copyfileobj(src, dst)
        except OSError as err:
            sys.stderr.write(f"isorun: warning: could not copy the report to {report.path}: "
                             f"{err.strerror}\n")  # fmt: skip
        finally:
            shutil.rmtree(report.scratch, ignore_errors=True)
