#!/usr/bin/env bash
# What MQTT and /metrics cost. Part 1: CPU and memory of `jkmon poll --demo` with N simulated
# batteries sending 10 readings a second each, for SECONDS, first without MQTT (the baseline),
# then publishing to a local mosquitto every second (state, discovery, NodeJKBMS payloads).
# Part 2: requests per second of /metrics against /api/v1/status (the baseline) on `jkmon run
# --demo`, with ApacheBench.
#   scripts/load-mqtt.sh [N=4] [SECONDS=30]
# Needs the release binary (cargo build --release), mosquitto, mosquitto-clients, ab, bc.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-4}; SECS=${2:-30}
BIN=target/release/jkmon
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
DIR=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$DIR"' EXIT
port=$((20000 + RANDOM % 20000))
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$port" > "$DIR/mosquitto.conf"
"$MOSQUITTO" -c "$DIR/mosquitto.conf" 2> "$DIR/mosquitto.log" &
for _ in $(seq 100); do grep -q " running" "$DIR/mosquitto.log" && break; sleep 0.05; done
addresses=$(for i in $(seq 1 "$N"); do printf 'C8:47:80:00:00:%02X\n' "$i"; done | paste -sd,)
base=""
measure() { # label, then env for jkmon
  local label=$1; shift
  rm -f "$DIR/db"*
  mosquitto_sub -h 127.0.0.1 -p "$port" -t '#' > "$DIR/messages" &
  local sub=$!
  env JK_BMS_TRANSPORT=sim JK_BMS_ADDRESS="$addresses" JK_SIM_INTERVAL_MS=100 \
    JK_BMS_POLL_INTERVAL=1 DB_PATH="$DIR/db" "$@" /usr/bin/time -f "%U %S %M" -o "$DIR/time" \
    timeout -s INT "$SECS" "$BIN" poll --demo > /dev/null 2>&1 || true
  kill "$sub"; wait "$sub" 2>/dev/null || true
  read -r user sys rss < <(tail -1 "$DIR/time")
  local cpu; cpu=$(echo "$user + $sys" | bc)
  [ -z "$base" ] && base=$cpu
  local ratio; ratio=$(echo "scale=2; $cpu / ($base + 0.001)" | bc)
  echo "$label, $SECS s: CPU $cpu s (${ratio}x), max RSS $rss KiB, $(wc -l < "$DIR/messages") MQTT messages"
}
measure "$N batteries, no MQTT (baseline)"
measure "$N batteries, MQTT + discovery + NodeJKBMS" MQTT_URL="mqtt://127.0.0.1:$port" MQTT_NODEJKBMS=true

web=$((port + 1))
rm -f "$DIR/db"*
env JK_BMS_TRANSPORT=sim JK_BMS_ADDRESS="$addresses" JK_BMS_POLL_INTERVAL=1 DB_PATH="$DIR/db" WEB_BIND="127.0.0.1:$web" \
  RUST_LOG=warn,jkmon=info "$BIN" run --demo 2> "$DIR/run.log" &
for _ in $(seq 100); do grep -q "merged into" "$DIR/run.log" && break; sleep 0.1; done
rps() { ab -q -n 2000 -c 10 "http://127.0.0.1:$web$1" 2>&1 | awk '/^Requests per second:/ {print $4}'; }
status=$(rps /api/v1/status)
metrics=$(rps /metrics)
echo "/api/v1/status (baseline): $status requests/s; /metrics: $metrics requests/s ($(echo "scale=2; $metrics / $status" | bc)x)"
echo "/metrics for $N batteries: $(curl -s "http://127.0.0.1:$web/metrics" | wc -c) bytes, $(curl -s "http://127.0.0.1:$web/metrics" | grep -vc '^#') samples"
