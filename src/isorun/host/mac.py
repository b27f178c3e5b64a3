"""The secret key that authenticates the plan cache and the launch index.

Why: a cache entry holds a pickle and a launch record the shim applies as it stands, and
the C front end launches a launch index's record. A file's owner cannot vouch for them:
an unprivileged caller's sandbox writes files as the caller's own uid, and a cache
directory named later (``XDG_CACHE_HOME`` changed between runs) may be one an earlier
sandbox could write. So every entry and index carries a tag, a keyed BLAKE2b (RFC 7693,
256 bits) of what it is filed as and of its bytes, under a per-user key that no sandbox
can read or replace, and the tag is checked before anything in the file is used.

Where the key lives: in the kernel's user keyring (``@u``) of the caller, a ``user``
key named :data:`KEY_NAME`, 32 random bytes. Nothing in the environment names it (no
path a changed ``HOME`` or ``XDG_*`` could move into a project), it needs no home
directory (``nobody`` has none), and a sandbox cannot reach it: isorun's seccomp
hardening refuses ``keyctl``, ``add_key`` and ``request_key`` in every built-in profile,
and a sandbox in a new user namespace sees that namespace's user keyring, not ours.
The limits (a profile with hardening off, a host where keyctl is refused) are in
docs/security.md.

No key (keyctl refused, as in Docker's default seccomp profile; an unknown
architecture): every lookup misses and nothing is stored, a slower but correct launch.
This module reads the key with two syscalls through ctypes (about 1.3 ms of import, on
the Python path only; the C front end reads it itself, shim/launch_index.c).
"""

from __future__ import annotations

import os

from isorun.shim import abi

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    Syscall = Callable[..., int]

#: the key's description in the user keyring, its size and a tag's (launch_index.c
#: reads the same key; both take these from shim/abi.py)
KEY_NAME, KEY_SIZE, TAG_SIZE = abi.MAC_KEY_NAME, abi.MAC_KEY_SIZE, abi.MAC_TAG_SIZE
#: (add_key, keyctl) per os.uname().machine, as data/syscalls.json numbers them (a test
#: compares); the C front end takes SYS_keyctl from its headers
SYSCALLS = {"x86_64": (248, 250), "aarch64": (217, 219), "i686": (286, 288),
            "i386": (286, 288)}  # fmt: skip
# linux/keyctl.h
_KEY_SPEC_USER_KEYRING = -4
_KEYCTL_SETPERM = 5
_KEYCTL_SEARCH = 10
_KEYCTL_READ = 11
# possessor: view, read, search; user: view. No write: a later add_key of the same name
# (a racing creator, a sandbox with hardening off) cannot replace the key's bytes.
_KEY_PERM = 0x01000000 | 0x02000000 | 0x08000000 | 0x00010000

_cached: bytes | None = None


def _syscall() -> tuple[Syscall, tuple[int, int]] | None:
    numbers = SYSCALLS.get(os.uname().machine)
    if numbers is None:
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    call = libc.syscall
    call.restype = ctypes.c_long
    syscall: Syscall = call
    return syscall, numbers


def _read(fn: Syscall, keyctl: int) -> bytes | None:
    import ctypes

    serial = fn(ctypes.c_long(keyctl), ctypes.c_long(_KEYCTL_SEARCH),
                ctypes.c_long(_KEY_SPEC_USER_KEYRING), ctypes.c_char_p(b"user"),
                ctypes.c_char_p(KEY_NAME), ctypes.c_long(0))
    if serial < 0:
        return None
    buf = ctypes.create_string_buffer(KEY_SIZE + 1)
    got = fn(ctypes.c_long(keyctl), ctypes.c_long(_KEYCTL_READ), ctypes.c_long(serial), buf,
             ctypes.c_long(KEY_SIZE + 1))
    if got != KEY_SIZE:
        return None  # not a key we made: treated as none (and never replaced, see create)
    return buf.raw[:KEY_SIZE]


def key(create: bool = False) -> bytes | None:
    """The caller's key, or None when there is none (``create``: make one first).

    Made with add_key(2), then made read-only and read back: two processes creating it at
    once both end with the one that stayed. Cached for the process.
    """
    global _cached
    if _cached is not None:
        return _cached
    found = _syscall()
    if found is None:
        return None
    fn, (add_key, keyctl) = found
    value = _read(fn, keyctl)
    if value is None and create:
        import ctypes

        fresh = os.urandom(KEY_SIZE)
        serial = fn(ctypes.c_long(add_key), ctypes.c_char_p(b"user"), ctypes.c_char_p(KEY_NAME),
                    ctypes.c_char_p(fresh), ctypes.c_size_t(KEY_SIZE),
                    ctypes.c_long(_KEY_SPEC_USER_KEYRING))
        if serial >= 0:
            fn(ctypes.c_long(keyctl), ctypes.c_long(_KEYCTL_SETPERM), ctypes.c_long(serial),
               ctypes.c_long(_KEY_PERM))
        value = _read(fn, keyctl)
    _cached = value
    return value


def tag(secret: bytes, kind: bytes, name: str, body: bytes | memoryview) -> bytes:
    """The tag of ``body`` filed as ``kind`` (b"entry", b"index") under file ``name``:
    keyed BLAKE2b-256 of kind, NUL, name, NUL, body. The C front end computes the same."""
    # _blake2 is builtin (hashlib would load OpenSSL: milliseconds of a warm launch)
    from _blake2 import blake2b

    h = blake2b(key=secret, digest_size=TAG_SIZE)
    h.update(kind + b"\0" + name.encode() + b"\0")
    h.update(body)
    return h.digest()


def verify(secret: bytes | None, kind: bytes, name: str, body: bytes | memoryview,
           want: bytes) -> bool:
    """Whether ``want`` is the tag of ``body`` filed as (kind, name); False without a key."""
    if secret is None:
        return False
    # hmac.compare_digest is this function, but importing hmac loads OpenSSL
    from _operator import _compare_digest

    return bool(_compare_digest(tag(secret, kind, name, body), want))
