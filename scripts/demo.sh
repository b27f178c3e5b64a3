#!/usr/bin/env bash
# `make run`: show a real sandbox under the built-in strict profile.
set -euo pipefail
cd "$(dirname "$0")/.."
ISORUN=(.venv/bin/isorun)
echo "== isorun profiles"
"${ISORUN[@]}" profiles
echo
echo "== isorun --profile strict -- bash -c '...'   (a real sandbox)"
"${ISORUN[@]}" --profile strict -- /bin/bash -c '
echo "whoami:   $(id -un 2>/dev/null || id -u) (uid $(id -u))"
echo "hostname: $(hostname)"
echo "ls /:     $(ls / | tr "\n" " ")"
echo "caps:     $(grep CapEff /proc/self/status)"
echo "nnp:      $(grep NoNewPrivs /proc/self/status)"
echo "seccomp:  $(grep "^Seccomp:" /proc/self/status)"
echo "pids:     $(ls /proc | grep -c "^[0-9]") processes visible"
if touch /usr/isorun-demo 2>/dev/null; then echo "write /usr: ALLOWED (unexpected)"; else echo "write /usr: refused (read-only)"; fi
if [ -e /root/.ssh ] || [ -e "$HOME/.ssh" ] && [ "$HOME" != /tmp ]; then echo "home: visible"; else echo "home:     not visible"; fi
echo "network:  interfaces: $(cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d " " | tr "\n" " ")"
if (exec 3<>/dev/tcp/1.1.1.1/53) 2>/dev/null; then echo "connect:  ALLOWED (unexpected)"; else echo "connect:  refused (network = none)"; fi
'
echo
echo "== isorun explain strict (first lines)"
"${ISORUN[@]}" explain strict | head -20
