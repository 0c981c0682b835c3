#!/usr/bin/env bash
# CPU and memory of `jkmon watch` streaming N JK BMSs over Bluetooth (btleplug, D-Bus) for a
# while, against the fake BlueZ of the tests, playing real JK-PB frames at the real rate (2/s).
# One BMS is the baseline; the line for N BMSs shows the ratio.
#   scripts/load-ble.sh [N=4] [SECONDS=30]
# Needs the release binary (cargo build --release), dbus-daemon, gdbus, python3-dbusmock and
# the captured frames of tests/fixtures/jk-frames.json (JKMON_CORPUS overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-4}; SECS=${2:-30}
CORPUS=${JKMON_CORPUS:-tests/fixtures/jk-frames.json}
BIN=target/release/jkmon
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
DIR=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$DIR"' EXIT
cat > "$DIR/bus.conf" <<'CONF'
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>session</type><listen>unix:tmpdir=/tmp</listen><auth>EXTERNAL</auth>
<policy context="default"><allow send_destination="*" eavesdrop="true"/><allow eavesdrop="true"/><allow own="*"/></policy></busconfig>
CONF
mkfifo "$DIR/addr"
dbus-daemon --config-file="$DIR/bus.conf" --nofork --print-address=1 > "$DIR/addr" 2>/dev/null &
read -r ADDR < "$DIR/addr"
export DBUS_SYSTEM_BUS_ADDRESS=$ADDR
PARAMS=$(/usr/bin/python3 - "$CORPUS" "$N" <<'PY'
import json, sys
c = {e['id']: e for e in json.load(open(sys.argv[1]))}
fr = lambda i: c[i].get('fragments') or [c[i]['hex']]
print(json.dumps({"devices": [{
    "address": "C8:47:80:12:AD:%02X" % n, "name": "JK%d" % n,
    "uuids": ["0000ffe0-0000-1000-8000-00805f9b34fb"],
    "device_info": fr(121), "settings": fr(122), "cell_info": [fr(123), fr(124)],
    "interval_ms": 500} for n in range(int(sys.argv[2]))]}))
PY
)
/usr/bin/python3 -m dbusmock --system -t tests/support/fake_bluez.py -p "$PARAMS" >/dev/null 2>&1 &
gdbus wait --system --timeout 10 org.bluez
for n in 1 "$N"; do
  addrs=$(seq -f "C8:47:80:12:AD:%02g" 0 $((n - 1)) | paste -sd,)
  JK_BMS_TRANSPORT=ble JK_BMS_ADDRESS=$addrs /usr/bin/time -f "%U %S %M" -o "$DIR/time" \
    timeout -s INT "$SECS" "$BIN" watch > "$DIR/out" 2>/dev/null || true
  read -r user sys rss < <(tail -1 "$DIR/time")
  snaps=$(wc -l < "$DIR/out")
  echo "$n BMS, $SECS s: $snaps snapshots, CPU $user s user + $sys s sys, max RSS $rss KiB"
done
