"""``extends``: find profiles by name or path, detect cycles, merge layers.

Merge rules (documented in docs/profile.md, tested in tests/unit/test_extends.py):

- **grants union**: mounts (a later entry with the same ``dst`` replaces the earlier one in
  place), ``capabilities.keep``, ``environment.keep``, ``environment.set`` (later value wins
  per variable), ``process.pass_fds``, ``seccomp.allow``, ``seccomp.rules`` (appended),
  ``seccomp.architectures``;
- **restrictions intersect**: a namespace stays on if any layer turns it on, ``network.mode``
  ``none`` beats ``host``, each limit takes the smaller value, the hardening switches
  (``no_new_privs``, ``seccomp.enabled``, ``seccomp.hardening``, ``environment.clear``,
  ``process.new_session``, ``process.die_with_parent``) stay on, ``seccomp.deny`` unions.
  A profile that tries to loosen a restriction a base set is an error: the base's author
  asked for it, so silently keeping or dropping it would both surprise someone;
- **explicit override**: every other key (hostname, cwd, root, actions, ...) takes the
  later value, and a key listed in ``override`` always takes this profile's value, which is
  how a profile loosens a base's restriction on purpose.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from isorun.errors import Diagnostic, Loc, ProfileError, did_you_mean
from isorun.profile import schema
from isorun.profile.loader import Layer, load_layer

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "profiles"

#: keys whose values are grants: merged by union
_UNION = frozenset({
    "mounts", "capabilities.keep", "environment.keep", "environment.set", "process.pass_fds",
    "seccomp.allow", "seccomp.rules", "seccomp.architectures", "seccomp.deny",
})
#: booleans where true is the stricter value
_STRICT_TRUE = frozenset(
    {f"namespaces.{n}" for n in schema.NAMESPACES}
    | {"security.no_new_privs", "seccomp.enabled", "seccomp.hardening", "environment.clear",
       "process.new_session", "process.die_with_parent", "filesystem.root_read_only",
       "landlock.enabled"})
#: limits: the smaller value is stricter, None is unlimited
_STRICT_MIN = frozenset(f"limits.{f.name}" for f in dataclasses.fields(schema.Limits)
                        if f.name != "loc")
_SECTIONS = ("namespaces", "identity", "filesystem", "capabilities", "security", "unsafe",
             "seccomp", "limits", "network", "landlock", "environment", "process")


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.toml"))


def is_path(spec: str) -> bool:
    """A profile spec is a path when it looks like one; otherwise it is a built-in name."""
    return "/" in spec or spec.endswith(".toml")


def resolve(spec: str, relative_to: Path | None, loc: Loc | None) -> tuple[Path, str]:
    """Find the file a spec names. Returns (path, display name)."""
    if is_path(spec):
        base = relative_to if relative_to is not None else Path.cwd()
        path = (base / os.path.expanduser(spec))
        problem = _not_a_profile(spec, path)
        if problem is not None:
            raise ProfileError(Diagnostic(loc or Loc(spec), *problem))
        return path, _display(path)
    path = BUILTIN_DIR / f"{spec}.toml"
    if not path.is_file():
        names = builtin_names()
        hint = did_you_mean(spec, names, f"built-in profiles: {', '.join(names)}")
        raise ProfileError(Diagnostic(loc or Loc(spec), f"no built-in profile named {spec!r}",
                                      hint + "; write ./NAME.toml for a file"))
    return path, f"<builtin>/{spec}.toml"


def _not_a_profile(spec: str, path: Path) -> tuple[str, str] | None:
    """(message, hint) when ``path`` cannot be a profile file, else None."""
    import errno
    import stat

    try:
        st = os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return (f"profile path is a symlink loop: {spec}",
                    f"fix the symbolic links on {_display(path)}")
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            hint = (f"looked for {_display(path)}; paths in extends are relative to the "
                    "including file")
            name = Path(spec).name.removesuffix(".toml")
            if spec.endswith(".toml") and "/" not in spec and name in builtin_names():
                hint = f"did you mean the built-in profile '{name}' (no .toml)? " + hint
            return f"profile file not found: {spec}", hint
        return (f"cannot open profile {spec}: {err.strerror}",
                f"check the permissions of {_display(path)} and its directories")
    if stat.S_ISDIR(st.st_mode):
        return (f"profile {spec} is a directory, not a file",
                f"name a .toml file in it, e.g. {spec.rstrip('/')}/NAME.toml")
    if not stat.S_ISREG(st.st_mode):
        return f"profile {spec} is not a regular file", "give a .toml file"
    return None


def _read(path: Path, display: str, via: tuple[Loc, ...]) -> bytes:
    """The bytes of a profile file, an unreadable one reported like any profile error."""
    try:
        return path.read_bytes()
    except OSError as err:
        hint = ("run as a user who may read it, or copy it somewhere readable"
                if isinstance(err, PermissionError) else "check the file")
        raise ProfileError(Diagnostic(Loc(display, via=via),
                                      f"cannot read profile: {err.strerror}", hint)) from None


def _display(path: Path) -> str:
    """How messages name a profile file: relative below the working directory, else absolute."""
    absolute = os.path.abspath(path)
    relative = os.path.relpath(absolute)
    return absolute if relative.startswith("..") else relative


def load(spec: str) -> schema.Profile:
    """Load the profile ``spec`` names (built-in name or path) with all its extends merged."""
    path, display = resolve(spec, None, None)
    name = spec if not is_path(spec) else path.stem
    layer = _load_tree(path, display, name, (), ())
    return dataclasses.replace(layer.profile, name=name,
                               provenance=tuple(sorted(layer.locs.items())))


def _load_tree(path: Path, display: str, name: str, via: tuple[Loc, ...],
               stack: tuple[Path, ...]) -> Layer:
    layer = load_layer(_read(path, display, via), display, name, via)
    diagnostics: list[Diagnostic] = []
    merged: Layer | None = None
    sources: list[str] = []
    for spec, loc in layer.extends:
        try:
            base_path, base_display = resolve(spec, path.parent, loc)
            real = base_path.resolve()
            if real in stack or real == path.resolve():
                chain = " -> ".join(p.name for p in (*stack, path.resolve(), real))
                raise ProfileError(Diagnostic(loc, f"extends cycle: {chain}",
                                              "remove one of the extends entries in the cycle"))
            base = _load_tree(base_path, base_display, base_path.stem, (loc, *via),
                              (*stack, path.resolve()))
        except ProfileError as err:
            diagnostics.extend(err.diagnostics)
            continue
        sources.extend(base.profile.sources)
        merged = base if merged is None else _merge(merged, base, diagnostics)
    if diagnostics:
        raise ProfileError(diagnostics)
    own = dataclasses.replace(layer.profile, sources=(str(path.resolve()),),
                              extends=tuple(s for s, _ in layer.extends))
    layer = dataclasses.replace(layer, profile=own)
    if merged is None:
        return layer
    result = _merge(merged, layer, diagnostics)
    if diagnostics:
        raise ProfileError(diagnostics)
    profile = dataclasses.replace(result.profile, sources=(*sources, *own.sources))
    return dataclasses.replace(result, profile=profile)


def _merge(base: Layer, top: Layer, diagnostics: list[Diagnostic]) -> Layer:
    """Merge ``top`` over ``base`` by the rules in the module docstring."""
    overrides = set(top.profile.override)
    changes: dict[str, Any] = {}
    for section in ("description", "backend", "mounts", *_SECTIONS):
        base_value = getattr(base.profile, section)
        top_value = getattr(top.profile, section)
        if dataclasses.is_dataclass(base_value) and not isinstance(base_value, type):
            fields: dict[str, Any] = {}
            for f in dataclasses.fields(base_value):
                if f.name == "loc":
                    continue
                key = f"{section}.{f.name}"
                fields[f.name] = _merge_key(
                    key, getattr(base_value, f.name), getattr(top_value, f.name),
                    base, top, overrides, diagnostics)
            changes[section] = dataclasses.replace(base_value, **fields)
        else:
            changes[section] = _merge_key(section, base_value, top_value, base, top,
                                          overrides, diagnostics)
    profile = dataclasses.replace(base.profile, **changes, name=top.profile.name,
                                  override=tuple(sorted(set(base.profile.override) | overrides)),
                                  extends=top.profile.extends, loc=top.profile.loc)
    return Layer(profile, base.explicit | top.explicit, {**base.locs, **top.locs}, top.extends)


def _merge_key(key: str, old: Any, new: Any, base: Layer, top: Layer, overrides: set[str],
               diagnostics: list[Diagnostic]) -> Any:
    section = key.split(".")[0]
    if key not in top.explicit:
        return old
    if key in overrides or section in overrides or key not in base.explicit:
        return new
    if key in _UNION:
        return _union(key, old, new)
    if key in _STRICT_TRUE:
        if old and not new:
            _loosen(key, "true", "false", base, top, diagnostics)
        return old or new
    if key in _STRICT_MIN:
        if old is not None and (new is None or new > old):
            _loosen(key, str(old), str(new), base, top, diagnostics)
            return old
        return new
    if key == "network.mode":
        if old == "none" and new != "none":
            _loosen(key, f'"{old}"', f'"{new}"', base, top, diagnostics)
            return old
        return new
    return new


def _union(key: str, old: Any, new: Any) -> Any:
    if key == "mounts":
        by_dst = {m.dst: m for m in new}
        kept = [by_dst.pop(m.dst, m) for m in old]
        return (*kept, *(m for m in new if m.dst in by_dst))
    if key == "environment.set":
        merged = dict(old)
        merged.update(dict(new))
        return tuple(merged.items())
    if key == "seccomp.rules":
        return (*old, *new)
    return tuple(dict.fromkeys((*old, *new)))


def _loosen(key: str, old: str, new: str, base: Layer, top: Layer,
            diagnostics: list[Diagnostic]) -> None:
    where = base.locs.get(key)
    origin = f" set by {where.short()}" if where else ""
    diagnostics.append(Diagnostic(
        top.locs.get(key, top.profile.loc),
        f"{key} = {new} loosens {old}{origin}",
        f'add "{key}" to override = [...] in this profile to replace the base\'s value'))
