#!/usr/bin/env bash
# Load benchmark of jkmon's web server: a release build of `jkmon web` on a database holding
# DAYS of simulated history (`jkmon fill-demo`: an inverter row every 10 s, BMS history every
# 30 s), hammered by ApacheBench (`ab`, Debian's apache2-utils, installed when missing) with
# CONCURRENCY clients. The baseline of the same run is a static file from the same server.
#
#   scripts/load-web.sh [DAYS=30] [REQUESTS=2000] [CONCURRENCY=50]
set -euo pipefail
cd "$(dirname "$0")/.."
DAYS=${1:-30}
REQUESTS=${2:-2000}
CONCURRENCY=${3:-50}

if ! command -v ab >/dev/null; then
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq apache2-utils
fi
cargo build --release --quiet --bin jkmon
tmp=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
DB_PATH="$tmp/load.db" target/release/jkmon fill-demo --days "$DAYS" 2>"$tmp/fill.log"
tail -1 "$tmp/fill.log"
echo "database: $(du -h "$tmp/load.db" | cut -f1)"

port=$((20000 + RANDOM % 20000))
DB_PATH="$tmp/load.db" WEB_BIND="127.0.0.1:$port" JK_BMS_TRANSPORT=sim RUST_LOG=warn,jkmon=info \
  target/release/jkmon web 2>"$tmp/web.log" &
pid=$!
for _ in $(seq 1 100); do  # bounded: the server is up within a second or two
  grep -q "listening on" "$tmp/web.log" && break
  sleep 0.1
done
grep -q "listening on" "$tmp/web.log" || { cat "$tmp/web.log"; exit 1; }

from=$(( $(date +%s) - DAYS * 86400 ))
# computed, not cached: the first request of a range (5 different ranges, the median)
cold=$(for i in 1 2 3 4 5; do
  curl -s -o /dev/null -w "%{time_total}\n" "http://127.0.0.1:$port/api/v1/history?from=$((from + i * 86400 + i * 37))"
done | sort -n | sed -n 3p)
run() {  # name path → "name rps p50 p99"
  local out
  out=$(ab -q -l -n "$REQUESTS" -c "$CONCURRENCY" "http://127.0.0.1:$port$2" 2>&1)
  local failed non2xx rps p50 p99
  failed=$(awk '/^Failed requests:/ {print $3}' <<<"$out")
  non2xx=$(awk '/^Non-2xx responses:/ {print $3}' <<<"$out")
  rps=$(awk '/^Requests per second:/ {print $4}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  echo "$1 ${rps:-0} ${p50:-0} ${p99:-0} ${failed:-?} ${non2xx:-0}"
}
results=(
  "$(run baseline:/static/app.css /static/app.css)"
  "$(run / /)"
  "$(run /api/v1/status /api/v1/status)"
  "$(run "/api/v1/history(${DAYS}d)" "/api/v1/history?from=$from")"
)
base_rps=$(awk '{print $2}' <<<"${results[0]}")
printf "\n%d requests per route, %d concurrent clients, %d days of history\n" "$REQUESTS" "$CONCURRENCY" "$DAYS"
printf "%-26s %10s %8s %8s %9s %7s %7s\n" route "req/s" "p50 ms" "p99 ms" "vs base" failed non2xx
for r in "${results[@]}"; do
  read -r name rps p50 p99 failed non2xx <<<"$r"
  ratio=$(awk -v a="$rps" -v b="$base_rps" 'BEGIN { printf "%.2f×", (b > 0 ? a / b : 0) }')
  printf "%-26s %10s %8s %8s %9s %7s %7s\n" "$name" "$rps" "$p50" "$p99" "$ratio" "$failed" "$non2xx"
done
awk -v s="$cold" -v d="$DAYS" 'BEGIN { printf "\n%d-day history computed without the cache (one request, median of 5): %.1f ms\n", d, s * 1000 }'
echo "(identical requests within 10 s are answered from the server's cache, as for several open pages)"
