"""The compiled-plan cache: keys, invalidation, file safety, atomic writes, corruption."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import isorun
from isorun.cache import entry as cache_entry
from isorun.cache import files as cache_files
from isorun.cache import record as cache_record
from isorun.cache import store as cache_store

BASE = """description = "base"
[namespaces]
user = true
pid = true
mount = true
[filesystem]
root = "tmpfs"
cwd = "/"
[[mounts]]
type = "ro-bind"
dst = "/usr"
[seccomp]
enabled = false
"""

TOP = """extends = ["./base.toml"]
description = "top"
[identity]
hostname = "one"
"""

#: the installed isorun package (src/isorun in a checkout)
PACKAGE = Path(isorun.__file__).parent


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A profile that extends another, a private cache dir, and the tree as CWD."""
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "base.toml").write_text(BASE)
    (tmp_path / "p" / "top.toml").write_text(TOP)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("ISORUN_CACHE", raising=False)
    monkeypatch.chdir(tmp_path / "p")
    return tmp_path


def _compile_and_store(spec: str) -> str:
    _plan, _bpf, entry = cache_store.compile_entry(spec)
    assert entry is not None
    assert cache_store.store(entry)
    return str(entry["key"])


def _notes() -> tuple[list[str], object]:
    notes: list[str] = []
    return notes, notes.append


def test_hit_after_store_returns_the_same_plan(tree: Path) -> None:
    plan, bpf, entry = cache_store.compile_entry("./top.toml")
    assert entry is not None and cache_store.store(entry)
    key, hit = cache_store.lookup("./top.toml")
    assert hit is not None and key == entry["key"]
    assert cache_entry.load_plan(hit) == plan
    assert hit["bpf"] == bpf


def test_deps_cover_included_files(tree: Path) -> None:
    _, _, entry = cache_store.compile_entry("./top.toml")
    assert entry is not None
    reals = {real for _, real, _ in entry["deps"]}  # type: ignore[attr-defined]
    assert reals == {str((tree / "p" / n).resolve()) for n in ("top.toml", "base.toml")}


def test_editing_the_profile_invalidates(tree: Path) -> None:
    _compile_and_store("./top.toml")
    (tree / "p" / "top.toml").write_text(TOP.replace('"one"', '"two"'))
    assert cache_store.lookup("./top.toml")[1] is None


def test_editing_an_included_file_invalidates(tree: Path) -> None:
    _compile_and_store("./top.toml")
    (tree / "p" / "base.toml").write_text(BASE.replace('"base"', '"base, edited"'))
    assert cache_store.lookup("./top.toml")[1] is None


def test_same_size_same_mtime_edit_invalidates(tree: Path) -> None:
    # Content hashes, not stat stamps: an edit inside one mtime tick is still seen.
    path = tree / "p" / "base.toml"
    before = path.stat()
    _compile_and_store("./top.toml")
    path.write_text(BASE.replace('"base"', '"BASE"'))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert cache_store.lookup("./top.toml")[1] is None


def test_swapping_an_include_symlink_invalidates(tree: Path) -> None:
    p = tree / "p"
    (p / "real_a.toml").write_text(BASE)
    (p / "real_b.toml").write_text(BASE)
    (p / "base.toml").unlink()
    (p / "base.toml").symlink_to("real_a.toml")
    _compile_and_store("./top.toml")
    (p / "base.toml").unlink()
    (p / "base.toml").symlink_to("real_b.toml")
    assert cache_store.lookup("./top.toml")[1] is None


def test_cwd_change_changes_the_key(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = _compile_and_store("strict")
    other = tree / "elsewhere"
    other.mkdir()
    monkeypatch.chdir(other)
    new_key, hit = cache_store.lookup("strict")
    assert new_key != key and hit is None


def test_home_change_changes_the_key(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = _compile_and_store("strict")
    monkeypatch.setenv("HOME", str(tree))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tree / "cache"))
    assert cache_store.lookup("strict")[0] != key


def test_version_change_changes_the_key(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = _compile_and_store("strict")
    from isorun import version

    monkeypatch.setattr(version, "__version__", "99.0.0")
    new_key, hit = cache_store.lookup("strict")
    assert new_key != key and hit is None


def test_code_change_changes_the_key(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = _compile_and_store("strict")
    stamp = cache_entry.code_stamp()
    changed = ((stamp[0][0], stamp[0][1] + 1, stamp[0][2], stamp[0][3]), *stamp[1:])
    monkeypatch.setattr(cache_entry, "code_stamp", lambda: changed)
    assert cache_store.lookup("strict")[0] != key


def test_facts_change_changes_the_key(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = _compile_and_store("strict")
    real = cache_entry.facts_key()
    monkeypatch.setattr(cache_entry, "facts_key", lambda: (*real[:5], "9.9.9-other", *real[6:]))
    assert cache_store.lookup("strict")[0] != key


def test_entry_variables_are_checked(tree: Path) -> None:
    key = _compile_and_store("strict")
    directory = cache_files.cache_dir()
    entry = cache_files.read_entry(os.path.join(directory, key))
    assert entry is not None
    entry["variables"] = (("CWD", "/somewhere/else"),)
    assert cache_files.write_entry(directory, key, entry)
    notes, log = _notes()
    assert cache_store.lookup("strict", log)[1] is None  # type: ignore[arg-type]
    assert any("other inputs" in n for n in notes)


def test_cache_files_are_private(tree: Path) -> None:
    key = _compile_and_store("strict")
    directory = cache_files.cache_dir()
    assert os.stat(directory).st_mode & 0o777 == 0o700
    assert os.stat(os.path.join(directory, key)).st_mode & 0o777 == 0o600


def test_open_cache_dir_is_tightened(tree: Path) -> None:
    directory = cache_files.cache_dir()
    os.makedirs(directory)
    os.chmod(directory, 0o777)
    _compile_and_store("strict")
    assert os.stat(directory).st_mode & 0o777 == 0o700


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666])
def test_group_or_world_writable_entry_is_ignored(tree: Path, mode: int) -> None:
    key = _compile_and_store("strict")
    os.chmod(os.path.join(cache_files.cache_dir(), key), mode)
    notes, log = _notes()
    assert cache_store.lookup("strict", log)[1] is None  # type: ignore[arg-type]
    assert any("writable by group or others" in n for n in notes)


@pytest.mark.needs("root")
def test_entry_owned_by_another_user_is_ignored_as_root(tree: Path) -> None:
    key = _compile_and_store("strict")
    os.chown(os.path.join(cache_files.cache_dir(), key), 12345, -1)
    notes, log = _notes()
    assert cache_store.lookup("strict", log)[1] is None  # type: ignore[arg-type]
    assert any("owned by uid 12345" in n for n in notes)


def test_entry_owned_by_another_user_is_ignored_unprivileged(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without root we cannot chown; pretend to be another user instead.
    key = _compile_and_store("strict")
    uid = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: uid + 1)
    notes, log = _notes()
    assert cache_files.read_entry(os.path.join(cache_files.cache_dir(), key), log) is None  # type: ignore[arg-type]
    assert any("owned by uid" in n for n in notes)


def test_symlinked_entry_is_ignored(tree: Path) -> None:
    key = _compile_and_store("strict")
    path = os.path.join(cache_files.cache_dir(), key)
    os.rename(path, path + ".real")
    os.symlink(path + ".real", path)
    assert cache_store.lookup("strict")[1] is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],
        lambda b: b[:-1] + bytes([b[-1] ^ 1]),
        lambda b: b"",
        lambda b: b"not a cache file at all",
        lambda b: b[:18] + bytes([99]) + b[19:],
    ],
    ids=["truncated", "flipped-bit", "empty", "garbage", "other-format"],
)
def test_corrupt_entry_recompiles(tree: Path, damage: object) -> None:
    key = _compile_and_store("strict")
    path = os.path.join(cache_files.cache_dir(), key)
    with open(path, "rb") as f:
        blob = f.read()
    with open(path, "wb") as f:
        f.write(damage(blob))  # type: ignore[operator]
    notes, log = _notes()
    assert cache_store.lookup("strict", log)[1] is None  # type: ignore[arg-type]
    assert any("corrupt" in n for n in notes)  # said under --verbose, silent otherwise
    from isorun import api

    _plan, _, entry = api.compiled("strict")
    assert entry is not None
    assert cache_store.lookup("strict")[1] is not None  # rewritten


def test_write_is_atomic_rename(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key = _compile_and_store("strict")
    directory = cache_files.cache_dir()
    path = os.path.join(directory, key)
    before = Path(path).read_bytes()
    calls: list[tuple[str, str]] = []
    real_replace = os.replace

    def failing_replace(src: str, dst: str) -> None:
        calls.append((src, dst))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    entry = cache_files.read_entry(path)
    assert entry is not None
    entry["profile"] = "changed"
    assert not cache_files.write_entry(directory, key, entry)
    monkeypatch.setattr(os, "replace", real_replace)
    # the old entry is untouched, the temporary file is gone, and it was in the same dir
    assert Path(path).read_bytes() == before
    assert sorted(os.listdir(directory)) == [key]
    assert calls and os.path.dirname(calls[0][0]) == directory


def test_no_cache_dir_means_compile_only(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tree / "cache"
    blocker.write_text("a file where the cache dir would be")
    notes, log = _notes()
    _plan, _, entry = cache_store.compile_entry("strict")
    assert entry is not None
    assert not cache_store.store(entry, log)  # type: ignore[arg-type]
    assert notes


def test_xdg_cache_home_must_be_absolute(monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_files.cache_dir({"XDG_CACHE_HOME": "rel", "HOME": "/h"}) == "/h/.cache/isorun"
    assert cache_files.cache_dir({"XDG_CACHE_HOME": "/x", "HOME": "/h"}) == "/x/isorun"


def test_variables_match_host_facts() -> None:
    from isorun.host import facts

    # The key may know more variables than the compiler, never fewer or different ones.
    ours = cache_entry.variables()
    assert set(ours) == cache_entry.VARIABLE_NAMES
    for name, value in facts.variables(facts.probe()).items():
        assert ours.get(name) == value, name


def test_api_cached_plan_does_not_recompile(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from isorun import api
    from isorun.cache import plans

    first = api._cached_plan("./top.toml")
    monkeypatch.setattr(plans, "compiled", lambda *a, **k: pytest.fail("recompiled"))
    assert api._cached_plan("./top.toml") is first


def test_api_cached_plan_sees_edits(tree: Path) -> None:
    from isorun import api

    first = api._cached_plan("./top.toml")
    (tree / "p" / "top.toml").write_text(TOP.replace('"one"', '"two"'))
    second = api._cached_plan("./top.toml")
    assert second != first


@pytest.mark.parametrize("name", ["build", "strict", "test", "web"])
def test_cached_launch_record_is_the_regular_paths_spec(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the warm launch reads back from disk is what api.Popen would hand the same
    spawn for the same command, field for field: a record layout or build_spec change
    that the cache does not follow fails here."""
    from isorun.compile.plan import Cgroup, WallTime
    from isorun.sandbox import native
    from isorun.sandbox.spec import spec_record

    monkeypatch.delenv("ISORUN_CACHE", raising=False)
    # A working directory anyone may write: as root, a writable bind the sandbox's user
    # (65534) cannot write gets no record (api.root_write_notes is said on every launch).
    work = tmp_path / "work"
    work.mkdir(mode=0o1777)
    work.chmod(0o1777)
    monkeypatch.chdir(work)
    plan, bpf, entry = cache_store.compile_entry(name, launch_record=cache_record.make_record)
    assert entry is not None
    if plan.find(Cgroup) or plan.find(WallTime) or plan.backend not in ("auto", "native"):
        assert entry["launch"] is None  # the warm path does not do those
        return
    assert cache_store.store(entry, directory=str(tmp_path))
    _key, hit = cache_store.lookup(name, directory=str(tmp_path))
    assert hit is not None
    argv = ["/bin/echo", "hi"]
    record = cache_record.usable(hit["launch"], argv)
    assert record is not None
    # the regular path's spec, and the launcher's refusal report (isorun.compile.refusals)
    from isorun.compile.refusals import report_fields

    assert record == {**spec_record(native.build_spec(plan, argv, os.environ, bpf)),
                      **report_fields(plan, bpf)}


def test_env_projection_is_a_superset_of_keep() -> None:
    env = {"TERM": "x", "LC_ALL": "C", "LCX": "no", "HOME": "/h", "TZ": "UTC"}
    assert cache_record.env_projection(("TERM", "LC_*", "TZ"), env) == (
        ("LC_ALL", "C"),
        ("TERM", "x"),
        ("TZ", "UTC"),
    )
    assert cache_record.env_projection(None, env) == tuple(sorted(env.items()))


def test_changed_kept_variable_makes_record_unusable(monkeypatch: pytest.MonkeyPatch) -> None:
    from isorun.sandbox.parent import RECORD_FORMAT

    record = {"format": RECORD_FORMAT, "spec": {}, "env_patterns": ("TERM",),
              "env": (("TERM", "xterm"),)}  # fmt: skip
    monkeypatch.setenv("TERM", "xterm")
    assert cache_record.usable(record, ["/bin/true"]) is not None
    monkeypatch.setenv("TERM", "vt100")
    assert cache_record.usable(record, ["/bin/true"]) is None
    monkeypatch.setenv("TERM", "xterm")
    assert cache_record.usable(record, ["/bin/tr\0ue"]) is None


def test_a_plan_whose_sandbox_could_write_the_cache_is_refused(tmp_path: Path) -> None:
    """A writable bind over the plan cache would let the sandbox plant a pickle the next
    launch loads on the host: refused, naming the mount; a read-only one is fine."""
    from isorun import api
    from isorun.errors import HostError
    from isorun.host.facts import HostFacts

    facts = HostFacts(uid=1000, gid=1000, arch="x86_64", kernel="6.18")
    variables = {"CWD": str(tmp_path), "HOME": "/home/u"}
    build = api.compile_plan("build", facts, variables)
    with pytest.raises(HostError) as info:
        cache_store.check_not_writable(build, str(tmp_path / ".cache" / "isorun"))
    assert "build.toml:" in info.value.render() and "plan cache" in info.value.render()
    cache_store.check_not_writable(build, "/home/u/.cache/isorun")  # outside: fine
    strict = api.compile_plan("strict", facts, variables)  # ${CWD} read-only
    cache_store.check_not_writable(strict, str(tmp_path / ".cache" / "isorun"))


# --- the tag (isorun.host.mac): what owner and mode cannot tell ---------------------------


@pytest.fixture
def fresh_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[bytes]:
    """A key of this test's own name in the user keyring (the caller's real one may be in
    use by other tests and launches); removed afterwards."""
    from isorun.host import mac

    name = f"isorun:test-{os.getpid()}-{os.urandom(4).hex()}".encode()
    monkeypatch.setattr(mac, "KEY_NAME", name)
    monkeypatch.setattr(mac, "_cached", None)
    if mac.key(create=True) is None:
        from tests.integration.conftest import missing

        missing("keyctl (the kernel keyring) for this process")
    yield name
    _drop_key(name)


def _drop_key(name: bytes) -> None:
    """keyctl(KEYCTL_INVALIDATE) of our key ``name``: as if it was never made."""
    import ctypes

    from isorun.host import mac

    _, keyctl = mac.SYSCALLS[os.uname().machine]
    fn = ctypes.CDLL(None, use_errno=True).syscall
    fn.restype = ctypes.c_long
    serial = fn(ctypes.c_long(keyctl), ctypes.c_long(10), ctypes.c_long(-4),
                ctypes.c_char_p(b"user"), ctypes.c_char_p(name), ctypes.c_long(0))
    if serial >= 0:
        assert fn(ctypes.c_long(keyctl), ctypes.c_long(21), ctypes.c_long(serial)) == 0


@pytest.mark.parametrize("where", ["magic", "format", "tag", "payload-start", "payload-middle",
                                   "last"])
def test_entry_with_any_byte_changed_is_a_miss(tree: Path, fresh_key: bytes, where: str) -> None:
    """One byte of the file changed anywhere (the sandbox's edit, a torn write): a miss,
    said under --verbose, never an exception or a load."""
    key = _compile_and_store("strict")
    path = os.path.join(cache_files.cache_dir(), key)
    blob = bytearray(Path(path).read_bytes())
    head = len(cache_files.MAGIC) + 1 + 32
    at = {"magic": 0, "format": len(cache_files.MAGIC), "tag": len(cache_files.MAGIC) + 5,
          "payload-start": head, "payload-middle": (head + len(blob)) // 2,
          "last": len(blob) - 1}[where]
    blob[at] ^= 0x20
    Path(path).write_bytes(bytes(blob))
    notes, log = _notes()
    assert cache_store.lookup("strict", log)[1] is None  # type: ignore[arg-type]
    assert any(key in n and ("tag does not match" in n or "another version" in n)
               for n in notes), notes


def test_entry_filed_under_another_name_is_a_miss(tree: Path, fresh_key: bytes) -> None:
    """An intact entry of one profile copied under another's key (its file name): the tag
    covers the name, so it is not served as the other."""
    strict = _compile_and_store("strict")
    web = _compile_and_store("web")
    directory = cache_files.cache_dir()
    Path(directory, web).write_bytes(Path(directory, strict).read_bytes())
    notes, log = _notes()
    assert cache_files.read_entry(os.path.join(directory, web), log) is None  # type: ignore[arg-type]
    assert any("tag does not match" in n for n in notes), notes
    assert cache_files.read_entry(os.path.join(directory, strict)) is not None  # the control


def test_entry_tagged_with_a_sandbox_key_is_a_miss(tree: Path, fresh_key: bytes) -> None:
    """What a sandbox can do without the key: rewrite the payload (a pickle that runs
    code) and tag it under a key of its own. Never unpickled: the plan's loader is not
    even reached."""
    import marshal

    from isorun.host import mac

    key = _compile_and_store("strict")
    path = os.path.join(cache_files.cache_dir(), key)
    blob = Path(path).read_bytes()
    head = len(cache_files.MAGIC) + 1 + mac.TAG_SIZE
    entry = marshal.loads(blob[head:])
    entry["plan"] = b"cos\nsystem\n(S'false'\ntR."  # os.system("false"), were it loaded
    payload = marshal.dumps(entry)
    forged = mac.tag(os.urandom(32), b"entry", key, payload)
    Path(path).write_bytes(blob[: len(cache_files.MAGIC) + 1] + forged + payload)
    assert cache_store.lookup("strict")[1] is None


def test_missing_key_is_a_miss_and_the_next_store_makes_one(
        tree: Path, real_keyring: None, fresh_key: bytes,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The key gone (a reboot, keyctl invalidate): every entry is a miss, nothing fails,
    and the next compile makes a new key and entries that hit under it."""
    from isorun import api
    from isorun.host import mac

    _compile_and_store("strict")
    assert cache_store.lookup("strict")[1] is not None
    _drop_key(fresh_key)
    monkeypatch.setattr(mac, "_cached", None)
    assert mac.key() is None
    notes, log = _notes()
    assert cache_store.lookup("strict", log)[1] is None  # type: ignore[arg-type]
    assert any("no cache key" in n for n in notes), notes
    _plan, _bpf, entry = api.compiled("strict")  # the regular path: compile and store
    assert entry is not None
    made = mac.key()
    assert made is not None
    monkeypatch.setattr(mac, "_cached", None)
    assert mac.key() == made  # in the keyring, not only in this process
    assert cache_store.lookup("strict")[1] is not None


def test_no_keyring_means_no_cache_not_a_failure(
        tree: Path, real_keyring: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """keyctl refused (Docker's default seccomp profile) or an architecture without
    numbers here: the launch compiles every time, correctly, and stores nothing."""
    from isorun import api
    from isorun.host import mac

    monkeypatch.setattr(mac, "_cached", None)
    monkeypatch.setattr(mac, "SYSCALLS", {})
    plan, _bpf, entry = api.compiled("strict")
    assert plan.profile and entry is not None
    assert not os.path.exists(os.path.join(cache_files.cache_dir(), str(entry["key"])))
    assert cache_store.lookup("strict")[1] is None


def test_key_syscall_numbers_match_the_tables() -> None:
    import json

    from isorun.host import mac

    tables = json.loads((PACKAGE / "data" / "syscalls.json").read_text())
    for machine, (add_key, keyctl) in mac.SYSCALLS.items():
        arch = {"i686": "i386"}.get(machine, machine)
        assert tables["arches"][arch]["add_key"] == add_key, machine
        assert tables["arches"][arch]["keyctl"] == keyctl, machine
