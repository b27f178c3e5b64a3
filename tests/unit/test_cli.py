"""The CLI: exact messages and exit codes, no tracebacks, for good and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from isorun.__main__ import main as entry
from isorun.cli.main import cli


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_profiles_lists_builtins_with_descriptions() -> None:
    code, out, _ = invoke("profiles")
    assert code == 0
    names = [line.split()[0] for line in out.splitlines()]
    assert names == ["build", "strict", "test", "web"]
    assert "no network" in out


def test_explain_builtin_in_words() -> None:
    code, out, _ = invoke("explain", "strict")
    assert code == 0
    assert out.startswith("plan for profile strict\n")
    assert "<builtin>/strict.toml:" in out and "execve the command" in out


def test_explain_file_as_json(tmp_path: Path) -> None:
    path = tmp_path / "some.toml"
    path.write_text('extends = ["strict"]\n[identity]\nhostname = "box"\n')
    code, out, _ = invoke("explain", str(path), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["profile"] == "some"
    host = [s for s in data["steps"] if s["step"] == "Hostname"]
    assert host[0]["name"] == "box" and host[0]["from"].endswith("some.toml:3")


def test_explain_bad_profile_exit_2_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[namespaces]\nusr = true\n")
    code, out, err = invoke("explain", str(path))
    assert code == 2
    assert "bad.toml:2:1: error: unknown key 'usr' in namespaces" in err
    assert "hint: did you mean 'user'?" in err
    assert "Traceback" not in out + err


def test_explain_missing_builtin() -> None:
    code, _, err = invoke("explain", "stric")
    assert code == 2
    assert "no built-in profile named 'stric'" in err and "did you mean 'strict'?" in err


def test_explain_missing_file() -> None:
    code, _, err = invoke("explain", "./nope.toml")
    assert code == 2 and "profile file not found: ./nope.toml" in err


def test_check_ok_and_bad(tmp_path: Path) -> None:
    code, out, _ = invoke("check", "web")
    assert code == 0 and out.startswith("web: ok")
    bad = tmp_path / "b.toml"
    bad.write_bytes(b"\xff\xfe")
    code, _, err = invoke("check", str(bad))
    assert code == 2 and "not UTF-8" in err


def test_unknown_subcommand_is_usage_error() -> None:
    code, _, err = invoke("explian")
    assert code == 2 and "No such command" in err


def run_main(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "isorun", *args], capture_output=True,
                          text=True, timeout=60)


def test_launch_without_command_is_usage_error() -> None:
    result = run_main("--profile", "strict")
    assert result.returncode == 2
    assert result.stderr == ("isorun: error: no command to run: isorun --profile P -- CMD "
                             "[ARG...]\n")


def test_launch_without_profile_value() -> None:
    result = run_main("--profile")
    assert result.returncode == 2 and "--profile needs a value" in result.stderr


def test_launch_unknown_option() -> None:
    result = run_main("--profile", "strict", "--frobnicate", "true")
    assert result.returncode == 2 and "unknown option '--frobnicate'" in result.stderr


def test_launch_with_bad_profile_reports_location(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[network]\nmode = "nowhere"\n')
    result = run_main("--profile", str(path), "--", "true")
    assert result.returncode == 2
    assert "p.toml:2:1: error: network.mode = 'nowhere' is not one of none, host" in result.stderr
    assert "Traceback" not in result.stderr


def test_main_function_exits_with_code(capsys: object) -> None:
    try:
        entry(["--profile", "strict"])
    except SystemExit as exit_:
        assert exit_.code == 2
    else:
        raise AssertionError("main must exit")
