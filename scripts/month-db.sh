#!/usr/bin/env bash
# Sourced by the load scripts: checks the release binary ($BIN) and makes a month of the Python
# poller's rows in a temporary database ($DB, in $DIR, removed on exit with any background job).
BIN=target/release/jkmon
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
DIR=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$DIR"' EXIT
DB="$DIR/inverter.db"
python3 scripts/month-of-rows.py "$DB"
echo "database: 259,200 rows, $(du -m "$DB" | cut -f1) MB"
