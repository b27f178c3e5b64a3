"""The compiled-plan cache: a profile compiled once, then launched without the compiler.

An entry holds the plan, its seccomp program (raw BPF) and, when the profile allows it,
the flat launch record (:mod:`isorun.cache.record`) the shim is handed. It lives in
``$XDG_CACHE_HOME/isorun`` (default ``~/.cache/isorun``), one file per key. Next to an
entry with a launch record, :mod:`isorun.cache.index` writes what the C front end checks.

Its modules, each importing only those before it: ``files`` (where entries live, read
and written authenticated), ``entry`` (the key and the source files), ``record`` (the
launch record), ``index`` (the C front end's index), ``store`` (lookup and store), and
``memo`` (what one process keeps between launches). This file imports nothing: the warm
launch path imports only the modules it uses.
"""
