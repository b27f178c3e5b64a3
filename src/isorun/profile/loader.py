"""TOML text -> one profile layer: typed, validated, every value located.

A layer is what one file says, before ``extends`` are merged (``includes.py``). All the
problems of a file are collected and raised together as one :class:`ProfileError`, sorted
by line, so a person fixes a profile in one pass.
"""

from __future__ import annotations

import dataclasses
import errno as errno_mod
import re
import types
import typing
from dataclasses import dataclass
from typing import Any

from isorun.errors import Diagnostic, Loc, ProfileError, did_you_mean
from isorun.profile import schema
from isorun.profile.schema import CAPABILITIES
from isorun.profile.seccomp_rules import check_seccomp
from isorun.profile.source_map import Path, SourceMap, dotted

#: fields that no TOML key sets: filled in by the loader itself
_INTERNAL = frozenset({"loc", "name", "sources"})

#: profile keys whose values are byte sizes and may be written "64m"
_SIZE_FIELDS = frozenset(
    {"address_space", "data", "fsize", "core", "stack", "memlock", "memory", "size",
     "root_size"})
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}



@dataclass(frozen=True, slots=True)
class Layer:
    """One file's profile: the values it sets, and which dotted keys it set explicitly.

    ``explicit`` lets the merge tell "left at the default" from "set to the default value".
    """

    profile: schema.Profile
    explicit: frozenset[str]
    #: where each explicit dotted key was written
    locs: dict[str, Loc]
    #: the raw ``extends`` entries with their locations
    extends: tuple[tuple[str, Loc], ...]


def parse_toml(data: bytes, file: str, via: tuple[Loc, ...] = ()) -> tuple[dict[str, Any], str]:
    """Decode and parse TOML, turning every failure into a located ProfileError."""
    import tomli  # deferred: ~5 ms, and a warm cache never needs it

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise ProfileError(Diagnostic(
            Loc(file, line, 0, via), f"the file is not UTF-8 text (byte {err.start})",
            "save the profile as UTF-8")) from None
    try:
        return tomli.loads(text), text
    except tomli.TOMLDecodeError as err:
        line = getattr(err, "lineno", 0) or 0
        col = getattr(err, "colno", 0) or 0
        msg = getattr(err, "msg", str(err))
        raise ProfileError(Diagnostic(
            Loc(file, line, col, via), f"TOML syntax: {msg}",
            "see https://toml.io for the syntax; strings need quotes")) from None
    except RecursionError as err:  # tomli's bound on nesting and on a dotted key's parts
        raise ProfileError(Diagnostic(
            Loc(file, 0, 0, via), f"TOML too deeply nested: {err}",
            "a profile needs a few levels; flatten the tables or keys")) from None


class _Converter:
    """Turns the parsed document into schema objects, collecting every problem."""

    def __init__(self, file: str, smap: SourceMap, via: tuple[Loc, ...]) -> None:
        self.file, self.smap, self.via = file, smap, via
        self.diagnostics: list[Diagnostic] = []
        self.explicit: set[str] = set()
        self.locs: dict[str, Loc] = {}

    def loc(self, path: Path) -> Loc:
        line, col = self.smap.find(path)
        return Loc(self.file, line, col, self.via)

    def error(self, path: Path, message: str, hint: str = "") -> None:
        self.diagnostics.append(Diagnostic(self.loc(path), message, hint))

    def build(self, cls: type[Any], table: Any, path: Path, **extra: Any) -> Any:
        """Build dataclass ``cls`` from TOML table ``table`` found at ``path``."""
        if not isinstance(table, dict):
            self.error(path, f"{dotted(path)} must be a table, got {_kind(table)}",
                       f"write [{dotted(path)}] followed by key = value lines")
            return None
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.name not in _INTERNAL}
        toml_names = {_toml_key(name): name for name in fields}
        values: dict[str, Any] = dict(extra)
        for key, raw in table.items():
            kpath = (*path, key)
            name = toml_names.get(key)
            if name is None:
                self.unknown_key(kpath, key, list(toml_names))
                continue
            value = self.convert(hints[name], raw, kpath, name)
            if value is not _BAD:
                values[name] = value
                key_name = dotted(kpath)
                if not any(isinstance(p, int) for p in kpath):
                    self.explicit.add(key_name)
                    self.locs[key_name] = self.loc(kpath)
        required = [n for n, f in fields.items() if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING and n not in values]
        for name in required:
            # A key that is there but failed to convert was reported already.
            if _toml_key(name) not in table:
                self.error(path, f"{dotted(path) or 'profile'} needs the key "
                           f"'{_toml_key(name)}'", f"add {_toml_key(name)} = ... to this entry")
        if required:
            return None
        if "loc" in {f.name for f in dataclasses.fields(cls)}:
            values["loc"] = self.loc(path) if path else Loc(self.file, 1, 1, self.via)
        try:
            return cls(**values)
        except (TypeError, ValueError) as err:
            self.error(path, str(err))
            return None

    def unknown_key(self, path: Path, key: str, known: list[str]) -> None:
        where = dotted(path[:-1]) or "the top level"
        hint = did_you_mean(key, known, f"known keys: {', '.join(sorted(known))}")
        self.error(path, f"unknown key '{key}' in {where}", hint)

    def convert(self, hint: Any, raw: Any, path: Path, name: str) -> Any:
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin in (types.UnionType, typing.Union) and type(None) in args:
            inner = next(a for a in args if a is not type(None))
            return self.convert(inner, raw, path, name)
        if hint is bool:
            if not isinstance(raw, bool):
                self.error(path, f"{dotted(path)} must be true or false, got {_kind(raw)}")
                return _BAD
            return raw
        if hint is int:
            return self.integer(raw, path, name)
        if hint is float:
            if isinstance(raw, bool) or not isinstance(raw, int | float) or raw < 0:
                self.error(path, f"{dotted(path)} must be a number of seconds, got {_kind(raw)}",
                           "write e.g. 30 or 2.5")
                return _BAD
            return float(raw)
        if hint is str:
            if not isinstance(raw, str):
                self.error(path, f"{dotted(path)} must be a string, got {_kind(raw)}",
                           f'write {path[-1]} = "..."')
                return _BAD
            return raw
        if hint is schema.Action:
            return self.action(raw, path)
        if dataclasses.is_dataclass(hint):
            built = self.build(typing.cast(type[Any], hint), raw, path)
            return _BAD if built is None else built
        if origin is tuple:
            return self.sequence(args, raw, path, name)
        raise TypeError(f"schema type {hint!r} has no converter")  # a schema bug, not input

    def integer(self, raw: Any, path: Path, name: str) -> Any:
        if isinstance(raw, str) and name in _SIZE_FIELDS:
            match = _SIZE_RE.match(raw)
            if match:
                return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
            self.error(path, f"{dotted(path)}: cannot read size {raw!r}",
                       'write bytes as a number or with a unit: 4096, "64k", "512m", "2g"')
            return _BAD
        if isinstance(raw, bool) or not isinstance(raw, int):
            self.error(path, f"{dotted(path)} must be an integer, got {_kind(raw)}")
            return _BAD
        if raw < 0:
            self.error(path, f"{dotted(path)} must not be negative, got {raw}")
            return _BAD
        return raw

    def sequence(self, args: tuple[Any, ...], raw: Any, path: Path, name: str) -> Any:
        if args == (tuple[str, str], ...) or args[0] == tuple[str, str]:
            # A TOML table of strings, kept as ordered pairs so the dataclass stays hashable.
            if not isinstance(raw, dict):
                self.error(path, f"{dotted(path)} must be a table of strings",
                           f'write {path[-1]} = {{ NAME = "value" }}')
                return _BAD
            pairs = []
            for key, value in raw.items():
                if not isinstance(value, str):
                    self.error((*path, key), f"{dotted((*path, key))} must be a string, "
                               f"got {_kind(value)}")
                    continue
                pairs.append((key, value))
            return tuple(pairs)
        if not isinstance(raw, list):
            self.error(path, f"{dotted(path)} must be an array, got {_kind(raw)}",
                       f"write {path[-1]} = [ ... ]")
            return _BAD
        inner = args[0]
        out = []
        for index, item in enumerate(raw):
            value = self.convert(inner, item, (*path, index), name)
            if value is not _BAD:
                out.append(value)
        return tuple(out)

    def action(self, raw: Any, path: Path) -> Any:
        if not isinstance(raw, str):
            self.error(path, f"{dotted(path)} must be a string such as \"errno:EPERM\"")
            return _BAD
        kind, _, arg = raw.partition(":")
        if kind != "errno":
            if arg and kind in schema.ACTIONS:
                self.error(path, f"the action {kind!r} takes no argument, got {raw!r}",
                           f'write "{kind}"')
                return _BAD
            # an unknown kind is reported by check_seccomp, with the other actions' checks
            return schema.Action(kind)
        if not arg:
            self.error(path, "the errno action needs a value", 'write "errno:EPERM" or "errno:1"')
            return _BAD
        if arg.isdigit():
            number = int(arg)
        else:
            number = getattr(errno_mod, arg.upper(), -1)
            if number < 0:
                self.error(path, f"unknown errno name {arg!r}",
                           did_you_mean(arg.upper(), errno_mod.errorcode.values(),
                                        "write e.g. errno:EPERM"))
                return _BAD
        return schema.Action("errno", number)  # check_seccomp checks the range


_BAD = object()


def _toml_key(field_name: str) -> str:
    return field_name


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "an array", dict: "a table"}
    for typ, text in names.items():
        if type(value) is typ:
            return f"{text} ({value!r})" if typ in (bool, int, float, str) else text
    return type(value).__name__


def load_layer(data: bytes, file: str, name: str, via: tuple[Loc, ...] = ()) -> Layer:
    """Parse and convert one profile file; raise one ProfileError with all its problems."""
    document, text = parse_toml(data, file, via)
    conv = _Converter(file, SourceMap(text), via)
    raw_extends = document.pop("extends", [])
    extends: list[tuple[str, Loc]] = []
    if isinstance(raw_extends, str):
        raw_extends = [raw_extends]
    if not isinstance(raw_extends, list) or not all(isinstance(e, str) for e in raw_extends):
        conv.error(("extends",), "extends must be an array of profile names or paths",
                   'write extends = ["strict", "./base.toml"]')
    else:
        extends = [(e, conv.loc(("extends", i))) for i, e in enumerate(raw_extends)]
    profile = conv.build(schema.Profile, document, (), name=name)
    if profile is not None:
        validate(profile, conv)
    if conv.diagnostics:
        raise ProfileError(conv.diagnostics)
    assert profile is not None
    return Layer(profile, frozenset(conv.explicit), conv.locs,
                 tuple(extends))


def validate(profile: schema.Profile, conv: _Converter) -> None:
    """Checks that span several keys of one file, each with its own location."""
    for index, mount in enumerate(profile.mounts):
        _validate_mount(mount, conv, ("mounts", index))
    for index, cap in enumerate(profile.capabilities.keep):
        if _normal_cap(cap) not in CAPABILITIES:
            conv.error(("capabilities", "keep", index), f"unknown capability {cap!r}",
                       did_you_mean(_normal_cap(cap), CAPABILITIES, "see capabilities(7)"))
    _check_choice(conv, ("network", "mode"), profile.network.mode, schema.NETWORK_MODES)
    _check_choice(conv, ("backend",), profile.backend, schema.BACKENDS)
    for key in ("tcp_connect", "tcp_bind"):
        for index, port in enumerate(getattr(profile.network, key) or ()):
            if not 0 < port < 65536:
                conv.error(("network", key, index), f"network.{key}: {port} is not a TCP port",
                           "ports are 1 to 65535")
    root = profile.filesystem.root
    if root not in ("tmpfs", "host") and not _absolute(root):
        conv.error(("filesystem", "root"), f"filesystem.root must be tmpfs, host or an absolute "
                   f"directory, got {root!r}", f'write root = "/{root.lstrip("./")}"')
    if not _absolute(profile.filesystem.cwd):
        conv.error(("filesystem", "cwd"), f"filesystem.cwd must be absolute, got "
                   f"{profile.filesystem.cwd!r}", 'write cwd = "/..." or cwd = "${CWD}"')
    conv.diagnostics += check_seccomp(profile.seccomp, conv.loc, layer=True)
    for index, var in enumerate(profile.environment.keep):
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*\*?", var):
            conv.error(("environment", "keep", index), f"not a variable name: {var!r}",
                       "names are letters, digits and _, optionally ending in * for a prefix")
    for index, fd in enumerate(profile.process.pass_fds):
        if fd <= 2:
            conv.error(("process", "pass_fds", index), f"descriptor {fd} is always passed",
                       "list only descriptors above 2")
    # Contradictions: settings that cannot all hold.
    if not profile.security.no_new_privs and not profile.unsafe.allow_new_privs:
        conv.error(("security", "no_new_privs"), "no_new_privs = false weakens every sandbox: "
                   "a setuid program could regain privileges",
                   "keep it true, or set [unsafe] allow_new_privs = true to accept the risk")
    if not profile.security.no_new_privs and profile.seccomp.enabled:
        conv.error(("security", "no_new_privs"), "no_new_privs = false with a seccomp filter: "
                   "after the capability drop the kernel loads a filter only under "
                   "no_new_privs (seccomp(2))", "set seccomp.enabled = false as well, or keep "
                   "no_new_privs = true")
    if profile.network.mode == "host" and "namespaces.net" in conv.explicit \
            and profile.namespaces.net:
        conv.error(("namespaces", "net"), 'namespaces.net = true contradicts network.mode = '
                   '"host"', "remove one of the two: host networking needs no net namespace")
    if profile.mounts and not profile.namespaces.mount:
        conv.error(("namespaces", "mount"), "[[mounts]] need namespaces.mount = true",
                   "set namespaces.mount = true or remove the mounts")
    if not profile.process.new_session and not (
            profile.seccomp.enabled and profile.seccomp.hardening):
        conv.error(("process", "new_session"), "new_session = false shares the terminal, so "
                   "TIOCSTI must be blocked by seccomp hardening, which is off",
                   "keep new_session = true, or turn seccomp and seccomp.hardening on")
    if any(m.type == "proc" for m in profile.mounts) and not profile.namespaces.pid:
        conv.error(("namespaces", "pid"), "a proc mount without a new pid namespace would show "
                   "every host process", "set namespaces.pid = true or remove the proc mount")


def _validate_mount(mount: schema.Mount, conv: _Converter, path: Path) -> None:
    if mount.type not in schema.MOUNT_TYPES:
        conv.error((*path, "type"), f"unknown mount type {mount.type!r}",
                   did_you_mean(mount.type, schema.MOUNT_TYPES,
                                f"use one of: {', '.join(schema.MOUNT_TYPES)}"))
        return
    if not _absolute(mount.dst):
        conv.error((*path, "dst"), f"mounts[{path[1]}].dst must be absolute, got {mount.dst!r}",
                   f'write dst = "/{mount.dst.lstrip("./")}"')
    if mount.type in ("ro-bind", "rw-bind", "dev-bind", "overlay") and mount.src \
            and not _absolute(mount.src):
        conv.error((*path, "src"), f"mounts[{path[1]}].src must be absolute, got {mount.src!r}",
                   'write src = "/..." or use ${HOME}, ${CWD}')
    if mount.type == "symlink" and not mount.src:
        conv.error(path, "a symlink mount needs src (the link target)", 'add src = "/target"')
    allowed = {"ro-bind": {"src", "optional", "noexec"}, "rw-bind": {"src", "optional", "noexec"},
               "dev-bind": {"src", "optional"}, "tmpfs": {"size", "mode", "noexec"},
               "proc": set(), "dev": set(), "symlink": {"src"}, "file": {"content", "mode"},
               "dir": {"mode"}, "mqueue": set(), "overlay": {"src", "size", "optional"},
               "mask": set()}[mount.type]
    defaults = schema.Mount(type=mount.type, dst=mount.dst)
    for name in ("src", "content", "size", "mode", "optional", "noexec"):
        if name not in allowed and getattr(mount, name) != getattr(defaults, name):
            conv.error((*path, name), f"a {mount.type} mount takes no '{name}'",
                       f"remove {name}, or use a mount type that takes it")
    if mount.mode is not None and mount.mode > 0o7777:
        conv.error((*path, "mode"), f"mode {mount.mode:#o} is not a permission mode",
                   "write an octal mode such as 0o755")


def _check_choice(conv: _Converter, path: Path, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        conv.error(path, f"{dotted(path)} = {value!r} is not one of {', '.join(choices)}",
                   did_you_mean(value, choices, f"use one of: {', '.join(choices)}"))


def _absolute(path: str) -> bool:
    return path.startswith("/") or path.startswith("${")


def _normal_cap(name: str) -> str:
    upper = name.upper()
    return upper if upper.startswith("CAP_") else f"CAP_{upper}"
