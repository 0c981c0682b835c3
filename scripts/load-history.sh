#!/usr/bin/env bash
# What a month of history costs `jkmon web`, on 30 days of the inverter poller's rows (259,200,
# every 10 s, naive UTC, as an upgrade finds them: no jkmon tables yet):
#  1. the 30-day chart request (/api/v1/history over 30 days) right after start, while the
#     month is not aggregated yet, and again once `jkmon web`'s own catch-up has finished;
#  2. the Python monitor's /history?days=30, every row read by the client, alone and eight at
#     once: peak RSS during it and RSS a minute after (from /proc), against the idle process.
#   scripts/load-history.sh
# Needs the release binary (cargo build --release), python3 and curl.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/month-db.sh
JK_BMS_TRANSPORT=sim DB_PATH="$DB" WEB_BIND=127.0.0.1:18555 RUST_LOG=warn,jkmon=info "$BIN" web 2> "$DIR/web.log" &
pid=$!
for _ in $(seq 100); do
  if curl -s -o /dev/null http://127.0.0.1:18555/api/v1/health; then break; fi
  sleep 0.1
done
kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$pid/status"; }
chart() { # label
  local from; from=$(( $(date +%s) - 30 * 86400 ))
  local times=()
  for _ in 1 2 3 4 5; do
    times+=("$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:18555/api/v1/history?from=$from")")
  done
  printf '%s: 30-day chart request, 5 tries: %s s\n' "$1" "${times[*]}"
}
chart "jkmon web just started (not aggregated: a sample of rows)"
caught_up() { python3 - "$DB" <<'PY'
import sqlite3, sys, time
c = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
try:
    n, low = c.execute("SELECT COUNT(*), MIN(upto_ms) FROM jkmon_progress WHERE job LIKE 'inverter_history_%'").fetchone()
except sqlite3.Error:
    sys.exit(1)
sys.exit(0 if n == 2 and low >= (time.time() - 7200) * 1000 else 1)
PY
}
started=$(date +%s.%N)
for _ in $(seq 1200); do caught_up && break; sleep 0.25; done
echo "catch-up of the month by jkmon web: $(echo "$(date +%s.%N) - $started" | bc | cut -c1-5) s after the first chart, $(grep -c 'aggregating' "$DIR/web.log" || true) chunk(s) logged"
sleep 11 # past the 10 s answer cache
chart "jkmon web, month aggregated"
idle=$(kib VmRSS)
echo "idle: RSS $((idle / 1024)) MiB"
count() { python3 -c "import json,sys; print(len(json.load(sys.stdin)))"; }
n=$(curl -s "http://127.0.0.1:18555/history?days=30" | count)
echo "/history?days=30 alone: $n rows; peak RSS $(( $(kib VmHWM) / 1024 )) MiB"
for i in 1 2 3 4 5 6 7 8; do
  curl -s "http://127.0.0.1:18555/history?days=30" | count > "$DIR/n$i" &
done
mapfile -t readers < <(jobs -p | grep -v "^$pid$")
wait "${readers[@]}" 2>/dev/null || true
echo "/history?days=30 eight at once: $(cat "$DIR"/n* | paste -sd' ') rows; peak RSS $(( $(kib VmHWM) / 1024 )) MiB ($(echo "scale=1; $(kib VmHWM) / $idle" | bc)x idle)"
sleep 60
echo "a minute later: RSS $(( $(kib VmRSS) / 1024 )) MiB"
kill -TERM "$pid"; wait "$pid" || true
