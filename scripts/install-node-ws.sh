#!/usr/bin/env bash
# Installs Node.js (Debian's, when the machine has none) and the `ws`
# package into scripts/node/node_modules: the second permessage-deflate
# implementation the interop tests talk to, and the Node peer of the
# benchmarks. Idempotent; the tests call it themselves when it is missing.
set -euo pipefail
here=$(cd "$(dirname "$0")/node" && pwd)
WS_VERSION=8.18.3
exec 9>"${TMPDIR:-/tmp}/ws-install-node-ws.lock"
flock 9
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install-node-ws.sh: needs root to apt-get install nodejs npm" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
installed=$(node -e "try{console.log(require('$here/node_modules/ws/package.json').version)}catch(e){}")
if [ "$installed" != "$WS_VERSION" ]; then
    # Pinned version, no lockfile written.
    (cd "$here" && npm install --silent --no-audit --no-fund --no-save --no-package-lock "ws@$WS_VERSION")
fi
echo "node $(node --version), ws $(node -e "console.log(require('$here/node_modules/ws/package.json').version)")"
