#!/usr/bin/env bash
# Checks genrepi's Debian packages the way a user meets them (CI, issue 15).
#
#   bash scripts/deb-check.sh amd64 PACKAGE.deb [CLIP]
#       lintian (no errors), dpkg -i, then from the installed paths only:
#       the user and its groups, the enabled unit, the conffile surviving a
#       reinstall, `genrepi autostart`, `info` (the packaged model, found
#       without flags), a replay of CLIP (a real audio file), the man page
#       and completions; then dpkg -r and dpkg -P, leaving nothing behind.
#       Installs and purges for real: run it on a CI or throwaway machine.
#   bash scripts/deb-check.sh arm64 PACKAGE.deb
#       contents and fields only (no arm64 machine here): architecture,
#       dependencies (libasound2, libc6), the binary's machine and the
#       highest glibc symbol version it needs (<= 2.36, bookworm's).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/apt-missing.sh

arch=${1:?usage: deb-check.sh amd64|arm64 PACKAGE.deb [CLIP]}
deb=$(realpath "${2:?usage: deb-check.sh amd64|arm64 PACKAGE.deb [CLIP]}")
clip=$(realpath "${3:-../shared/gtzan-mini/blues/blues.00000.wav}")
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
fail() { echo "deb-check: FAILED: $*" >&2; exit 1; }
step() { echo; echo "deb-check: == $* =="; }

step "$(basename "$deb"): $(stat -c %s "$deb") bytes"
dpkg-deb --field "$deb" Package Version Architecture Depends Installed-Size
contents=$(dpkg-deb --contents "$deb")
awk '{print $1, $3, $6, $7, $8}' <<<"$contents"
[ "$(dpkg-deb --field "$deb" Architecture)" = "$arch" ] || fail "architecture is not $arch"
depends=$(dpkg-deb --field "$deb" Depends)
for dep in libasound2 libc6 adduser; do
  grep -q "$dep" <<<"$depends" || fail "Depends lacks $dep: $depends"
done
for path in ./usr/bin/genrepi ./usr/share/genrepi/models/default.toml ./etc/genrepi/genrepi.toml \
    ./usr/lib/systemd/system/genrepi.service ./usr/share/man/man1/genrepi.1.gz \
    ./usr/share/bash-completion/completions/genrepi; do
  grep -q " $path\$" <<<"$contents" || fail "$path is not in the package"
done
dpkg-deb --info "$deb" conffiles | grep -qx /etc/genrepi/genrepi.toml \
  || fail "/etc/genrepi/genrepi.toml is not a conffile"

# glibc: the highest GLIBC_x.y the binary asks for, and libc6's minimum.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb --extract "$deb" "$work"
file -b "$work/usr/bin/genrepi"
case "$arch" in
  arm64) objdump=aarch64-linux-gnu-objdump; machine=aarch64 ;;
  amd64) objdump=objdump; machine=x86-64 ;;
esac
file -b "$work/usr/bin/genrepi" | grep -q "$machine" || fail "the binary is not $machine"
glibc=$($objdump -T "$work/usr/bin/genrepi" | grep -o 'GLIBC_[0-9.]*' | sort -t. -k2,2n -u | tail -n1)
echo "deb-check: binary needs up to $glibc"
[ "$(printf '%s\n' "${glibc#GLIBC_}" 2.36 | sort -V | tail -n1)" = 2.36 ] \
  || fail "needs $glibc, newer than bookworm's 2.36"
libc_min=$(sed -nE 's/.*libc6 \(>= ([0-9.]+)\).*/\1/p' <<<"$depends")
if [ -n "$libc_min" ]; then
  [ "$(printf '%s\n' "$libc_min" 2.36 | sort -V | tail -n1)" = 2.36 ] || fail "Depends libc6 >= $libc_min"
fi
[ "$arch" = arm64 ] && { echo "deb-check: arm64 package OK"; exit 0; }

step "lintian"
apt_install_missing deb-check lintian >/dev/null
lintian --fail-on error --info "$deb" || fail "lintian reports errors"

step "install (dpkg -i)"
$sudo dpkg -i "$deb"
command -v genrepi | grep -qx /usr/bin/genrepi || fail "genrepi is not /usr/bin/genrepi"
id genrepi
id -nG genrepi | tr ' ' '\n' | grep -qx audio || fail "user genrepi is not in audio"
wants=/etc/systemd/system/multi-user.target.wants/genrepi.service
[ -L "$wants" ] && echo "enabled: $wants -> $(readlink "$wants")" || fail "the unit is not enabled ($wants)"

step "autostart (the unit's ExecCondition)"
set +e; genrepi autostart; rc=$?; set -e
[ "$rc" = 1 ] || fail "autostart with the packaged config exits $rc, not 1"

step "info and replay from the installed paths (working directory /, no flags)"
info=$(cd / && runuser -u genrepi -- genrepi info)
grep -F "/usr/share/genrepi/models/default.toml" <<<"$info" || fail "info does not use the packaged model"
# A copy the genrepi user can read wherever the checkout lives.
[ -f "$clip" ] || fail "no audio clip at $clip (give one as the third argument)"
chmod 755 "$work"
cp "$clip" "$work/clip.${clip##*.}" && chmod 644 "$work/clip.${clip##*.}"
(cd / && runuser -u genrepi -- genrepi replay "$work/clip.${clip##*.}" | tail -n 3) \
  || fail "replay of $clip as user genrepi"
man -w genrepi 2>/dev/null || zcat /usr/share/man/man1/genrepi.1.gz | head -n 3
bash -c '. /usr/share/bash-completion/completions/genrepi && complete -p genrepi'

step "a user's edit to the conffile survives a reinstall"
echo "# edited by deb-check" | $sudo tee -a /etc/genrepi/genrepi.toml >/dev/null
$sudo dpkg -i "$deb" >/dev/null
tail -n 1 /etc/genrepi/genrepi.toml | grep -qx "# edited by deb-check" || fail "the edit was lost"

step "remove (dpkg -r): the config and the user stay"
$sudo dpkg -r genrepi
[ ! -e /usr/bin/genrepi ] && [ ! -e /usr/share/genrepi ] || fail "files left after remove"
[ -f /etc/genrepi/genrepi.toml ] || fail "remove deleted the conffile"

step "purge (dpkg -P): nothing left"
$sudo dpkg -P genrepi
for path in /etc/genrepi /usr/share/genrepi /usr/share/doc/genrepi /var/cache/genrepi "$wants"; do
  [ ! -e "$path" ] && [ ! -L "$path" ] || fail "$path left after purge"
done
! getent passwd genrepi >/dev/null || fail "user genrepi left after purge"
! dpkg -s genrepi >/dev/null 2>&1 || fail "dpkg still knows genrepi"
echo "deb-check: amd64 package OK: installed, ran, removed and purged cleanly"
