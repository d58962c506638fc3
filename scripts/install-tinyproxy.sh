#!/usr/bin/env bash
# Installs tinyproxy from Debian (the real HTTP CONNECT proxy the proxy
# tests tunnel through). Idempotent. The tests call this script themselves
# when tinyproxy is missing, so `cargo test --workspace` works on a fresh
# machine (as root, like CI).
set -euo pipefail
# Tests may call this from several threads at once: one install at a time.
exec 9>"${TMPDIR:-/tmp}/ws-install-tinyproxy.lock"
flock 9
if [ -x /usr/bin/tinyproxy ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-tinyproxy.sh: needs root to apt-get install tinyproxy" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends tinyproxy-bin >/dev/null 2>&1 \
    || apt-get install -y -qq --no-install-recommends tinyproxy >/dev/null
# The Debian package may start a system instance; the tests run their own.
if command -v service >/dev/null 2>&1; then service tinyproxy stop >/dev/null 2>&1 || true; fi
test -x /usr/bin/tinyproxy
echo "tinyproxy: $(/usr/bin/tinyproxy -v 2>&1 | head -1)"
