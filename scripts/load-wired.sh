#!/usr/bin/env bash
# CPU and memory of `jkmon watch` on the wired transports for a while, against `jkmon simulate`
# on the far end of a socat pty pair. The baseline is one BMS on the serial port; then an RS485
# network of N packs that jkmon polls (master mode), and the same network beside a polling master
# pack (sniffer mode). jkmon polls every 0.1 s to make the work visible. Each line shows
# snapshots, CPU, max RSS, and CPU as a ratio of the baseline.
#   scripts/load-wired.sh [N=3] [SECONDS=30]
# Needs the release binary (cargo build --release) and socat.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-3}; SECS=${2:-30}
BIN=target/release/jkmon
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
DIR=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$DIR"' EXIT
slaves=$(seq 1 "$N" | paste -sd,)
base=""
measure() { # label, simulate args, then env for jkmon
  local label=$1 sim=$2; shift 2
  rm -f "$DIR/a" "$DIR/b"
  socat pty,raw,echo=0,link="$DIR/a" pty,raw,echo=0,link="$DIR/b" 2>/dev/null &
  local socat=$!
  for _ in $(seq 100); do [ -e "$DIR/b" ] && break; sleep 0.05; done
  # shellcheck disable=SC2086
  "$BIN" simulate $sim --port "$DIR/b" 2> "$DIR/sim" &
  local simpid=$!
  env JK_BMS_SERIAL_PORT="$DIR/a" JK_BMS_POLL_INTERVAL=0.1 "$@" /usr/bin/time -f "%U %S %M" -o "$DIR/time" \
    timeout -s INT "$SECS" "$BIN" watch > "$DIR/out" 2>/dev/null || true
  kill -INT "$simpid"; wait "$simpid" 2>/dev/null || true
  kill "$socat"; wait "$socat" 2>/dev/null || true
  read -r user sys rss < <(tail -1 "$DIR/time")
  local cpu; cpu=$(echo "$user + $sys" | bc)
  [ -z "$base" ] && base=$cpu
  local ratio; ratio=$(echo "scale=2; $cpu / ($base + 0.001)" | bc)
  echo "$label, $SECS s: $(wc -l < "$DIR/out") snapshots, CPU $cpu s (${ratio}x), max RSS $rss KiB; $(tail -1 "$DIR/sim")"
}
measure "serial, 1 BMS (baseline)" "serial" JK_BMS_TRANSPORT=serial
measure "rs485 master, $N packs" "rs485 --slaves $slaves" JK_BMS_TRANSPORT=rs485 JK_RS485_ADDRESSES="$slaves"
measure "rs485 sniffer, $N packs + master" "rs485 --slaves $slaves --master" JK_BMS_TRANSPORT=rs485 JK_RS485_ADDRESSES="0,$slaves"
