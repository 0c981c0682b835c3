#!/usr/bin/env bash
# scripts/release.sh as the maintainer runs it, up to (not including) publishing, in a scratch
# clone of this repository with this run's binaries (so nothing is built twice):
#   scripts/check-release.sh <amd64 jkmon> <arm64 jkmon> <armhf jkmon>
# Every artifact must be in dist/, the checksums must hold, the tag and the changelog entry
# must exist; and the script must refuse a bad version, a dirty tree and a second run.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for arch in amd64 arm64 armhf; do
  bin="$1"; shift
  install -D -m 0755 "$bin" "$work/prebuilt/$arch/jkmon"
done
git clone --quiet . "$work/repo"
cd "$work/repo"
export GIT_AUTHOR_NAME="jkmon release check" GIT_AUTHOR_EMAIL="release-check@localhost"
export GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME" GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"
fail() { echo "release check: $*" >&2; exit 1; }

scripts/release.sh 1.2 --prebuilt "$work/prebuilt" 2>/dev/null && fail "took the version 1.2"
echo dirty >> README.md
scripts/release.sh 9.9.9 --prebuilt "$work/prebuilt" 2>/dev/null && fail "ran on a dirty tree"
git checkout --quiet README.md

scripts/release.sh 9.9.9 --prebuilt "$work/prebuilt" > "$work/log" 2>&1 || { cat "$work/log"; fail "failed"; }
want=(jkmon_9.9.9_amd64.deb jkmon_9.9.9_arm64.deb jkmon_9.9.9_armhf.deb
  jkmon-9.9.9-x86_64-unknown-linux-gnu.tar.gz jkmon-9.9.9-aarch64-unknown-linux-gnu.tar.gz
  jkmon-9.9.9-armv7-unknown-linux-gnueabihf.tar.gz SHA256SUMS)
for f in "${want[@]}"; do [ -s "dist/$f" ] || fail "dist/$f is missing"; done
[ "$(find dist -maxdepth 1 -type f | wc -l)" = "${#want[@]}" ] || fail "dist/ holds more: $(ls dist)"
(cd dist && sha256sum --quiet -c SHA256SUMS) || fail "the checksums do not hold"
[ "$(wc -l < dist/SHA256SUMS)" = 6 ] || fail "SHA256SUMS does not list all six"
for arch in amd64 arm64 armhf; do
  [ "$(dpkg-deb -f "dist/jkmon_9.9.9_$arch.deb" Version)" = 9.9.9 ] || fail "$arch package version"
  [ "$(dpkg-deb -f "dist/jkmon_9.9.9_$arch.deb" Architecture)" = "$arch" ] || fail "$arch package arch"
done
listing=$(tar -tzf dist/jkmon-9.9.9-armv7-unknown-linux-gnueabihf.tar.gz)
for f in jkmon man/jkmon.1 man/jkmon-run.1 completions/jkmon.bash systemd/jkmon.service LICENSE .env.example; do
  grep -qx "jkmon-9.9.9-armv7-unknown-linux-gnueabihf/$f" <<< "$listing" || fail "the armhf tarball lacks $f"
done
tar -xzOf dist/jkmon-9.9.9-armv7-unknown-linux-gnueabihf.tar.gz \
  jkmon-9.9.9-armv7-unknown-linux-gnueabihf/jkmon | cmp -s - "$work/prebuilt/armhf/jkmon" \
  || fail "the armhf tarball's binary is not the armhf build"
git rev-parse -q --verify refs/tags/v9.9.9 >/dev/null || fail "no tag v9.9.9"
[ "$(git log -1 --format=%s)" = "jkmon 9.9.9" ] || fail "no release commit"
grep -q '^version = "9.9.9"' Cargo.toml || fail "Cargo.toml keeps its old version"
grep -q "^## \[9.9.9\] - $(date -u +%F)" CHANGELOG.md || fail "no changelog entry"
[ "$(sed -n '/^## \[Unreleased\]/,/^## \[/p' CHANGELOG.md | grep -c '^- ')" = 0 ] || fail "Unreleased is not empty"
grep -q '^\[9.9.9\]: ' CHANGELOG.md || fail "no link for 9.9.9"
[ -z "$(git status --porcelain)" ] || fail "the release left changes: $(git status --porcelain)"
scripts/release.sh 9.9.9 --prebuilt "$work/prebuilt" 2>/dev/null && fail "released 9.9.9 twice"
echo "release: scripts/release.sh 9.9.9 made all ${#want[@]} artifacts, the checksums hold, tag v9.9.9"
