#!/usr/bin/env bash
# Everything genrepi needs on a fresh Debian (bookworm or later) machine.
#
#   bash scripts/setup-debian.sh          # build and run: apt packages, Rust
#   bash scripts/setup-debian.sh --dev    # also tests: rustfmt, clippy, a
#                                         # Python venv (.venv) with librosa,
#                                         # and Chromium for the status page
#
# Idempotent: re-running only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

dev=false
[ "${1:-}" = "--dev" ] && dev=true

. scripts/apt-missing.sh

# libasound2-dev: cpal's ALSA backend (live capture).
packages=(build-essential pkg-config ca-certificates curl libasound2-dev)
$dev && packages+=(python3 python3-venv python3-pip chromium)
apt_install_missing setup "${packages[@]}"

# Rust via rustup in ~/.cargo (Debian's own rustc is too old for tract-onnx,
# which needs 1.91 or later).
if [ ! -x "$HOME/.cargo/bin/rustup" ]; then
  echo "setup: installing Rust (rustup, stable)"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
. "$HOME/.cargo/env"
rustc_minor=$(rustc --version | sed -E 's/rustc 1\.([0-9]+).*/\1/')
if [ "$rustc_minor" -lt 91 ]; then
  rustup update stable
fi

if $dev; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
  if [ ! -x .venv/bin/python3 ]; then
    python3 -m venv .venv
  fi
  .venv/bin/python3 -m pip install -q --disable-pip-version-check -r tests/requirements.txt
fi
echo "setup: done (Rust $(rustc --version | cut -d' ' -f2))"
