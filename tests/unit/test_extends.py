"""extends: merge rules, cycles, missing includes, include chains in messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from isorun import api
from isorun.errors import ProfileError


def write(tmp_path: Path, name: str, text: str) -> str:
    (tmp_path / name).write_text(text)
    return str(tmp_path / name)


def test_grants_union_and_same_dst_replaces(tmp_path: Path) -> None:
    write(tmp_path, "base.toml", '[[mounts]]\ntype = "ro-bind"\ndst = "/usr"\n'
          '[[mounts]]\ntype = "ro-bind"\ndst = "/srv"\n'
          '[capabilities]\nkeep = ["CAP_CHOWN"]\n[environment]\nkeep = ["A"]\n'
          'set = { X = "1", Y = "2" }\n')
    top = write(tmp_path, "top.toml", 'extends = ["./base.toml"]\n'
                '[[mounts]]\ntype = "rw-bind"\ndst = "/srv"\n'
                '[[mounts]]\ntype = "tmpfs"\ndst = "/tmp"\n'
                '[capabilities]\nkeep = ["CAP_KILL"]\n[environment]\nkeep = ["B"]\n'
                'set = { Y = "3" }\n')
    profile = api.load_profile(top)
    assert [(m.type, m.dst) for m in profile.mounts] == [
        ("ro-bind", "/usr"), ("rw-bind", "/srv"), ("tmpfs", "/tmp")]
    assert profile.capabilities.keep == ("CAP_CHOWN", "CAP_KILL")
    assert profile.environment.keep == ("A", "B")
    assert dict(profile.environment.set) == {"X": "1", "Y": "3"}


def test_restrictions_intersect_tighter_limit_kept(tmp_path: Path) -> None:
    write(tmp_path, "base.toml", "[limits]\nnofile = 100\ncpu = 10\n")
    top = write(tmp_path, "top.toml", 'extends = ["./base.toml"]\n[limits]\nnofile = 50\n')
    profile = api.load_profile(top)
    assert (profile.limits.nofile, profile.limits.cpu) == (50, 10)


def test_loosening_a_restriction_is_an_error_with_both_places(tmp_path: Path) -> None:
    write(tmp_path, "base.toml", '[network]\nmode = "none"\n[limits]\nnofile = 100\n')
    top = write(tmp_path, "top.toml", 'extends = ["./base.toml"]\n[namespaces]\nnet = false\n'
                '[network]\nmode = "host"\n[limits]\nnofile = 200\n')
    with pytest.raises(ProfileError) as info:
        api.load_profile(top)
    text = info.value.render()
    assert 'network.mode = "host" loosens "none" set by ' in text
    assert "base.toml:2\n" in text
    assert "limits.nofile = 200 loosens 100" in text
    assert 'add "network.mode" to override' in text


def test_override_replaces(tmp_path: Path) -> None:
    write(tmp_path, "base.toml", "[limits]\nnofile = 100\n")
    top = write(tmp_path, "top.toml", 'extends = ["./base.toml"]\noverride = ["limits.nofile"]\n'
                "[limits]\nnofile = 200\n")
    assert api.load_profile(top).limits.nofile == 200


def test_namespace_stays_on(tmp_path: Path) -> None:
    write(tmp_path, "base.toml", "[namespaces]\nipc = true\n")
    top = write(tmp_path, "top.toml", 'extends = ["./base.toml"]\n[namespaces]\nipc = false\n')
    with pytest.raises(ProfileError, match=r"namespaces\.ipc = false loosens true"):
        api.load_profile(top)


def test_cycle_is_detected(tmp_path: Path) -> None:
    write(tmp_path, "a.toml", 'extends = ["./b.toml"]\n')
    write(tmp_path, "b.toml", 'extends = ["./a.toml"]\n')
    with pytest.raises(ProfileError) as info:
        api.load_profile(str(tmp_path / "a.toml"))
    text = info.value.render()
    assert "extends cycle: a.toml -> b.toml -> a.toml" in text
    assert "(included from" in text


def test_self_extends_is_a_cycle(tmp_path: Path) -> None:
    spec = write(tmp_path, "a.toml", 'extends = ["./a.toml"]\n')
    with pytest.raises(ProfileError, match="extends cycle"):
        api.load_profile(spec)


def test_missing_include(tmp_path: Path) -> None:
    spec = write(tmp_path, "a.toml", 'description = "x"\nextends = ["./nope.toml", "strct"]\n')
    with pytest.raises(ProfileError) as info:
        api.load_profile(spec)
    text = info.value.render()
    assert "a.toml:2:" in text and "profile file not found: ./nope.toml" in text
    assert "did you mean 'strict'?" in text


def test_error_in_included_file_shows_chain(tmp_path: Path) -> None:
    write(tmp_path, "base.toml", "[limits]\nnofile = -1\n")
    top = write(tmp_path, "top.toml", 'extends = ["./base.toml"]\n')
    with pytest.raises(ProfileError) as info:
        api.load_profile(top)
    text = info.value.render()
    assert "base.toml:2:1 (included from " in text
    assert "top.toml:1): error: limits.nofile must not be negative" in text


def test_builtin_extends_and_provenance() -> None:
    plan = api.compile_plan("build")
    rw = [s for s in plan.steps if s.describe().startswith("rw-bind")]
    assert rw and "build.toml" in rw[0].loc.file
