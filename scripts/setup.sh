#!/usr/bin/env bash
# Set up a fresh Debian 12 machine for isorun: system packages (when root) and .venv.
# Idempotent and quick when nothing changed: each part is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

# libseccomp-dev: the shim's headers.
# bubblewrap/firejail: fallback backends and the benchmark's peers. uidmap: setpriv/newuidmap.
PACKAGES=(gcc make libseccomp2 libseccomp-dev bubblewrap firejail hyperfine strace
          python3-venv python3-dev util-linux iproute2 busybox-static)

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "setup: installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "setup: missing packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
    fi
fi

# npm: the test profile is checked with `npm test` too (tests/integration). This kind of
# machine ships Node.js with npm; Debian's nodejs lacks npm, and Debian's npm package
# conflicts with NodeSource's nodejs, so npm is installed only where there is none at all.
if ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "setup: installing nodejs npm"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    else
        echo "setup: npm missing (run as root, or: sudo apt-get install nodejs npm)" >&2
    fi
fi

# podman + runc: the Docker-export tests start real containers (tests/learn,
# tests/integration/test_docker_engine.py); in CI a missing engine fails those tests.
# --no-install-recommends as ../shared/tools/podman-setup.sh does: rootful podman with
# --network none needs none of the recommends, and runc is then the runtime.
if ! command -v podman >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "setup: installing podman runc"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman runc >/dev/null
    else
        echo "setup: podman missing (run as root, or: sudo apt-get install --no-install-recommends podman runc)" >&2
    fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
# Reinstall only when the packaging or the C shim changed since the last install: its
# sources, and the Python definitions its generated headers come from (shim/headers.py).
stamp=.venv/.isorun-installed
inputs=$(cat pyproject.toml setup.py src/isorun/shim/*.c src/isorun/shim/*.h src/isorun/shim/*.py \
    src/isorun/kernel/abi.py src/isorun/sandbox/record.py 2>/dev/null | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$inputs" ]; then
    .venv/bin/pip install -q --upgrade pip >/dev/null
    .venv/bin/pip install -q -e '.[dev]'
    echo "$inputs" > "$stamp"
fi
# Bytecode next to the sources: with PYTHONDONTWRITEBYTECODE=1 (usual in containers, set
# here too) Python still reads an existing .pyc but never writes one, so without this every
# isorun command would compile its modules again. A .pyc whose source changed is ignored
# and recompiled in memory; rerunning setup refreshes them.
.venv/bin/python -m compileall -q src/isorun
