#!/usr/bin/env bash
# How long a switch write takes through jkmon, from the API request to the BMS's confirming
# settings frame, against the simulated BMS of `jkmon run --demo` (which answers at once, so
# this is jkmon's own part: the web server, the controller, the session and the record).
#   scripts/control-latency.sh [WRITES=40]
# Needs a built binary (BIN, default target/release/jkmon) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-40}
BIN=${BIN:-target/release/jkmon}
[ -x "$BIN" ] || { echo "build first: cargo build --release (or BIN=target/debug/jkmon)" >&2; exit 1; }
DIR=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$DIR"' EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
(cd "$DIR" && WEB_BIND="127.0.0.1:$PORT" DB_PATH="$DIR/demo.db" RUST_LOG=warn,jkmon::web=info \
  NO_COLOR=1 exec "$OLDPWD/$BIN" run --demo 2> "$DIR/run.log") &
for _ in $(seq 100); do grep -q "web: listening" "$DIR/run.log" && break; sleep 0.1; done
python3 - "$PORT" "$N" "$DIR/demo.db" <<'PY'
import json, sqlite3, statistics, sys, time, urllib.request
port, n, db = sys.argv[1], int(sys.argv[2]), sys.argv[3]
url = f"http://127.0.0.1:{port}/api/v1/batteries/1/switches"
# the first snapshot: the switches are known
for _ in range(100):
    s = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/status"))
    if (s["batteries"][0].get("snapshot") or {}).get("switches"):
        break
    time.sleep(0.1)
took = []
for i in range(n):
    body = json.dumps({"switch": "balancer", "on": i % 2 == 1}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    t = time.monotonic()
    answer = json.load(urllib.request.urlopen(req, timeout=30))
    took.append((time.monotonic() - t) * 1000)
    assert answer["confirmed"], answer
took.sort()
time.sleep(0.5)
recorded = sqlite3.connect(db).execute(
    "SELECT COUNT(*) FROM bms_switch_writes WHERE outcome = 'confirmed'").fetchone()[0]
print(f"{n} writes confirmed ({recorded} recorded): median {statistics.median(took):.1f} ms, "
      f"90th percentile {took[int(n * 0.9) - 1]:.1f} ms, slowest {took[-1]:.1f} ms")
PY
