#!/usr/bin/env bash
# Build the project's image (Dockerfile) with podman on a machine that reaches PyPI and Debian's
# mirror but no container registry and no GitHub (the project's sandbox and CI machines), and save
# it as an archive that containerd imports (`ctr -n k8s.io images import`). docs/image.md.
#
# Local stand-ins, put into podman's storage under the names the Dockerfile's FROM lines use (so the
# Dockerfile is built as it is, with --pull=never):
#   docker.io/library/debian:12.12-slim  a debootstrap'd bookworm minbase (its root tar is cached)
#   ghcr.io/astral-sh/uv:0.13.9          /uv and /uvx from PyPI's uv 0.13.9 wheel
# and the local-equivalent build arguments: PYTHON_FROM=debian (bookworm's python3 3.11 instead of
# uv's python-build-standalone download from GitHub) and TORCH_FIND_LINKS=/wheels (the CPU torch
# wheel on this disk, mounted read-only, instead of download.pytorch.org).
#
#   scripts/build-image.sh build [--no-cache]  idempotent: seconds when the inputs are unchanged
#   scripts/build-image.sh archive-path        print the archive of the current inputs (built or not)
#   scripts/build-image.sh image               print the image's tag
#   scripts/build-image.sh check               exit 0 when the image and archive of the current inputs exist
#   scripts/build-image.sh smoke               run the built image's smoke checks (as UID 10001)
#
# Environment: GARFIELD_TEST_CLUSTER_CACHE (cache root, as scripts/test-cluster.sh),
# GARFIELD_IMAGE_FRAMEWORKS=all|pytorch (pytorch: no TensorFlow, tagged <version>-pytorch),
# GARFIELD_TORCH_WHEELS (folder holding torch-<v>+cpu-cp311-*.whl; default /opt/wheels).
set -euo pipefail

CACHE="${GARFIELD_TEST_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/garfield-test-cluster}"
IMAGES="$CACHE/images"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FRAMEWORKS="${GARFIELD_IMAGE_FRAMEWORKS:-all}"
TORCH_WHEELS="${GARFIELD_TORCH_WHEELS:-/opt/wheels}"
# The host's CA bundle, mounted into the build for uv: HTTPS to PyPI here passes a TLS-inspecting
# proxy whose CA only the host's bundle holds (uv's built-in roots: "invalid peer certificate").
CA_BUNDLE="${GARFIELD_BUILD_CA_BUNDLE:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
APT_PACKAGES=(podman buildah debootstrap containerd runc ca-certificates python3)
SUITE="bookworm"
BASE_ROOTFS="$IMAGES/debian-$SUITE-minbase.rootfs.tar"
# podman on these machines (docs: shared real-node notes): its default ulimits exceed the hard
# limit here ("setrlimit: Operation not permitted"), and crun fails on the hybrid cgroup mounts.
PODMAN_RUN_FLAGS=(--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

log() { printf '[build-image] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

case "$FRAMEWORKS" in all | pytorch) ;; *) die "GARFIELD_IMAGE_FRAMEWORKS must be all or pytorch" ;; esac

# The names the Dockerfile pulls, read from it so that the two never disagree.
from_image() { # $1: a pattern of the FROM line's image
  awk -v pat="$1" 'toupper($1) == "FROM" && $2 ~ pat { print $2; exit }' "$REPO/Dockerfile"
}
qualify() { # docker's short names -> podman's full ones (debian:12 -> docker.io/library/debian:12)
  local name="$1"
  if [[ "$name" != */* ]]; then
    name="docker.io/library/$name"
  else
    case "${name%%/*}" in *.* | *:* | localhost) ;; *) name="docker.io/$name" ;; esac
  fi
  printf '%s\n' "$name"
}
BASE_IMAGE="$(qualify "$(from_image '^debian:')")"
UV_IMAGE="$(qualify "$(from_image 'astral-sh/uv:')")"
[[ -n "$BASE_IMAGE" && -n "$UV_IMAGE" ]] || die "cannot find the debian and uv FROM lines in the Dockerfile"
UV_VERSION="${UV_IMAGE##*:}"
PROJECT_VERSION="$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$REPO/pyproject.toml" | head -n 1)"
TORCH_VERSION="$(sed -n 's/^ARG TORCH_VERSION=//p' "$REPO/Dockerfile" | head -n 1)"
TAG="localhost/garfield:$PROJECT_VERSION"
[[ "$FRAMEWORKS" == all ]] || TAG="$TAG-$FRAMEWORKS"
# VARIANT=cpu is the default, and given all the same: buildah 1.28 (Debian 12's podman 4.3) resolves
# `FROM base-${VARIANT}` to the stage only from --build-arg values, not from the ARG's default, when
# it skips unused stages ("base-cpu: image not known" without it).
BUILD_ARGS=(--build-arg VARIANT=cpu --build-arg PYTHON_FROM=debian --build-arg TORCH_FIND_LINKS=/mnt/wheels
  --build-arg "FRAMEWORKS=$FRAMEWORKS")
# What the build reads from this machine (the torch wheel, the CA bundle) is gathered in one folder,
# mounted read-only on the base's empty /mnt: podman 4.3 mounts `-v` volumes into every RUN of every
# stage and leaves the mount points it creates behind, so a new path (/wheels) would appear, empty,
# in the final image.
MOUNT_DIR="$IMAGES/build-mount"
BUILD_MOUNTS=(-v "$MOUNT_DIR:/mnt:ro")
if [[ -s "$CA_BUNDLE" ]]; then
  BUILD_ARGS+=(--build-arg SSL_CERT_FILE=/mnt/ca-certificates.crt)
fi

# install_apt_packages (APT_PACKAGES as set above)
# shellcheck source=lib/apt.sh
source "$REPO/scripts/lib/apt.sh"

# ------------------------------------------------------------------ debian:12.12-slim stand-in
# debootstrap --variant=minbase (about 1 min, network to the Debian mirror), trimmed like Docker's
# slim images (no docs, man pages or locales; dpkg told to keep leaving them out), the host's apt
# sources (the mirror this machine reaches, with -updates and -security). Cached as a tar.
build_base_rootfs() {
  [[ -s "$BASE_ROOTFS" ]] && return 0
  local mirror root
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror="${mirror:-http://deb.debian.org/debian}"
  mkdir -p "$IMAGES"
  root=$(mktemp -d "$IMAGES/base-rootfs.XXXXXX")
  log "debootstrap $SUITE minbase ($mirror)"
  if ! debootstrap --variant=minbase "$SUITE" "$root" "$mirror" >"$IMAGES/base-debootstrap.log" 2>&1; then
    tail -n 30 "$IMAGES/base-debootstrap.log" >&2
    umount -R "$root/proc" "$root/sys" 2>/dev/null || true # left mounted when it fails half way
    rm -rf "$root"
    exit 1
  fi
  umount -R "$root/proc" "$root/sys" 2>/dev/null || true
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/debian.sources"
  else
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  fi
  rm -f "$root/etc/apt/sources.list" "$root/etc/resolv.conf" "$root/etc/hostname"
  cat >"$root/etc/dpkg/dpkg.cfg.d/slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/locale/*
EOF
  cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  printf 'Acquire::Languages "none";\n' >"$root/etc/apt/apt.conf.d/docker-no-languages"
  printf 'Apt::AutoRemove::SuggestsImportant "false";\n' >"$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
  find "$root/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete 2>/dev/null || true
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
    "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/log/*.log "$root"/var/log/apt/*
  # /dev, /proc and /sys are the runtime's: keep the folders, not debootstrap's device nodes.
  tar --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    -C "$root" -cf "$BASE_ROOTFS.tmp" .
  mv "$BASE_ROOTFS.tmp" "$BASE_ROOTFS"
  rm -rf "$root"
}

import_base() {
  podman image exists "$BASE_IMAGE" && return 0 # the real one (pulled) or ours: either way, as it is
  build_base_rootfs
  log "podman import $BASE_ROOTFS as $BASE_IMAGE"
  podman import --quiet --change 'CMD ["bash"]' --change 'LABEL garfield.local-equivalent=debootstrap-minbase' \
    "$BASE_ROOTFS" "$BASE_IMAGE" >/dev/null
}

# ------------------------------------------------------------------ ghcr.io/astral-sh/uv stand-in
pip_cmd() {
  if [[ -x "$REPO/.venv/bin/pip" ]]; then
    echo "$REPO/.venv/bin/pip"
  elif python3 -m pip --version >/dev/null 2>&1; then
    echo "python3 -m pip"
  else
    APT_PACKAGES=(python3-pip) install_apt_packages
    echo "python3 -m pip"
  fi
}

import_uv() {
  podman image exists "$UV_IMAGE" && return 0
  local arch dir wheel
  case "$(uname -m)" in
    x86_64) arch=x86_64 ;; aarch64) arch=aarch64 ;; *) die "no uv wheel for $(uname -m)" ;;
  esac
  dir="$IMAGES/uv-$UV_VERSION"
  wheel=$(ls "$dir"/uv-"$UV_VERSION"-*manylinux*"$arch"*.whl 2>/dev/null | head -n 1 || true)
  if [[ -z "$wheel" ]]; then
    log "pip download uv==$UV_VERSION (manylinux $arch wheel)"
    mkdir -p "$dir"
    # shellcheck disable=SC2046
    $(pip_cmd) download --quiet --no-deps --only-binary=:all: --platform "manylinux_2_17_$arch" \
      "uv==$UV_VERSION" -d "$dir" \
      || die "uv==$UV_VERSION is not on PyPI: set the Dockerfile's uv tag to a release that is"
    wheel=$(ls "$dir"/uv-"$UV_VERSION"-*.whl | head -n 1)
  fi
  local root
  root=$(mktemp -d "$IMAGES/uv-root.XXXXXX")
  python3 - "$wheel" "$root" <<'EOF'
import sys, zipfile
from pathlib import Path
wheel, root = sys.argv[1], Path(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if "/scripts/" in name and Path(name).name in ("uv", "uvx"):
            out = root / Path(name).name
            out.write_bytes(z.read(name))
            out.chmod(0o755)
EOF
  [[ -x "$root/uv" && -x "$root/uvx" ]] || die "no uv/uvx in $wheel"
  log "podman import /uv, /uvx ($(basename "$wheel")) as $UV_IMAGE"
  tar --numeric-owner --owner=0 --group=0 -C "$root" -c uv uvx |
    podman import --quiet --change 'ENTRYPOINT ["/uv"]' --change 'LABEL garfield.local-equivalent=pypi-uv-wheel' \
      - "$UV_IMAGE" >/dev/null
  rm -rf "$root"
}

# ------------------------------------------------------------------ the project image
torch_wheel() {
  ls "$TORCH_WHEELS"/torch-"$TORCH_VERSION"+cpu-cp311-cp311-*.whl 2>/dev/null | head -n 1 || true
}

# A hash of everything the build reads: the Dockerfile's COPY inputs as .dockerignore lets them in,
# the build arguments, the two base images and the torch wheel. Unchanged hash: nothing to build.
inputs_hash() {
  (
    cd "$REPO"
    {
      find runtime operator -type f ! -path '*/__pycache__/*' ! -name '*.py[cod]' ! -name '*_pb2.py' \
        ! -name '*_pb2_grpc.py' ! -name '*_pb2.pyi' ! -path '*.egg-info/*' ! -path '*/.pytest_cache/*'
      printf '%s\n' Dockerfile .dockerignore pyproject.toml setup.py README.md
    } | LC_ALL=C sort | xargs -d '\n' sha256sum
    printf '%s\n' "${BUILD_ARGS[@]}"
    podman image inspect --format '{{.Id}}' "$BASE_IMAGE" "$UV_IMAGE" 2>/dev/null || echo "no base images"
    basename "$(torch_wheel)"
  ) | sha256sum | cut -c1-16
}

ARCHIVE_PREFIX="$IMAGES/garfield-$PROJECT_VERSION"
[[ "$FRAMEWORKS" == all ]] || ARCHIVE_PREFIX="$ARCHIVE_PREFIX-$FRAMEWORKS"
archive_for() { echo "$ARCHIVE_PREFIX-$1.tar"; } # $1: hash

src_tag() { echo "${TAG%%:*}:src-${FRAMEWORKS}-$1"; }

build() {
  local podman_flags=() t0 t hash
  [[ "${1:-}" == --no-cache ]] && podman_flags+=(--no-cache)
  install_apt_packages
  mkdir -p "$IMAGES"
  exec 9>"$IMAGES/.build-image.lock"
  flock 9
  t0=$SECONDS
  import_base
  import_uv
  [[ -n "$(torch_wheel)" ]] || die "no torch-$TORCH_VERSION+cpu cp311 wheel in $TORCH_WHEELS (GARFIELD_TORCH_WHEELS)"
  rm -rf "$MOUNT_DIR"
  mkdir -p "$MOUNT_DIR/wheels"
  ln -f "$(torch_wheel)" "$MOUNT_DIR/wheels/" 2>/dev/null || cp "$(torch_wheel)" "$MOUNT_DIR/wheels/"
  [[ -s "$CA_BUNDLE" ]] && cp "$(readlink -f "$CA_BUNDLE")" "$MOUNT_DIR/ca-certificates.crt"
  hash=$(inputs_hash)
  local archive src
  archive=$(archive_for "$hash")
  src=$(src_tag "$hash")
  if ((${#podman_flags[@]} == 0)) && podman image exists "$src"; then
    log "image of these inputs exists: $src"
  else
    log "podman build $TAG (${BUILD_ARGS[*]})"
    t=$SECONDS
    podman build "${PODMAN_RUN_FLAGS[@]}" "${podman_flags[@]}" --network host --pull=never --format docker \
      "${BUILD_ARGS[@]}" "${BUILD_MOUNTS[@]}" -t "$src" -f "$REPO/Dockerfile" "$REPO"
    log "podman build: $((SECONDS - t)) s"
    rm -f "$archive" # a rebuild (--no-cache) is a new image: save it anew
    [[ "$(inputs_hash)" == "$hash" ]] || log "warning: the inputs changed during the build; the next build rebuilds"
  fi
  podman tag "$src" "$TAG"
  # Older builds of this frameworks' variant: untag (their layers go when nothing else uses them).
  local old
  for old in $(podman images --format '{{.Repository}}:{{.Tag}}' --filter "reference=${TAG%%:*}:src-${FRAMEWORKS}-*"); do
    # (the filter matches images, and lists every tag of each: keep all but the older src- tags)
    [[ "$old" == "${TAG%%:*}:src-${FRAMEWORKS}-"* && "$old" != "$src" ]] || continue
    podman rmi "$old" >/dev/null 2>&1 || true
  done
  if [[ ! -s "$archive" ]]; then
    log "podman save $TAG -> $archive"
    t=$SECONDS
    rm -f "$ARCHIVE_PREFIX"-????????????????.tar # older inputs' archives (GBs each)
    podman save --quiet --format docker-archive -o "$archive.tmp" "$TAG"
    mv "$archive.tmp" "$archive"
    log "podman save: $((SECONDS - t)) s, $(du -h "$archive" | cut -f1)"
  fi
  log "done in $((SECONDS - t0)) s: $TAG ($(podman image inspect --format '{{.Size}}' "$TAG" | awk '{printf "%.2f GB", $1/1e9}')), $archive"
}

check() {
  local hash
  podman image exists "$BASE_IMAGE" && podman image exists "$UV_IMAGE" || return 1
  hash=$(inputs_hash)
  podman image exists "$(src_tag "$hash")" && [[ -s "$(archive_for "$hash")" ]]
}

smoke() {
  # --no-healthcheck: podman 4.3 takes the image's `HEALTHCHECK NONE` for a check to schedule (and
  # logs that it has no systemd to do it with).
  local run=(podman run --rm "${PODMAN_RUN_FLAGS[@]}" --no-healthcheck --network none -e TF_CPP_MIN_LOG_LEVEL=2 "$TAG")
  "${run[@]}" garfield --help >/dev/null
  "${run[@]}" garfield-operator --help >/dev/null
  local frameworks="torch, tensorflow"
  [[ "$FRAMEWORKS" == all ]] || frameworks="torch"
  "${run[@]}" python -c "import os, garfield, $frameworks; assert os.getuid() == 10001, os.getuid(); print('uid', os.getuid(), 'torch', torch.__version__)"
  log "smoke checks passed: $TAG"
}

case "${1:-}" in
  build) shift; build "$@" ;;
  archive-path) archive_for "$(inputs_hash)" ;;
  image) echo "$TAG" ;;
  check) check ;;
  smoke) smoke ;;
  *) sed -n '2,/^set -euo/p' "$0" | sed '$d' >&2; exit 2 ;;
esac
