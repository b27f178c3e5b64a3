"""Where coverage.py's configuration puts its data file, read as data.

``pytest --cov`` inside the sandbox writes its data in a private directory
(isorun.testing.session.CoverageData) and isorun copies it out afterwards, to the place
coverage.py would have used: ``$COVERAGE_FILE`` (the caller's environment), else the
``data_file`` of the project's coverage configuration, else ``.coverage``. The
configuration is the project's, written by whoever wrote the project: it is parsed here
without running anything, its files are opened without following links, and its
``data_file`` must stay inside the project, reached through no link.
"""

from __future__ import annotations

import configparser
import errno
import os
import stat
import tomllib
from collections.abc import Mapping, Sequence

from isorun.errors import UsageError

#: the files coverage.py reads its configuration from, in its order, after the one the
#: command line or COVERAGE_RCFILE names (coverage/config.py, config_files_to_try):
#: (name, whether the whole file is coverage's own)
CONFIG_FILES = ((".coveragerc", True), (".coveragerc.toml", True), ("setup.cfg", False),
                ("tox.ini", False), ("pyproject.toml", False))  # fmt: skip


class CoverageConfigError(UsageError):
    """The project's coverage configuration asks for something isorun will not do."""

    def __init__(self, where: str, message: str, hint: str) -> None:
        super().__init__(f"{where}: {message}")
        self.hint = hint

    def render(self) -> str:
        return f"isorun: error: {self}\n  hint: {self.hint}"


def config_file_option(args: Sequence[str]) -> str | None:
    """The path of pytest-cov's ``--cov-config`` in ``args``, if given."""
    found = None
    for index, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--cov-config" and index + 1 < len(args):
            found = args[index + 1]
        elif arg.startswith("--cov-config="):
            found = arg.partition("=")[2]
    return found


def data_file(args: Sequence[str], cwd: str, rootdir: str, env: Mapping[str, str]) -> str:
    """The absolute path the run's coverage data belongs at on the host.

    Raises CoverageConfigError when the configuration's ``data_file`` leads outside
    ``rootdir`` or through a link, uses variables, or a configuration file is a link.
    """
    if env.get("COVERAGE_FILE"):
        # The caller's own choice, which coverage.py also puts above its configuration.
        return os.path.abspath(os.path.join(cwd, env["COVERAGE_FILE"]))
    found = configured_data_file(args, cwd, env)
    if found is None:
        return os.path.join(cwd, ".coverage")
    where, value = found
    return checked_data_file(where, value, cwd, rootdir)


def configured_data_file(
    args: Sequence[str], cwd: str, env: Mapping[str, str]
) -> tuple[str, str] | None:
    """(config file, value) of ``[run] data_file`` in the configuration coverage.py
    would read, or None when it sets none."""
    named = config_file_option(args)
    if named in (None, ".coveragerc"):
        named = env.get("COVERAGE_RCFILE") or None
    candidates = [(named, True)] if named else []
    candidates += [(name, ours) for name, ours in CONFIG_FILES]
    for name, ours in candidates:
        assert name is not None
        path = os.path.join(cwd, name)
        text = _read_no_follow(path)
        if text is None:
            continue
        sections = _run_sections(path, text, ours)
        if sections is None:
            continue  # not coverage's: coverage.py reads on
        for section in sections:
            value = section.get("data_file")
            if value is not None:
                return path, str(value)
        return None  # the first file coverage.py uses decides, even without data_file
    return None


def _read_no_follow(path: str) -> bytes | None:
    """The bytes of the regular file ``path``, or None if there is none; a link is an
    error (the project's files are read, never followed)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as err:
        if os.path.islink(path):
            raise CoverageConfigError(
                path, "the coverage configuration is a symbolic link",
                "isorun reads the project's configuration without following links; "
                "replace the link by the file itself",
            ) from err  # fmt: skip
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        return f.read(1 << 20)


def _run_sections(path: str, text: bytes, ours: bool) -> list[Mapping[str, object]] | None:
    """The ``[run]`` tables of one configuration file, most specific first, or None
    when the file holds nothing of coverage's (then coverage.py reads the next)."""
    if path.endswith(".toml"):
        try:
            data = tomllib.loads(text.decode("utf-8-sig"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError):
            return None  # coverage.py refuses it inside the sandbox, saying why
        tool = data.get("tool")
        mine = tool.get("coverage") if isinstance(tool, dict) else None
        tables = [mine] if isinstance(mine, dict) else []
        if ours:
            tables.append(data)
        runs = [t["run"] for t in tables if isinstance(t.get("run"), dict)]
        return runs if (ours or mine) else None
    parser = configparser.RawConfigParser()
    try:
        parser.read_string(text.decode("utf-8", "replace"), source=path)
    except configparser.Error:
        return None
    names = ["coverage:run", "run"] if ours else ["coverage:run"]
    runs = [dict(parser.items(n)) for n in names if parser.has_section(n)]
    if ours or any(s.startswith("coverage:") for s in parser.sections()):
        return runs
    return None


def checked_data_file(where: str, value: str, cwd: str, rootdir: str) -> str:
    """``value`` as an absolute path inside ``rootdir`` whose existing components are
    no links, or a CoverageConfigError naming ``where``."""
    hint = (
        "write data_file as a path inside the project without links or variables "
        '(e.g. data_file = ".coverage"), or set COVERAGE_FILE on your command line'
    )
    if not value or "$" in value or value.startswith("~"):
        raise CoverageConfigError(
            where, f"[run] data_file = {value!r}: isorun does not expand variables "
            "in the project's configuration", hint)  # fmt: skip
    root = os.path.realpath(rootdir)
    path = os.path.normpath(os.path.join(os.path.realpath(cwd), value))
    if os.path.commonpath([root, path]) != root or path == root:
        raise CoverageConfigError(
            where, f"[run] data_file = {value!r} leads to {path}, outside the project "
            f"{root}", hint)  # fmt: skip
    # Each component below the project's root, the file's own name included: a link
    # there would send the copy anywhere the caller may write.
    current = root
    for part in os.path.relpath(path, root).split(os.sep):
        current = os.path.join(current, part)
        try:
            st = os.lstat(current)
        except FileNotFoundError:
            break
        if stat.S_ISLNK(st.st_mode):
            raise CoverageConfigError(
                where, f"[run] data_file = {value!r} goes through the link {current}",
                hint)  # fmt: skip
    return path


def open_directory_below(root: str, directory: str) -> int:
    """An O_PATH descriptor of ``directory``, walked from ``root`` one component at a
    time without following a link: the run may have replaced a directory it could write
    (a writable bind of the project) by a link since :func:`checked_data_file`."""
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        rel = os.path.relpath(directory, root)
        for part in [] if rel == "." else rel.split(os.sep):
            if part in ("", ".", ".."):
                raise OSError(errno.EINVAL, f"unexpected component {part!r}")
            next_fd = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                              dir_fd=fd)  # fmt: skip
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd
