#!/usr/bin/env bash
# Run a command in a network namespace that has only loopback (Ray binds the machine's address and
# probes a public resolver; inside, it can only use 127.0.0.1). Root: `unshare --net`; otherwise an
# unprivileged user namespace (`unshare --user --map-root-user --net`) where the kernel allows it.
#   scripts/loopback-only.sh .venv/bin/python -m pytest -q -m ray
set -euo pipefail
command -v unshare >/dev/null && command -v ip >/dev/null || {
  echo "scripts/loopback-only.sh: needs unshare (util-linux) and ip (iproute2)" >&2; exit 2; }
inner='ip link set lo up && exec "$@"'
if [ "$(id -u)" = 0 ]; then
  exec unshare --net sh -c "$inner" sh "$@"
else
  exec unshare --user --map-root-user --net sh -c "$inner" sh "$@"
fi
