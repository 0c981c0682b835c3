#!/usr/bin/env bash
# A jkmon release in one command, everything under dist/:
#   scripts/release.sh VERSION [--prebuilt DIR] [--no-tag]
# 1. the version into Cargo.toml and Cargo.lock, and CHANGELOG.md's Unreleased section under
#    VERSION and today's date (a new empty Unreleased above it);
# 2. the three binaries: this machine's (amd64) and the Raspberry Pi's (arm64, armhf),
#    cross-compiled with Debian's cross gcc (`--prebuilt DIR` takes DIR/<arch>/jkmon instead);
# 3. a Debian package of each (scripts/package.sh) and a tarball of each with the manual
#    pages, the shell completions, the systemd units and the example configuration;
# 4. SHA256SUMS over all six;
# 5. a commit "jkmon VERSION" and the annotated tag vVERSION (not with --no-tag).
# Publishing (pushing the tag, uploading dist/) is left to the maintainer; .github/workflows/
# release.yml does both on the forge when a tag is pushed. The test suite runs this script up
# to the tag in a scratch clone (scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

version="${1:-}"
shift || true
prebuilt="" tag=1
while [ $# -gt 0 ]; do
  case "$1" in
    --prebuilt) prebuilt="$2"; shift 2 ;;
    --no-tag) tag=0; shift ;;
    *) echo "release.sh: unknown argument $1 (see the comment at the top)" >&2; exit 2 ;;
  esac
done
if ! [[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$ ]]; then
  echo "release.sh: give the version as MAJOR.MINOR.PATCH, e.g. scripts/release.sh 0.2.0" >&2
  exit 2
fi
if [ -n "$(git status --porcelain)" ]; then
  echo "release.sh: the working tree has uncommitted changes; commit or stash them first" >&2
  exit 1
fi
if git rev-parse -q --verify "refs/tags/v$version" >/dev/null; then
  echo "release.sh: the tag v$version exists already" >&2
  exit 1
fi
unreleased=$(sed -n '/^## \[Unreleased\]/,/^## \[/p' CHANGELOG.md | sed '1d;$d' | grep -c '^- ' || true)
if [ "$unreleased" -eq 0 ]; then
  echo "release.sh: CHANGELOG.md's Unreleased section lists nothing: say what changed first" >&2
  exit 1
fi

step() { echo "== release $version: $*"; }

step "version and changelog"
sed -i "0,/^version = \".*\"/s//version = \"$version\"/" Cargo.toml
# (Cargo.lock follows Cargo.toml's version at the next cargo command)
cargo metadata --offline --format-version 1 >/dev/null
today=$(date -u +%F)
previous=$(sed -n 's/^## \[\([0-9][^]]*\)\].*/\1/p' CHANGELOG.md | head -1)
sed -i "s/^## \[Unreleased\]$/## [Unreleased]\n\n## [$version] - $today/" CHANGELOG.md
repository=$(sed -n 's/^repository = "\(.*\)"/\1/p' Cargo.toml)
if [ -n "$previous" ]; then
  link="$repository/compare/v$previous...v$version"
else
  link="$repository/releases/tag/v$version"
fi
sed -i "s#^\[Unreleased\]: .*#[Unreleased]: $repository/compare/v$version...HEAD\n[$version]: $link#" CHANGELOG.md

declare -A triple=([amd64]=x86_64-unknown-linux-gnu [arm64]=aarch64-unknown-linux-gnu [armhf]=armv7-unknown-linux-gnueabihf)
declare -A linker=([amd64]=x86_64-linux-gnu-gcc [arm64]=aarch64-linux-gnu-gcc [armhf]=arm-linux-gnueabihf-gcc)
rm -rf dist
mkdir -p dist/bin
for arch in amd64 arm64 armhf; do
  if [ -n "$prebuilt" ]; then
    install -D -m 0755 "$prebuilt/$arch/jkmon" "dist/bin/$arch/jkmon"
    continue
  fi
  step "building for $arch (${triple[$arch]})"
  t=${triple[$arch]}
  env "CARGO_TARGET_$(echo "$t" | tr 'a-z-' 'A-Z_')_LINKER=${linker[$arch]}" \
    cargo build --release --locked --quiet --target "$t" --bin jkmon
  install -D -m 0755 "target/$t/release/jkmon" "dist/bin/$arch/jkmon"
done
host=dist/bin/amd64/jkmon
# (prebuilt binaries are the caller's: the suite's are built before the version changes)
if [ -z "$prebuilt" ] && ! "$host" --version | grep -qx "jkmon $version"; then
  echo "release.sh: $host says $("$host" --version), not jkmon $version" >&2
  exit 1
fi

for arch in amd64 arm64 armhf; do
  step "package and tarball for $arch"
  HOST_JKMON="$host" scripts/package.sh --arch "$arch" --binary "dist/bin/$arch/jkmon" \
    --version "$version" --out dist >/dev/null
  name="jkmon-$version-${triple[$arch]}"
  tree="dist/$name"
  install -D -m 0755 "dist/bin/$arch/jkmon" "$tree/jkmon"
  "$host" man --dir "$tree/man" >/dev/null
  mkdir -p "$tree/completions"
  "$host" completions bash > "$tree/completions/jkmon.bash"
  "$host" completions zsh > "$tree/completions/_jkmon"
  "$host" completions fish > "$tree/completions/jkmon.fish"
  cp -r systemd "$tree/systemd"
  cp README.md LICENSE CHANGELOG.md .env.example "$tree/"
  tar -C dist --owner=0 --group=0 --sort=name -czf "dist/$name.tar.gz" "$name"
  rm -rf "$tree"
done
rm -rf dist/bin

step "checksums"
(cd dist && sha256sum -- *.deb *.tar.gz > SHA256SUMS)

if [ "$tag" = 1 ]; then
  step "commit and tag v$version"
  git commit --quiet -am "jkmon $version"
  git tag -a "v$version" -m "jkmon $version"
fi
step "done: dist/ holds $(find dist -maxdepth 1 -type f | wc -l) files; publish with: git push --follow-tags && upload dist/*"
