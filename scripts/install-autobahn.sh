#!/usr/bin/env bash
# Installs the Autobahn|Testsuite (wstest, Python 2 only) from Debian's
# bullseye suite (python2.7) and PyPI (autobahntestsuite 0.8.2).
# Idempotent: does nothing when wstest already runs.
set -euo pipefail

if command -v wstest >/dev/null 2>&1 && wstest --help >/dev/null 2>&1; then
    echo "wstest already installed"
    exit 0
fi

# Debian's interpreter, by full path: a pyenv shim named python2.7 may be on
# PATH without a working interpreter behind it.
py=/usr/bin/python2.7
if [ ! -x "$py" ]; then
    # Same mirror and keyring as the machine's bookworm entry.
    src=/etc/apt/sources.list.d/debian.sources
    uri=$(awk '/^URIs:/ {print $2; exit}' "$src" 2>/dev/null || true)
    key=$(awk '/^Signed-By:/ {print $2; exit}' "$src" 2>/dev/null || true)
    uri=${uri:-http://deb.debian.org/debian}
    key=${key:-/usr/share/keyrings/debian-archive-keyring.gpg}
    cat > /etc/apt/sources.list.d/bullseye.sources <<SRC
Types: deb
URIs: $uri
Suites: bullseye
Components: main
Signed-By: $key
SRC
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python2.7 python2.7-dev >/dev/null
fi

if ! "$py" -m pip --version >/dev/null 2>&1; then
    wheels=$(mktemp -d)
    python3 -m pip download --no-deps -q -d "$wheels" \
        pip==20.3.4 setuptools==44.1.1 wheel==0.37.1
    "$py" "$wheels/pip-20.3.4-py2.py3-none-any.whl/pip" install -q \
        "$wheels"/pip-20.3.4-py2.py3-none-any.whl \
        "$wheels"/setuptools-44.1.1-py2.py3-none-any.whl \
        "$wheels"/wheel-0.37.1-py2.py3-none-any.whl
fi

"$py" -m pip install -q autobahntestsuite==0.8.2
# pip puts the script beside the interpreter's other scripts.
for cand in /usr/local/bin/wstest /usr/bin/wstest; do
    if [ -x "$cand" ]; then ln -sf "$cand" /usr/local/bin/wstest 2>/dev/null || true; break; fi
done
wstest --help >/dev/null
echo "wstest installed: $(command -v wstest)"
