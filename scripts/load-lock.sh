#!/usr/bin/env bash
# How long the Python inverter poller waits for SQLite's write lock beside jkmon. A database of
# 30 days of the poller's rows (259,200, every 10 s, naive UTC, no jkmon tables yet: the state
# right after an upgrade) gets a writer that inserts a row every 0.25 s as the poller does (a
# new connection per row, Python's 5 s busy timeout). First the writer alone (the baseline),
# then beside `jkmon poll` (simulated BMS, default 30 s interval) for its first SECONDS: the
# migration, the first commits and the catch-up that aggregates the month for charts. Prints
# the longest and the 99th-percentile wait of each, and the ratio.
#   scripts/load-lock.sh [SECONDS=180] [BASELINE_SECONDS=30]
# Needs the release binary (cargo build --release) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-180}; BASE_SECS=${2:-30}
. scripts/month-db.sh
writer() { # seconds, output file
  timeout -s TERM "$1" python3 tests/support/python_monitor.py poller "$DB" 0.25 > "$2" || true
}
summary() { # label, file
  python3 - "$1" "$2" <<'PY'
import json, sys
w = sorted(json.loads(l)["wait_s"] for l in open(sys.argv[2]) if l.strip())
p99 = w[int(len(w) * 0.99) - 1] if w else 0
print("%s: %d inserts, longest wait %.3f s, 99th percentile %.3f s" % (sys.argv[1], len(w), w[-1], p99))
PY
}
writer "$BASE_SECS" "$DIR/alone"
summary "the writer alone ($BASE_SECS s, baseline)" "$DIR/alone"
JK_BMS_TRANSPORT=sim DB_PATH="$DB" RUST_LOG=warn,jkmon=info "$BIN" poll 2> "$DIR/jkmon.log" &
jk=$!
writer "$SECS" "$DIR/beside"
kill -TERM "$jk"; wait "$jk" || true
summary "beside jkmon's first $SECS s" "$DIR/beside"
python3 - "$DIR/alone" "$DIR/beside" <<'PY'
import json, sys
m = [max(json.loads(l)["wait_s"] for l in open(f) if l.strip()) for f in sys.argv[1:]]
print("longest wait beside jkmon / alone: %.1fx" % (m[1] / m[0]))
PY
echo "jkmon: $(grep -c 'history: aggregating' "$DIR/jkmon.log" || true) catch-up chunk(s) logged, $(grep -c 'merged into readings' "$DIR/jkmon.log" || true) merge(s), $(grep -ci 'error' "$DIR/jkmon.log" || true) error line(s)"
