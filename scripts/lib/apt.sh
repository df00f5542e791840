# shellcheck shell=bash
# Sourced by scripts/build-image.sh and scripts/test-cluster.sh (not run on its own).
#
# install_apt_packages: apt-get install whichever of APT_PACKAGES (an array the caller sets) dpkg
# does not list as installed; nothing when all are. Uses sudo unless run as root, and the caller's
# log(). Not an input of the image build (the Dockerfile never reads scripts/), so build-image.sh's
# inputs_hash leaves it out.

install_apt_packages() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing apt packages: ${missing[*]}"
    local sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}
