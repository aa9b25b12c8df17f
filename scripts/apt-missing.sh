# Sourced by scripts/setup-debian.sh and cross/build-aarch64.sh:
#   apt_install_missing TAG PACKAGE...
# installs those of PACKAGE... that are not installed yet (as root, or with
# sudo), printing "TAG: installing ...". A bare name that is installed for
# several architectures (libasound2-dev next to libasound2-dev:arm64) is
# ambiguous to dpkg, so the native-architecture name is checked too.
apt_install_missing() {
  local tag=$1 p sudo=""
  shift
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  local missing=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || dpkg -s "$p:$(dpkg --print-architecture)" >/dev/null 2>&1 \
      || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "$tag: installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
  fi
}
