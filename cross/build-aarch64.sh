#!/usr/bin/env bash
# Build genrepi for Raspberry Pi OS 64-bit (aarch64) without Docker, on a
# Debian (bookworm or later) x86_64 machine: installs the cross toolchain,
# the arm64 ALSA headers and qemu, then builds the release binary.
#
#     bash cross/build-aarch64.sh            # -> target/aarch64-unknown-linux-gnu/dist/genrepi
#     bash cross/build-aarch64.sh --no-build # set-up only (CI then runs its own cargo commands)
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=aarch64-unknown-linux-gnu
. scripts/apt-missing.sh

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"

if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $sudo dpkg --add-architecture arm64
  $sudo apt-get update -qq
fi
packages=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross libasound2-dev:arm64 libasound2-dev
          pkg-config qemu-user binutils-aarch64-linux-gnu)
apt_install_missing cross "${packages[@]}"

if [ ! -x "$HOME/.cargo/bin/rustup" ]; then
  bash scripts/setup-debian.sh
fi
. "$HOME/.cargo/env"
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET"

[ "${1:-}" = "--no-build" ] && exit 0
# The dist profile: release with fat LTO, one codegen unit, stripped.
cargo build --profile dist --target "$TARGET"
bin=${CARGO_TARGET_DIR:-target}/$TARGET/dist/genrepi
echo "cross: $bin ($(stat -c %s "$bin") bytes, stripped)"
