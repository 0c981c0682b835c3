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
# - gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, gcc-arm-linux-gnueabihf,
#   libc6-dev-armhf-cross, qemu-user: the arm64 and armhf (Raspberry Pi) builds, cross-compiled
#   here, run under qemu-aarch64 and qemu-arm, and packaged.
# - debootstrap, lintian: the Debian package, installed into a minimal Debian root (cached
#   below) by tests/it/package.rs, and checked against Debian policy.
# - shellcheck: every shell script of the repository (tests/it/deploy.rs).
# - python3-venv: the virtual environment of the real Home Assistant (below).
# - influxdb (1.6, influxd): the real InfluxDB of tests/it/influx.rs, started there on a free
#   loopback port with its own data directory (the package's own service is not used).
# Building for this machine needs none: libdbus and SQLite are compiled in.
PACKAGES=(dbus-daemon python3-dbusmock libglib2.0-bin chromium python3-yaml systemd python3-seccomp socat mosquitto mosquitto-clients openssl prometheus docker-compose gcc-aarch64-linux-gnu libc6-dev-arm64-cross gcc-arm-linux-gnueabihf libc6-dev-armhf-cross qemu-user python3-venv debootstrap lintian shellcheck influxdb)
ARM64=aarch64-unknown-linux-gnu
ARMHF=armv7-unknown-linux-gnueabihf

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


for target in "$ARM64" "$ARMHF"; do
  if ! rustup target list --installed | grep -qx "$target"; then
    rustup target add "$target"
  fi
done

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

# mdBook for tests/it/docs.rs (the book builds without a warning), pinned and built once into
# the user's cache (about two minutes the first time).
MDBOOK_VERSION=0.4.52
MDBOOK_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/jkmon/mdbook-$MDBOOK_VERSION"
if [ ! -x "$MDBOOK_ROOT/bin/mdbook" ]; then
  stage "installing mdBook $MDBOOK_VERSION into $MDBOOK_ROOT"
  cargo install --locked --quiet mdbook --version "$MDBOOK_VERSION" --root "$MDBOOK_ROOT" \
    --no-default-features --features search
fi

# A minimal Debian 12 root for tests/it/package.rs (dpkg -i of jkmon's package): debootstrap's
# minbase with adduser and systemd (systemd-analyze verify runs inside), from the package
# registry, about 25 s and 230 MB the first time; kept as a tarball between runs (each test
# unpacks a fresh copy). It needs root, as chroot does.
DEBIAN_ROOT="${TEST_DEBIAN_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/jkmon/debian-bookworm-root.tar}"
if [ ! -f "$DEBIAN_ROOT" ] && [ "$(id -u)" -eq 0 ]; then
  stage "making a minimal Debian root for the package test ($DEBIAN_ROOT)"
  made=$(mktemp -d)
  debootstrap --variant=minbase --include=adduser,systemd bookworm "$made/root" > "$made/log" 2>&1 \
    || { tail -20 "$made/log"; echo "debootstrap failed" >&2; exit 1; }
  mkdir -p "$(dirname "$DEBIAN_ROOT")"
  tar -C "$made/root" -cf "$DEBIAN_ROOT.part" . && mv "$DEBIAN_ROOT.part" "$DEBIAN_ROOT"
  rm -rf "$made"
fi

stage "cargo fmt --check"
cargo fmt --all -- --check
stage "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets --quiet -- -D warnings
stage "cargo test --all-targets --no-run (compile)"
cargo test --all-targets --no-run --quiet

# The Raspberry Pi's binaries (64- and 32-bit), cross-compiled on this machine as the README,
# the Dockerfile and scripts/release.sh do (no debug info: they are run, not debugged). They
# build while the tests run, at the lowest CPU priority (the tests mostly wait on processes and
# sockets, so the builds take their idle time and never their time), in a target directory of
# their own (cargo locks the one the tests use).
CROSS_DIR=target/cross
mkdir -p "$CROSS_DIR"
(
  export CARGO_TARGET_DIR="$CROSS_DIR" CARGO_PROFILE_DEV_DEBUG=0 \
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
  nice -n 19 cargo build --quiet --target "$ARM64" --bin jkmon
  nice -n 19 cargo build --quiet --target "$ARMHF" --bin jkmon
) > "$CROSS_DIR/build.log" 2>&1 &
cross=$!
trap 'kill "$cross" 2>/dev/null || true' EXIT

stage "cargo test --all-targets (run; the Raspberry Pi builds go on beside it)"
cargo test --all-targets

# Then each runs under qemu-user: it decodes a captured frame exactly as this machine's build
# does and writes a SQLite database; and each is packaged as the release packages it, and
# checked by lintian.
stage "cargo build --target $ARM64 and $ARMHF (cross-compiled for a Raspberry Pi): waiting for them"
wait "$cross" || { cat "$CROSS_DIR/build.log"; echo "a Raspberry Pi cross build failed" >&2; exit 1; }
packages=$(mktemp -d)
for arch in arm64 armhf; do
  case "$arch" in arm64) target=$ARM64 ;; armhf) target=$ARMHF ;; esac
  scripts/check-cross.sh "$arch" "$CROSS_DIR/$target/debug/jkmon" target/debug/jkmon
  deb=$(HOST_JKMON=target/debug/jkmon scripts/package.sh --arch "$arch" \
    --binary "$CROSS_DIR/$target/debug/jkmon" --out "$packages")
  [ "$(dpkg-deb -f "$deb" Architecture)" = "$arch" ] || { echo "$deb: wrong Architecture" >&2; exit 1; }
  lintian --fail-on error,warning --info "$deb"
  echo "$arch: $(basename "$deb") built and lintian-clean"
done
rm -rf "$packages"
stage "scripts/release.sh, up to publishing, in a scratch clone"
scripts/check-release.sh target/debug/jkmon "$CROSS_DIR/$ARM64/debug/jkmon" "$CROSS_DIR/$ARMHF/debug/jkmon"
stage "all passed"
