#!/usr/bin/env bash
# What counting energy from every snapshot costs: CPU, peak memory and the bytes written to
# disk per hour of `jkmon run --demo` with N simulated batteries at the default intervals
# (a snapshot every 0.5 s per battery, a commit every 30 s, the demo inverter's row every
# 10 s), for BEFORE (a jkmon built without energy counting: the baseline) and for this build,
# alternately, ROUNDS times, in the same run.
#   scripts/load-energy.sh BEFORE_BINARY [N=4] [SECONDS=120] [ROUNDS=2]
# Build both first, e.g.:
#   git worktree add /tmp/jk-before 22d5b5f && (cd /tmp/jk-before && cargo build --release)
#   cargo build --release
#   scripts/load-energy.sh /tmp/jk-before/target/release/jkmon
# Bytes written: `wchar` (what jkmon handed to write(2)) and `write_bytes` (what reached the
# block device) of /proc/<pid>/io, scaled to an hour. The database is on the disk under
# target/, not on a tmpfs, so write_bytes is real.
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE=${1:?"the baseline jkmon binary (see the comment at the top)"}
N=${2:-4}; SECS=${3:-120}; ROUNDS=${4:-2}
AFTER=target/release/jkmon
for b in "$BEFORE" "$AFTER"; do
  [ -x "$b" ] || { echo "$b is missing: build it first (see the top of $0)" >&2; exit 1; }
done
mkdir -p target
DIR=$(mktemp -d -p "$PWD/target" load-energy.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$DIR"' EXIT
addresses=$(for i in $(seq 1 "$N"); do printf 'C8:47:80:00:00:%02X\n' "$i"; done | paste -sd,)
tick=$(getconf CLK_TCK)

run() { # binary → "cpu_s peak_rss_kib wchar_per_h write_bytes_per_h"
  rm -f "$DIR/db"*
  env -i PATH="$PATH" HOME="$DIR" JK_BMS_TRANSPORT=sim JK_BMS_ADDRESS="$addresses" \
    DB_PATH="$DIR/db" WEB_BIND=127.0.0.1:0 RUST_LOG=warn "$1" run --demo > /dev/null 2>&1 &
  local pid=$!
  sleep "$SECS"
  local io stat rss
  io=$(cat "/proc/$pid/io")
  stat=$(cut -d' ' -f14,15 "/proc/$pid/stat")
  rss=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status")
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  local wchar wbytes
  wchar=$(awk '/^wchar:/ {print $2}' <<< "$io")
  wbytes=$(awk '/^write_bytes:/ {print $2}' <<< "$io")
  read -r ut st <<< "$stat"
  echo "$(echo "scale=2; ($ut + $st) / $tick" | bc) $rss $((wchar * 3600 / SECS)) $((wbytes * 3600 / SECS))"
}

declare -A cpu rss wchar wbytes
for label in before after; do cpu[$label]=0; rss[$label]=0; wchar[$label]=0; wbytes[$label]=0; done
for round in $(seq 1 "$ROUNDS"); do
  for label in before after; do
    bin=$BEFORE; [ "$label" = after ] && bin=$AFTER
    read -r c r w b < <(run "$bin")
    echo "round $round, $label: CPU $c s, peak RSS $r KiB, wchar $w B/h, write_bytes $b B/h"
    cpu[$label]=$(echo "${cpu[$label]} + $c" | bc)
    (( r > rss[$label] )) && rss[$label]=$r
    wchar[$label]=$(( wchar[$label] + w / ROUNDS ))
    wbytes[$label]=$(( wbytes[$label] + b / ROUNDS ))
  done
done
ratio() { echo "scale=2; $2 / ($1 + 0.0001)" | bc; }
echo
echo "$N batteries, $SECS s x $ROUNDS rounds of run --demo at the defaults:"
echo "  CPU:         before ${cpu[before]} s, after ${cpu[after]} s ($(ratio "${cpu[before]}" "${cpu[after]}")x)"
echo "  peak RSS:    before ${rss[before]} KiB, after ${rss[after]} KiB ($(ratio "${rss[before]}" "${rss[after]}")x)"
echo "  wchar/h:     before ${wchar[before]} B, after ${wchar[after]} B ($(ratio "${wchar[before]}" "${wchar[after]}")x)"
echo "  written/h:   before ${wbytes[before]} B, after ${wbytes[after]} B ($(ratio "${wbytes[before]}" "${wbytes[after]}")x)"
