"""The plan cache's files: where they live, and how one is read and written.

Authenticated: an entry's header holds a tag (:mod:`isorun.host.mac`, a keyed BLAKE2b under
the caller's key in the kernel keyring) of its file name and its payload, checked before
anything in it is decoded. Owner and mode cannot tell the caller's files from ones a
sandbox of the same uid wrote into a directory a later launch names as its cache; the
tag can (no sandbox can read the key). No key: a miss, and nothing is stored.

On the warm launch path: ``os`` and builtin modules only at the top.
"""

from __future__ import annotations

import marshal
import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

#: bump when the entry layout changes; older entries are then ignored
#: (2: the header's SHA-256 became the tag of isorun.host.mac)
FORMAT = 2
MAGIC = b"isorun-plan-cache\n"


def _sha256(data: bytes) -> str:
    # hashlib loads OpenSSL (several ms on a cold start); the builtin _sha256 module is
    # what hashlib itself falls back to, and is enough for a content check.
    try:
        from _sha256 import sha256  # type: ignore[import-not-found]
    except ImportError:  # Python builds without it, or 3.12+ (renamed _sha2)
        from hashlib import sha256
    return str(sha256(data).hexdigest())


def _warn(log: Callable[[str], None] | None, message: str) -> None:
    if log is not None:
        log(f"isorun: cache: {message}")


def cache_dir(environ: Mapping[str, str] | None = None) -> str:
    """``$XDG_CACHE_HOME/isorun``, or ``~/.cache/isorun``.

    The XDG base directory spec says a relative ``XDG_CACHE_HOME`` is invalid and must be
    ignored, so one set by a confused script cannot put the cache in the working directory.
    """
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(env.get("HOME") or os.path.expanduser("~"), ".cache")
    return os.path.join(base, "isorun")


def _dir_usable(path: str, create: bool, log: Callable[[str], None] | None) -> bool:
    """The cache directory exists (or was made), is ours, and only we can write to it."""
    if create:
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError as err:
            _warn(log, f"cannot create {path}: {err.strerror}")
            return False
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    import stat

    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        _warn(log, f"ignoring {path}: not a directory owned by uid {os.geteuid()}")
        return False
    if st.st_mode & 0o077:
        # Ours but readable or writable by others (an old umask, a copied home): someone
        # who can write here could plant a plan. Tighten it; the files are checked anyway.
        try:
            os.chmod(path, 0o700)
        except OSError:
            _warn(log, f"ignoring {path}: mode {st.st_mode & 0o777:#o} and cannot chmod")
            return False
    return True


def read_entry(path: str, log: Callable[[str], None] | None = None) -> dict[str, object] | None:
    """The entry in ``path`` when it is safe and authentic, else None (with a note to ``log``).

    Safe: a regular file (no symlink followed), owned by the caller, not writable by
    group or others. Authentic: magic and format match, and the header's tag is the
    caller's key's tag of this file name and the payload (:mod:`isorun.host.mac`), checked
    before the payload is decoded. No key (none made yet, keyctl refused): None.
    """
    from isorun.host import mac

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as err:
        _warn(log, f"ignoring {path}: {err.strerror}")
        return None
    try:
        st = os.fstat(fd)
        # 0o100000 is S_IFREG; the stat module costs an import on the warm path.
        if st.st_mode & 0o170000 != 0o100000:
            _warn(log, f"ignoring {path}: not a regular file")
            return None
        if st.st_uid != os.geteuid():
            _warn(log, f"ignoring {path}: owned by uid {st.st_uid}, not {os.geteuid()}")
            return None
        if st.st_mode & 0o022:
            _warn(
                log, f"ignoring {path}: writable by group or others (mode {st.st_mode & 0o777:#o})"
            )
            return None
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
    finally:
        os.close(fd)
    blob = b"".join(chunks)
    head = len(MAGIC) + 1 + mac.TAG_SIZE
    if len(blob) < head or not blob.startswith(MAGIC) or blob[len(MAGIC)] != FORMAT:
        _warn(log, f"ignoring {path}: corrupt or from another version")
        return None
    secret = mac.key()
    if secret is None:
        _warn(log, f"ignoring {path}: no cache key in the kernel keyring to check it with")
        return None
    payload = memoryview(blob)[head:]
    if not mac.verify(secret, b"entry", os.path.basename(path), payload,
                      blob[len(MAGIC) + 1 : head]):
        _warn(log, f"ignoring {path}: corrupt, or not written by this user's isorun under "
                   "this name (its tag does not match)")
        return None
    try:
        entry = marshal.loads(payload)
    except (ValueError, EOFError, TypeError):
        _warn(log, f"ignoring {path}: corrupt")
        return None
    if not isinstance(entry, dict):
        _warn(log, f"ignoring {path}: corrupt")
        return None
    return entry


def write_entry(
    directory: str, key: str, entry: dict[str, object], log: Callable[[str], None] | None = None
) -> bool:
    """Write ``entry`` atomically (see :func:`_write_file`), tagged under the caller's key
    (made now if there is none); without a key, nothing is written."""
    from isorun.host import mac

    secret = mac.key(create=True)
    if secret is None:
        _warn(log, "not caching: no key in the kernel keyring (keyctl refused?) to tag "
                   "entries with")
        return False
    payload = marshal.dumps(entry)
    blob = MAGIC + bytes([FORMAT]) + mac.tag(secret, b"entry", key, payload) + payload
    return _write_file(directory, key, blob, log)


def _write_file(
    directory: str, name: str, blob: bytes, log: Callable[[str], None] | None = None
) -> bool:
    """A private temporary file in the same directory, then rename(2) over the old one,
    so a reader sees the old file or the new, never half."""
    if not _dir_usable(directory, True, log):
        return False
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
    except OSError as err:
        _warn(log, f"cannot write {directory}: {err.strerror}")
        return False
    try:
        try:
            view = memoryview(blob)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(tmp, os.path.join(directory, name))
    except OSError as err:
        _warn(log, f"cannot write {directory}: {err.strerror}")
        if os.path.lexists(tmp):
            os.unlink(tmp)
        return False
    return True
