"""The launch index the C front end reads: its layout, name, and when none is written."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest

import isorun
from isorun.cache import entry as cache_entry
from isorun.cache import files as cache_files
from isorun.cache import index as cache_index
from isorun.cache import record as cache_record
from isorun.cache import store as cache_store
from isorun.host import mac
from tests.integration.conftest import missing

#: the installed isorun package (src/isorun in a checkout)
PACKAGE = Path(isorun.__file__).parent
# every file looks old enough, however long the suite runs before these tests
NOW_SETTLED = time.time_ns() + 365 * 24 * 3600 * 10**9


def decode(blob: bytes) -> dict[str, object]:
    """The index as launch_index.c reads it (the layout in isorun.cache.index)."""
    order = sys.byteorder
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        assert pos + n <= len(blob), "past the end"
        pos += n
        return blob[pos - n : pos]

    def uint(n: int) -> int:
        return int.from_bytes(take(n), order)

    def field() -> bytes:
        return take(uint(4))

    assert take(len(cache_index.INDEX_MAGIC)) == cache_index.INDEX_MAGIC
    assert uint(4) == cache_index.INDEX_FORMAT
    length, tag = uint(8), take(mac.TAG_SIZE)
    assert length == len(blob) - pos
    body = blob[pos:]
    out: dict[str, object] = {"spec": field(), "cwd": field()}
    out["ids"] = tuple(uint(4) for _ in range(4))
    out["bindir"] = field()
    out["uname"] = tuple(field() for _ in range(4))
    out["files"] = [(field(), uint(1), field()) for _ in range(uint(4))]
    out["env"] = [(field(), uint(1), field()) for _ in range(uint(4))]
    out["real"] = [(field(), field()) for _ in range(uint(4))]
    out["whole"] = uint(1)
    out["patterns"] = [field() for _ in range(uint(4))]
    out["pairs"] = [(field(), field()) for _ in range(uint(4))]
    out["stats"] = [(field(), *(uint(8) for _ in range(5)), uint(4)) for _ in range(uint(4))]
    out["backend"], out["mode"], out["needs_weaker"] = field(), uint(1), uint(1)
    out["warning"] = field()
    if out["mode"] == cache_record.MODE_LANDLOCK_AUTO:
        out["nnp"], out["path"] = uint(1), (uint(1), field())
        tools = []
        for _ in range(uint(4)):
            name, found = field(), field()
            tools.append((name, found, (*(uint(8) for _ in range(5)), uint(4)) if found else ()))
        out["tools"] = tools
        files = []
        for _ in range(uint(4)):
            name, present = field(), uint(1)
            files.append((name, present,
                          (*(uint(8) for _ in range(5)), uint(4)) if present else ()))
        out["auto_files"] = files
    out["record"] = field()
    assert pos == len(blob), "trailing bytes"
    # the tag: this user's key, over the name the file goes under and the body
    spec, cwd, backend = (out[k] for k in ("spec", "cwd", "backend"))
    assert isinstance(spec, bytes) and isinstance(cwd, bytes) and isinstance(backend, bytes)
    filed = cache_index.index_name(os.fsdecode(spec), os.fsdecode(cwd), os.getuid(),
                                    os.fsdecode(backend))
    assert mac.verify(mac.key(), b"index", filed, body, tag)
    return out


@pytest.fixture
def entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """A compiled entry with a launch record, for a profile in the working directory."""
    profile = tmp_path / "p.toml"
    profile.write_text('extends = ["strict"]\n[identity]\nhostname = "x"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TERM", "xterm")
    _plan, _bpf, made = cache_store.compile_entry(
        "./p.toml", None, lambda plan, bpf: cache_record.make_record(plan, bpf)
    )
    if made is None or made["launch"] is None:
        missing("a launch record (user namespaces and the shim)")
    return made


def test_fnv1a64_known_values() -> None:
    # The published FNV-1a 64 test vectors.
    assert cache_index.fnv1a64(b"") == 0xCBF29CE484222325
    assert cache_index.fnv1a64(b"a") == 0xAF63DC4C8601EC8C
    assert cache_index.fnv1a64(b"foobar") == 0x85944171F73967E8


#: prints isorun_index_name (index_name.c) for each line "PROFILE CWD UID BACKEND|-"
NAME_DRIVER = r"""
#include <stdio.h>
#include <string.h>
#include "launcher.h"

int main(void) {
    char profile[256], cwd[256], backend[256], name[ISORUN_INDEX_NAME_SIZE];
    unsigned uid;
    while (scanf("%255s %255s %u %255s", profile, cwd, &uid, backend) == 4) {
        isorun_index_name(profile, cwd, uid, strcmp(backend, "-") ? backend : "", name);
        puts(name);
    }
    return 0;
}
"""


def test_the_front_end_names_the_index_as_the_writer_does(tmp_path: Path) -> None:
    """Both implementations of the name on the same inputs: a difference would make every
    launch a miss (the reader compares every condition, so never a wrong hit)."""
    import random
    import shutil
    import subprocess

    from isorun.shim import headers

    if shutil.which("gcc") is None:
        missing("gcc to build the index name driver")
    shim = PACKAGE / "shim"
    headers.write(tmp_path)
    (tmp_path / "driver.c").write_text(NAME_DRIVER)
    subprocess.run(["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-Wconversion",
                    f"-I{tmp_path}", f"-I{shim}", f"-I{shim / 'launcher'}", "-o",
                    str(tmp_path / "driver"), str(tmp_path / "driver.c"),
                    str(shim / "launcher" / "index_name.c")],
                   check=True, timeout=60)  # fmt: skip
    rng = random.Random(19)
    cases = [("strict", "/", 0, ""), ("./p.toml", "/home/u/proj", 1000, "landlock")]
    for _ in range(200):
        word = "".join(rng.choices("abcXYZ019./-_é", k=rng.randrange(1, 40)))
        cases.append((word, "/" + word[::-1], rng.randrange(0, 2**32), rng.choice(["", word])))
    lines = "".join(f"{p} {c} {u} {b or '-'}\n" for p, c, u, b in cases)
    done = subprocess.run([str(tmp_path / "driver")], input=lines.encode(),
                          capture_output=True, check=True, timeout=60)  # fmt: skip
    assert done.stdout.decode().split() == [cache_index.index_name(*case) for case in cases]


def test_index_name_depends_on_spec_cwd_and_uid() -> None:
    names = {
        cache_index.index_name("strict", "/a", 0),
        cache_index.index_name("strict", "/b", 0),
        cache_index.index_name("strict", "/a", 1),
        cache_index.index_name("./strict", "/a", 0),
        cache_index.index_name("strict", "/a", 0, "landlock"),
        cache_index.index_name("strict", "/a", 0, "auto"),
    }
    assert len(names) == 6
    assert all(re.fullmatch(r"[0-9a-f]{16}\.launch", n) for n in names)


def test_index_holds_every_condition(entry: dict[str, object], tmp_path: Path) -> None:
    blob = cache_index.index_blob(entry, NOW_SETTLED)
    assert isinstance(blob, bytes), blob
    index = decode(blob)
    assert (index["spec"], index["cwd"]) == (b"./p.toml", os.fsencode(os.getcwd()))
    assert index["ids"] == (os.getuid(), os.getgid(), os.geteuid(), os.getegid())
    assert index["bindir"] == os.fsencode(os.path.realpath(os.path.dirname(sys.executable)))
    assert index["uname"] == tuple(os.fsencode(v) for v in os.uname()[:1] + os.uname()[2:])
    env = {name.decode(): (present, value) for name, present, value in index["env"]}  # type: ignore[attr-defined]
    assert set(env) == set(cache_index.INDEX_ENV)
    assert env["XDG_CACHE_HOME"] == (1, os.fsencode(str(tmp_path / "cache")))
    # The projection: strict keeps TERM, LANG, LC_* and TZ.
    assert (index["whole"], index["patterns"]) == (0, [b"TERM", b"LANG", b"LC_*", b"TZ"])
    assert (b"TERM", b"xterm") in index["pairs"]  # type: ignore[operator]
    stats = {path.decode() for path, *_ in index["stats"]}  # type: ignore[attr-defined]
    assert str(tmp_path / "p.toml") in stats  # the profile, as the loader opened it
    assert any(path.endswith("strict.toml") for path in stats)  # what it extends
    assert {path for path, *_ in cache_entry.code_stamp()} <= stats
    assert sys.executable in stats
    from isorun.sandbox import flat

    assert index["record"] == flat.encode(entry["launch"]["spec"])  # type: ignore[index]


def test_no_index_for_a_file_changed_just_now(entry: dict[str, object]) -> None:
    # The profile was written a moment ago: its ctime is inside the settle window.
    reason = cache_index.index_blob(entry)
    assert isinstance(reason, str) and "changed less than" in reason


def test_no_index_without_a_launch_record(entry: dict[str, object]) -> None:
    assert cache_index.index_blob({**entry, "launch": None}, NOW_SETTLED) == "no launch record"


def test_no_index_when_the_profile_changed_since_compiling(
    entry: dict[str, object], tmp_path: Path
) -> None:
    (tmp_path / "p.toml").write_text('extends = ["strict"]\n[identity]\nhostname = "y"\n')
    reason = cache_index.index_blob(entry, NOW_SETTLED)
    assert isinstance(reason, str) and "p.toml changed" in reason


def test_no_index_when_a_kept_variable_changed(
    entry: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TERM", "vt100")
    reason = cache_index.index_blob(entry, NOW_SETTLED)
    assert isinstance(reason, str) and "kept environment variable" in reason


def test_no_index_without_home(entry: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOME")
    assert "HOME" in str(cache_index.index_blob(entry, NOW_SETTLED))


def test_write_index_is_private_and_atomic(entry: dict[str, object], tmp_path: Path) -> None:
    directory = tmp_path / "cache" / "isorun"
    blob = cache_index.index_blob(entry, NOW_SETTLED)
    assert isinstance(blob, bytes)
    name = cache_index.index_name("./p.toml", os.getcwd(), os.getuid())
    assert cache_files._write_file(str(directory), name, blob)
    st = (directory / name).stat()
    assert (st.st_mode & 0o777, directory.stat().st_mode & 0o777) == (0o600, 0o700)
    assert [p.name for p in directory.iterdir()] == [name]  # no temporary file left


def test_no_index_for_a_package_imported_from_the_working_directory(
    entry: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `python -m isorun` in src/ imports ./isorun; the front end's Python would import
    # the installed package, so this compiler's plan must not become the front end's.
    source_root = PACKAGE.resolve().parent
    monkeypatch.chdir(source_root)
    monkeypatch.setattr(sys, "path", ["", *sys.path[1:]])
    reason = cache_index.index_blob(entry, NOW_SETTLED)
    assert reason == "isorun was imported from the working directory"
