#!/usr/bin/env bash
# The cross-compiled arm64 jkmon against this machine's build: both must decode a captured
# frame to the same JSON, and the arm64 one must create and fill a SQLite database.
#   scripts/check-arm64.sh <arm64 jkmon> <this machine's jkmon>
set -euo pipefail
cd "$(dirname "$0")/.."
ARM=$1 HOST=$2
file_machine=$(od -An -tu2 -j18 -N2 "$ARM" | tr -d ' ')
[ "$file_machine" = 183 ] || { echo "$ARM is not an aarch64 ELF (e_machine $file_machine)" >&2; exit 1; }
run_arm() { qemu-aarch64 -L /usr/aarch64-linux-gnu "$ARM" "$@"; }
# a device-info and a cell-info capture of tests/fixtures (ids 9 and 10)
HEX=$(/usr/bin/python3 - <<'PY'
import json
c = {e["id"]: e for e in json.load(open("tests/fixtures/jk-frames.json"))}
print(c[9]["hex"], c[10]["hex"])
PY
)
want=$("$HOST" decode --json $HEX)
got=$(run_arm decode --json $HEX)
[ -n "$want" ] && [ "$got" = "$want" ] || { echo "arm64 decode differs:"; diff <(echo "$want") <(echo "$got"); exit 1; }
DIR=$(mktemp -d); trap 'rm -rf "$DIR"' EXIT
DB_PATH="$DIR/demo.db" run_arm fill-demo --days 1 2> "$DIR/log" || { cat "$DIR/log"; exit 1; }
grep -q "1 days for 1 battery" "$DIR/log" || { cat "$DIR/log"; exit 1; }
[ -s "$DIR/demo.db" ] || { echo "arm64 fill-demo wrote no database" >&2; exit 1; }
echo "arm64: $(run_arm --version), decodes as this machine's build, writes SQLite"
