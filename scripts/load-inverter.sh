#!/usr/bin/env bash
# CPU and memory of `jkmon run` polling the inverter itself and reading one BMS, against a
# Python poller alone (scripts/python-poller.py) on the same simulated Wi-Fi dongle, one after
# the other for SECONDS each; and the time from the end of each poll to its committed row.
#   scripts/load-inverter.sh [SECONDS=60] [POLL_INTERVAL=1]
# Needs the release binary (cargo build --release) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-60}; EVERY=${2:-1}
BIN=target/release/jkmon
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
DIR=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$DIR"' EXIT
free_port() {
  python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM if sys.argv[1]=="udp" else socket.SOCK_STREAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"
}
UDP=$(free_port udp)
"$BIN" simulate dongle --listen "127.0.0.1:$UDP" 2> "$DIR/sim.log" &
for _ in $(seq 50); do grep -q "behind a Wi-Fi dongle" "$DIR/sim.log" && break; sleep 0.1; done
rows() { python3 -c 'import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); print(*c.execute("SELECT COUNT(*), COUNT(error) FROM readings").fetchone())' "$1"; }

/usr/bin/time -f "%U %S %M" -o "$DIR/py.time" timeout -s INT "$SECS" \
  python3 scripts/python-poller.py "$DIR/py.db" 127.0.0.1 "$UDP" 127.0.0.1 "$(free_port tcp)" "$EVERY" \
  2>/dev/null || true
read -r py_user py_sys py_rss < <(tail -1 "$DIR/py.time")
read -r py_rows py_errors < <(rows "$DIR/py.db")

JK_BMS_TRANSPORT=sim DB_PATH="$DIR/jk.db" WEB_BIND=127.0.0.1:0 \
  INVERTER_TRANSPORT=dongle INVERTER_IP=127.0.0.1 INVERTER_UDP_PORT="$UDP" LOCAL_IP=127.0.0.1 \
  INVERTER_LISTEN_PORT="$(free_port tcp)" POLL_INTERVAL="$EVERY" \
  RUST_LOG=warn,jkmon::store::writer=debug NO_COLOR=1 \
  /usr/bin/time -f "%U %S %M" -o "$DIR/jk.time" timeout -s INT "$SECS" "$BIN" run \
  2> "$DIR/jk.log" >/dev/null || true
read -r jk_user jk_sys jk_rss < <(tail -1 "$DIR/jk.time")
read -r jk_rows jk_errors < <(rows "$DIR/jk.db")

echo "Python poller alone, $SECS s at POLL_INTERVAL=$EVERY: $py_rows rows ($py_errors error rows), CPU $py_user s user + $py_sys s sys, max RSS $py_rss KiB"
echo "jkmon run (inverter + 1 BMS + web), same: $jk_rows rows ($jk_errors error rows), CPU $jk_user s user + $jk_sys s sys, max RSS $jk_rss KiB"
python3 - "$py_user" "$py_sys" "$py_rss" "$jk_user" "$jk_sys" "$jk_rss" "$DIR/jk.log" <<'PY'
import re, statistics, sys
pu, ps, pr, ju, js, jr = map(float, sys.argv[1:7])
print("ratio jkmon / Python: CPU %.2f, RSS %.2f" % ((ju + js) / max(pu + ps, 1e-9), jr / pr))
lags, took = [], []
for line in open(sys.argv[7]):
    m = re.search(r"committed (-?\d+) ms after its poll ended \(the poll took (\d+) ms\)", line)
    if m:
        lags.append(int(m.group(1))); took.append(int(m.group(2)))
if lags:
    q = lambda xs, p: sorted(xs)[min(len(xs) - 1, int(p * len(xs)))]
    print("poll end -> committed row: median %d ms, p95 %d ms, max %d ms (%d rows); a poll takes median %d ms"
          % (statistics.median(lags), q(lags, 0.95), max(lags), len(lags), statistics.median(took)))
PY
