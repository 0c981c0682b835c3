#!/usr/bin/env bash
# What the InfluxDB sink costs: CPU, memory and bytes sent of a release `jkmon run --demo` (one
# simulated 16-cell battery, the simulated inverter) for SECONDS, without InfluxDB (the baseline
# of the same run), then writing to a real influxd on the loopback at the default
# INFLUX_INTERVAL (10 s) and at every snapshot (0); ROUNDS times in turn (the CPU of a few
# minutes of the demo is a fraction of a second: compare the rounds), then once at the default
# without gzip. Bytes per hour are what jkmon counts as taken by InfluxDB
# (jkmon_influx_sent_bytes_total), scaled to an hour.
#   scripts/load-influx.sh [SECONDS=120] [ROUNDS=3]
# Needs the release binary (cargo build --release), influxd (apt-get install influxdb), curl, bc.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-120}; ROUNDS=${2:-3}
BIN=target/release/jkmon
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v influxd > /dev/null || { echo "influxd is missing: apt-get install influxdb" >&2; exit 1; }
DIR=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$DIR"' EXIT
port=$((20000 + RANDOM % 20000)); web=$((port + 1)); rpc=$((port + 2))
cat > "$DIR/influxdb.conf" <<EOF
reporting-disabled = true
bind-address = "127.0.0.1:$rpc"
[meta]
  dir = "$DIR/meta"
[data]
  dir = "$DIR/data"
  wal-dir = "$DIR/wal"
  query-log-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:$port"
  log-enabled = false
[monitor]
  store-enabled = false
EOF
influxd -config "$DIR/influxdb.conf" > "$DIR/influxd.log" 2>&1 &
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/ping" && break; sleep 0.1; done
curl -sf -XPOST "http://127.0.0.1:$port/query" --data-urlencode 'q=CREATE DATABASE jk' > /dev/null

measure() { # label, then env for jkmon
  local label=$1; shift
  rm -f "$DIR/db"* "$DIR/metrics"
  # the counters a second before the end (the web server stops with jkmon)
  (sleep "$((SECS - 1))"; curl -s "http://127.0.0.1:$web/metrics" > "$DIR/metrics") &
  local reader=$!
  env DB_PATH="$DIR/db" WEB_BIND="127.0.0.1:$web" "$@" /usr/bin/time -f "%U %S %M" -o "$DIR/time" \
    timeout -s INT "$SECS" "$BIN" run --demo > /dev/null 2>&1 || true
  wait "$reader"
  read -r user sys rss < <(tail -1 "$DIR/time")
  local cpu; cpu=$(echo "$user + $sys" | bc)
  [ "$label" = "$BASELINE" ] && base=$cpu
  local ratio; ratio=$(echo "scale=2; $cpu / $base" | bc)
  local sent points
  sent=$(awk '/^jkmon_influx_sent_bytes_total/ {print $2}' "$DIR/metrics")
  points=$(awk '/^jkmon_influx_points_written_total/ {print $2}' "$DIR/metrics")
  local per_hour="—"
  [ -n "$sent" ] && per_hour="$(echo "$sent * 3600 / ($SECS - 1) / 1024" | bc) KiB/h ($(echo "$points * 3600 / ($SECS - 1)" | bc) points/h)"
  echo "$label, $SECS s: CPU $cpu s (${ratio}x), max RSS $rss KiB, sent $per_hour"
}
BASELINE="no InfluxDB (baseline)"
influx=(INFLUX_URL="http://127.0.0.1:$port" INFLUX_DATABASE=jk)
for round in $(seq "$ROUNDS"); do
  echo "round $round"
  measure "$BASELINE"
  measure "InfluxDB every 10 s (default)" "${influx[@]}"
  measure "InfluxDB every snapshot" "${influx[@]}" INFLUX_INTERVAL=0
done
measure "InfluxDB every 10 s, no gzip" "${influx[@]}" INFLUX_GZIP=false
