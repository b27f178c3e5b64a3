"""What the Python side and the C shim (and isorun-launch) must agree on that is
isorun's own rather than the kernel's.

The one definition: build_shim.py runs this file (``runpy.run_path``, so it imports
nothing) and generates ``consts.h`` and ``tables.h`` from it; the Python side imports it.
"""

#: ISORUN_SHIM_ABI: the compiled module reports it (isorun_abi()) and sandbox.parent
#: refuses another. Bump with any change of a struct, constant or declaration of the cdef.
SHIM_ABI = 11
#: the version of the flat launch record (sandbox/flat.py, launch_record.c): bump with
#: any change of its layout, which isorun-launch then refuses to read
RECORD_VERSION = 5

#: the launch index (cache/index.py writes it, launch_index.c reads it): its first
#: bytes and the layout's version
INDEX_MAGIC = b"isorun-launch-index\n"
INDEX_FORMAT = 3
#: variables whose raw values the cache key reads (cache.entry.variables(), cache.files.cache_dir())
#: or that change which isorun package the Python CLI would import, so which compiler
#: ran; the index records each, in this order, and the front end compares its own list
INDEX_ENV = (
    "HOME", "TMPDIR", "USER", "LOGNAME", "XDG_CACHE_HOME",
    "PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONNOUSERSITE", "PYTHONPLATLIBDIR",
    "PYTHONSAFEPATH", "SSH_AUTH_SOCK", "VIRTUAL_ENV",
)  # fmt: skip
#: launch index modes: the native record; the landlock backend's, named (``--backend
#: landlock`` or the profile's backend); and the landlock backend's as ``auto`` chose it,
#: valid only while the inputs of that choice (no user namespace, no usable wrapper)
#: stay as they were
MODE_NATIVE, MODE_LANDLOCK, MODE_LANDLOCK_AUTO = 0, 1, 2
#: files whose change can change ``auto``'s choice between firejail and the landlock
#: backend (who firejail admits, and whether the plan's host uid has a passwd entry)
AUTO_FILES = ("/etc/firejail/firejail.users", "/etc/passwd")
#: the wrappers ``auto`` tries before the landlock backend, found on PATH
AUTO_TOOLS = ("bwrap", "firejail")

#: the per-user key in the user keyring that tags cache entries and indexes (host/mac.py)
MAC_KEY_NAME = b"isorun:cache-mac:1"
MAC_KEY_SIZE = 32
MAC_TAG_SIZE = 32

#: set by the front end (frontend.c) on a miss: tells the Python CLI to rewrite the index
FRONTEND_MISS = "ISORUN_FRONTEND_MISS"
#: why execve failed with ENOENT for a command without a slash (sandbox/foreground.py, frontend.c)
EXEC_NOT_FOUND = "command not found in the sandbox's PATH"

#: root-owned trees whose links, when root's, resolve.c and safepath follow. Here and not
#: in sandbox/safepath.py: that module imports the package (errors, dataclasses), which a
#: build cannot, and the rule is one the shim applies as much as Python does.
SYSTEM_TREES = ("/etc", "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
