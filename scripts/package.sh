#!/usr/bin/env bash
# Builds jkmon's Debian package from a jkmon binary, with dpkg-deb (Debian's own packager):
#   scripts/package.sh --arch amd64|arm64|armhf --binary PATH [--version V] [--out DIR]
# The package holds the binary (/usr/bin/jkmon), the systemd units (/lib/systemd/system), the
# configuration /etc/jkmon/jkmon.env (a conffile, from .env.example), the manual pages, the
# shell completions and the copyright; its maintainer scripts make the `jkmon` system user
# (groups bluetooth and dialout) and /var/lib/jkmon. The manual pages and completions come
# from a jkmon this machine can run: the binary itself, or $HOST_JKMON for another arch.
# scripts/release.sh builds the release binaries and calls this; the test suite packs its own
# build (tests/it/package.rs).
set -euo pipefail
cd "$(dirname "$0")/.."

arch="" binary="" out="dist"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --binary) binary="$2"; shift 2 ;;
    --version) version="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "package.sh: unknown argument $1 (see the comment at the top)" >&2; exit 2 ;;
  esac
done
case "$arch" in
  amd64) strip="x86_64-linux-gnu-strip" ;;
  arm64) strip="aarch64-linux-gnu-strip" ;;
  armhf) strip="arm-linux-gnueabihf-strip" ;;
  *) echo "package.sh: --arch amd64, arm64 or armhf, not \"$arch\"" >&2; exit 2 ;;
esac
[ -x "$binary" ] || { echo "package.sh: --binary $binary is not an executable" >&2; exit 2; }
command -v "$strip" >/dev/null || { echo "package.sh: $strip is missing (Debian: binutils for $arch, with its cross gcc)" >&2; exit 2; }
host="${HOST_JKMON:-$binary}"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
root="$stage/jkmon_${version}_${arch}"
doc="$root/usr/share/doc/jkmon"
install -d "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/jkmon" \
  "$root/usr/share/man/man1" "$doc" "$root/usr/share/bash-completion/completions" \
  "$root/usr/share/zsh/vendor-completions" "$root/usr/share/fish/vendor_completions.d" \
  "$root/usr/share/lintian/overrides"

install -m 0755 "$binary" "$root/usr/bin/jkmon"
"$strip" --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/jkmon"

# The units as the repository has them, for /usr/bin/jkmon, without the from-source comments.
for unit in systemd/*.service; do
  sed -e 's#/usr/local/bin/jkmon#/usr/bin/jkmon#g' -e '/^#   sudo /d' \
      -e '/the lines below are for an install from source/d' \
      -e '/^# Installed from the Debian package/d' "$unit" > "$root/lib/systemd/system/$(basename "$unit")"
  chmod 0644 "$root/lib/systemd/system/$(basename "$unit")"
done

# Every setting with its default, commented: the service runs with them until the owner edits it.
install -m 0640 .env.example "$root/etc/jkmon/jkmon.env"
echo /etc/jkmon/jkmon.env > "$root/DEBIAN/conffiles"

"$host" man --dir "$stage/man" >/dev/null
for page in "$stage"/man/*.1; do
  gzip -9n -c "$page" > "$root/usr/share/man/man1/${page##*/}.gz"
done
"$host" completions bash > "$root/usr/share/bash-completion/completions/jkmon"
"$host" completions zsh > "$root/usr/share/zsh/vendor-completions/_jkmon"
"$host" completions fish > "$root/usr/share/fish/vendor_completions.d/jkmon.fish"

{
  echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
  echo "Upstream-Name: jkmon"
  echo "Source: https://github.com/jkmon/jkmon"
  echo
  echo "Files: *"
  echo "Copyright: jkmon's authors"
  echo "License: MIT"
  sed -e '1,/^$/d' -e 's/^$/./' -e 's/^/ /' LICENSE
} > "$doc/copyright"
gzip -9n < CHANGELOG.md > "$doc/changelog.gz"
date="$(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")"
printf 'jkmon (%s) stable; urgency=medium\n\n  * jkmon %s; see changelog.gz.\n\n -- jkmon maintainers <jkmon@users.noreply.github.com>  %s\n' \
  "$version" "$version" "$date" | gzip -9n > "$doc/changelog.Debian.gz"
# each override says why (lintian runs in the test suite: tests/it/package.rs)
install -D -m 0644 packaging/debian/lintian-overrides "$root/usr/share/lintian/overrides/jkmon"
find "$root/usr/share" -type f -exec chmod 0644 {} +

# The oldest glibc the binary asks for.
glibc="$(readelf --version-info --wide "$root/usr/bin/jkmon" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -1)"
for s in postinst prerm postrm; do
  install -m 0755 "packaging/debian/$s" "$root/DEBIAN/$s"
done
size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
cat > "$root/DEBIAN/control" <<CONTROL
Package: jkmon
Version: $version
Architecture: $arch
Maintainer: jkmon maintainers <jkmon@users.noreply.github.com>
Installed-Size: $size
Depends: libc6 (>= $glibc), adduser
Recommends: bluez
Section: utils
Priority: optional
Homepage: https://github.com/jkmon/jkmon
Description: monitor for JK (Jikong) battery-management systems
 jkmon reads JK BMSs over Bluetooth LE, serial or RS485, decodes every value
 they report and merges them into an inverter monitor's SQLite database. It
 polls Easun/ISolar inverters, and shows it all on a web dashboard, a Telegram
 bot, alerts, MQTT for Home Assistant and Prometheus metrics.
CONTROL
(cd "$root" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums" "$root/DEBIAN/control" "$root/DEBIAN/conffiles"

mkdir -p "$out"
deb="$out/jkmon_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
