"""One exit-code convention (README, "Exit codes"): an error has the same code whichever
handler sees it, the launch grammar's (cli.launch) or the click commands' (cli.main), and
a bare OSError that reaches either is an internal error (125), never a usage error."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

from isorun.__main__ import main
from isorun.errors import Diagnostic, HostError, Loc, ProfileError, UsageError


def _exit_of(args: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(args)
    code = done.value.code
    assert isinstance(code, int), code
    return code


def _raise(err: Exception) -> Any:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise err

    return fail


ERRORS = [
    (PermissionError(errno.EACCES, "Permission denied", "/x"), 125, "internal error"),
    (OSError(errno.EIO, "Input/output error"), 125, "internal error"),
    (UsageError("bad usage"), 2, "bad usage"),
    (ProfileError(Diagnostic(Loc("p.toml", 3, 1), "bad profile")), 2,
     "p.toml:3:1: error: bad profile"),
    (HostError("cannot enforce x", "no y", "enable y"), 125, "cannot enforce x"),
]


@pytest.mark.parametrize(("err", "code", "said"), ERRORS, ids=lambda x: type(x).__name__)
def test_each_error_has_one_exit_code_on_both_entry_points(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], err: Exception,
    code: int, said: str,
) -> None:
    from isorun import api
    from isorun.cli import launch

    monkeypatch.delenv("ISORUN_DEBUG", raising=False)
    monkeypatch.setattr(launch, "_launch_cached", _raise(err))
    assert _exit_of(["--profile", "strict", "--", "true"]) == code
    launched = capsys.readouterr().err
    monkeypatch.setattr(api, "compile_plan", _raise(err))
    assert _exit_of(["check", "strict"]) == code
    checked = capsys.readouterr().err
    assert said in launched and said in checked, (launched, checked)
    assert launched == checked  # the same words too: one handler
    assert "Traceback" not in launched


def test_debug_adds_the_traceback_and_keeps_the_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from isorun import api
    from isorun.cli import launch

    err = OSError(errno.EIO, "Input/output error")
    monkeypatch.setattr(launch, "_launch_cached", _raise(err))
    monkeypatch.setattr(api, "compile_plan", _raise(err))
    assert _exit_of(["--debug", "--profile", "strict", "--", "true"]) == 125
    assert "Traceback" in capsys.readouterr().err
    assert _exit_of(["--debug", "check", "strict"]) == 125
    assert "Traceback" in capsys.readouterr().err


def test_an_output_file_that_cannot_be_written_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "missing" / "strict.json"
    assert _exit_of(["export", "docker", "strict", "-o", str(out)]) == 2
    said = capsys.readouterr().err
    assert f"cannot write {out}: No such file or directory" in said, said
    assert "internal error" not in said
