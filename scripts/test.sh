#!/usr/bin/env bash
# The whole jkmon test suite, on a fresh Debian/Ubuntu machine with Rust installed:
# installs the system packages the tests need (when missing), then runs formatting, lint and
# every test (unit, corpus, never-panic, CLI, benchmarks in test mode).
# Everything it needs is in the clone (the captured frames are tests/fixtures/jk-frames.json);
# in CI (CI=true) a missing program fails the run instead of being skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the tests use:
# - dbus-daemon, python3-dbusmock, libglib2.0-bin (gdbus): the fake BlueZ of tests/it/ble.rs;
#   its python3 also plays the Python inverter poller of tests/it/store.rs and tests/it/service.rs.
# - chromium: the real browser of tests/it/browser.rs.
# - python3-yaml, systemd (systemd-analyze), python3-seccomp: the deployment checks of
#   tests/it/deploy.rs (the units' exposure score, and jkmon on every transport under their
#   system-call filter).
# - socat: the pty pairs that stand in for serial and RS485 adapters in tests/it/wired.rs,
#   tests/it/mqtt.rs and tests/it/metrics.rs.
# - mosquitto, mosquitto-clients (mosquitto_sub), openssl: the real broker and subscriber of
#   tests/it/mqtt.rs, and the test CA and certificate of its mqtts:// broker.
# - prometheus (promtool): `promtool check metrics` on /metrics in tests/it/metrics.rs.
# - docker-compose (1.29, Debian's and Raspberry Pi OS's): `docker-compose config` on the
#   compose file in tests/it/deploy.rs (no Docker engine needed).
# - gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user: the arm64 (Raspberry Pi) build,
#   cross-compiled here and run under qemu-aarch64.
# - python3-venv: the virtual environment of the real Home Assistant (below).
# Building for this machine needs none: libdbus and SQLite are compiled in.
PACKAGES=(dbus-daemon python3-dbusmock libglib2.0-bin chromium python3-yaml systemd python3-seccomp socat mosquitto mosquitto-clients openssl prometheus docker-compose gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user python3-venv)
ARM64=aarch64-unknown-linux-gnu

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi


if ! rustup target list --installed | grep -qx "$ARM64"; then
  rustup target add "$ARM64"
fi

stage() { echo "== [$((SECONDS / 60))m$((SECONDS % 60))s] $*"; }
# A real Home Assistant for tests/it/mqtt.rs (a real Home Assistant): 2024.3.3, the last release that runs on
# Python 3.11, in a virtual environment under the user's cache directory (about 430 MB, two
# minutes the first time; kept between runs, and made again when an install was cut short).
# tests/home_assistant/constraints.txt pins every package that worked (Home Assistant's
# dependencies float otherwise; josepy 2 breaks it).
HA_VERSION=2024.3.3
HA_VENV="${TEST_HA_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/jkmon/home-assistant-$HA_VERSION}"
if [ ! -f "$HA_VENV/.installed" ]; then
  stage "installing Home Assistant $HA_VERSION into $HA_VENV"
  rm -rf "$HA_VENV"
  python3 -m venv "$HA_VENV"
  "$HA_VENV/bin/pip" install --quiet --disable-pip-version-check \
    -c tests/home_assistant/constraints.txt "homeassistant==$HA_VERSION" paho-mqtt SQLAlchemy \
    fnv-hash-fast psutil-home-assistant janus josepy
  touch "$HA_VENV/.installed"
fi
# (the tests find it at the same default path, or where TEST_HA_VENV says)

stage "cargo fmt --check"
cargo fmt --all -- --check
stage "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
stage "cargo test --all-targets --no-run (compile)"
cargo test --all-targets --no-run --quiet

# A Raspberry Pi's binary, cross-compiled on this machine as the README and the Dockerfile do
# (no debug info: it is run, not debugged). It builds while the tests run, at the lowest CPU
# priority (the tests mostly wait on processes and sockets, so it takes their idle time and
# never their time), in a target directory of its own (cargo locks the one the tests use).
CROSS_DIR=target/cross
mkdir -p "$CROSS_DIR"
CARGO_TARGET_DIR="$CROSS_DIR" CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
  CARGO_PROFILE_DEV_DEBUG=0 nice -n 19 cargo build --quiet --target "$ARM64" --bin jkmon \
  > "$CROSS_DIR/build.log" 2>&1 &
cross=$!
trap 'kill "$cross" 2>/dev/null || true' EXIT

stage "cargo test --all-targets (run; the arm64 build goes on beside it)"
cargo test --all-targets

# Then run under qemu-aarch64: it decodes a captured frame exactly as this machine's build
# does and writes a SQLite database.
stage "cargo build --target $ARM64 (cross-compiled for a Raspberry Pi): waiting for it"
wait "$cross" || { cat "$CROSS_DIR/build.log"; echo "the arm64 cross build failed" >&2; exit 1; }
scripts/check-arm64.sh "$CROSS_DIR/$ARM64/debug/jkmon" target/debug/jkmon
stage "all passed"
