#!/usr/bin/env bash
# Runs the Autobahn|Testsuite against an adapter crate, both roles:
#   fuzzingclient -> the crate's echo_server example (we are the server)
#   fuzzingserver <- the crate's autobahn_client example (we are the client)
# (ws-blocking's examples are named with `blocking_` in front, so that a
# workspace build never writes two examples to one file.)
# and fails unless every one of the 517 cases, permessage-deflate (12.*,
# 13.*) included, is OK, NON-STRICT or INFORMATIONAL.
# Usage: scripts/autobahn.sh ws-blocking [port]
set -euo pipefail
crate=${1:?usage: autobahn.sh CRATE [PORT]}
port=${2:-9001}
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

"$root/scripts/install-autobahn.sh"
cd "$root"
case "$crate" in
    ws-blocking) prefix=blocking_ ;;
    *) prefix= ;;
esac
server_bin=${prefix}echo_server
client_bin=${prefix}autobahn_client
cargo build --release -q -p "$crate" --example "$server_bin" --example "$client_bin"
bin="$root/target/release/examples"

wait_port() {
    for _ in $(seq 1 100); do
        if (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on port $1" >&2
    return 1
}

check() { # report dir, role
    python3 - "$1" "$2" <<'PY'
import json, sys, os
report, role = sys.argv[1], sys.argv[2]
with open(os.path.join(report, "index.json")) as f:
    index = json.load(f)
ok = {"OK", "NON-STRICT", "INFORMATIONAL"}
bad, counts, notes = [], {}, []
for agent, cases in index.items():
    for case, r in cases.items():
        for key in ("behavior", "behaviorClose"):
            v = r[key]
            counts[v] = counts.get(v, 0) + (key == "behavior")
            if v in ok:
                if v != "OK" and key == "behavior":
                    notes.append(f"{case}={v}")
                continue
            bad.append((case, key, v))
total = sum(len(c) for c in index.values())
print(f"autobahn {role}: {total} cases; behavior counts {dict(sorted(counts.items()))}")
if notes:
    print("  not OK but accepted: " + " ".join(sorted(notes, key=lambda c: [int(x) for x in c.split("=")[0].split(".")])))
for case, key, v in sorted(set(bad)):
    print(f"  FAILED {case}: {key} = {v}")
if bad or total < 517:
    sys.exit(1)
PY
}

for p in "$port" "$((port + 1))"; do
    if (echo > "/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "port $p is already in use: pick another (scripts/autobahn.sh CRATE PORT)" >&2
        exit 1
    fi
done

# Both roles run at once (wstest is single-threaded Python, the slow side:
# the 216 permessage-deflate cases take minutes per role).
# 1. We are the server.
"$bin/$server_bin" "127.0.0.1:$port" 2>"$work/server.log" &
pids+=($!)
wait_port "$port"
cat > "$work/fuzzingclient.json" <<JSON
{
  "outdir": "$work/reports/servers",
  "servers": [{"agent": "$crate", "url": "ws://127.0.0.1:$port"}],
  "cases": ["*"],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON
(cd "$work" && timeout 1500 wstest -m fuzzingclient -s fuzzingclient.json > "$work/fuzzingclient.log" 2>&1) &
server_role=$!

# 2. We are the client.
sport=$((port + 1))
cat > "$work/fuzzingserver.json" <<JSON
{
  "url": "ws://127.0.0.1:$sport",
  "outdir": "$work/reports/clients",
  "cases": ["*"],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON
(cd "$work" && exec wstest -m fuzzingserver -s fuzzingserver.json > "$work/fuzzingserver.log" 2>&1) &
pids+=($!)
wait_port "$sport"
timeout 1500 "$bin/$client_bin" "ws://127.0.0.1:$sport" "$crate" 2>"$work/client.log" &
client_role=$!

status=0
wait "$server_role" || { tail -20 "$work/fuzzingclient.log"; echo "wstest fuzzingclient failed" >&2; status=1; }
wait "$client_role" || { tail -20 "$work/client.log"; echo "$client_bin failed" >&2; status=1; }
[ "$status" = 0 ] || exit 1
check "$work/reports/servers" "server ($crate $server_bin)" || status=1
check "$work/reports/clients" "client ($crate $client_bin)" || status=1
exit "$status"
