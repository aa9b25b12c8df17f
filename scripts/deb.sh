#!/usr/bin/env bash
# Debian packages of genrepi, made by cargo-deb from Cargo.toml's
# [package.metadata.deb]: the binary, the default model under
# /usr/share/genrepi/models, /etc/genrepi/genrepi.toml (a conffile), the
# systemd unit (enabled; started only when the config says autostart = true),
# the maintainer scripts in deploy/debian/, a man page and shell completions.
#
#   bash scripts/deb.sh                                       # amd64, release profile
#   bash scripts/deb.sh --target aarch64-unknown-linux-gnu    # arm64 (Raspberry Pi OS), dist profile
#   bash scripts/deb.sh --target aarch64-unknown-linux-gnu --profile release --no-build
#
# --profile P    cargo profile to package (default: release on the host, dist,
#                the LTO build, for aarch64; CI packages its test build, dev)
# --no-build     package the binary already built for that profile and target
#
# Prints the path of the package (target/debian/genrepi_VERSION-1_ARCH.deb)
# on its last line. Installs cargo-deb (pinned) when it is missing; the
# aarch64 toolchain comes from cross/build-aarch64.sh --no-build.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_DEB_VERSION=3.8.0

target="" profile="" build=true
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    --no-build) build=false; shift ;;
    *) echo "deb.sh: unknown argument '$1' (see the header of $0)" >&2; exit 2 ;;
  esac
done
[ -z "$profile" ] && { [ -n "$target" ] && profile=dist || profile=release; }

. "$HOME/.cargo/env"
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
  echo "deb.sh: installing cargo-deb $CARGO_DEB_VERSION"
  cargo install --locked --quiet cargo-deb --version "$CARGO_DEB_VERSION"
fi

target_args=() run=()
dir=${CARGO_TARGET_DIR:-target}
if [ -n "$target" ]; then
  target_args=(--target "$target")
  dir=$dir/$target
  # The man page and completions come from the packaged binary itself.
  case "$target" in
    aarch64-*) run=(qemu-aarch64) ;;
  esac
fi
# cargo builds the dev profile into target/debug.
bin=$dir/$([ "$profile" = dev ] && echo debug || echo "$profile")/genrepi
if $build; then
  cargo build --profile "$profile" "${target_args[@]}" --bin genrepi
fi
[ -x "$bin" ] || { echo "deb.sh: $bin is not built (drop --no-build)" >&2; exit 1; }

# Generated from the clap definitions (genrepi manpage / completions).
mkdir -p target/deb
"${run[@]}" "$bin" manpage | gzip -9n > target/deb/genrepi.1.gz
"${run[@]}" "$bin" completions bash > target/deb/genrepi.bash
"${run[@]}" "$bin" completions zsh > target/deb/_genrepi
"${run[@]}" "$bin" completions fish > target/deb/genrepi.fish

cargo deb --no-build --profile "$profile" "${target_args[@]}"
