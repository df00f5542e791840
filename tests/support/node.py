"""A real Kubernetes node for tests: kube-scheduler + kubelet + containerd + runc + a CNI bridge +
kube-proxy + a cluster DNS stand-in, beside a control plane of its own (docs/test-node.md).

:class:`RealCluster` is what tests use: it prepares the host (a lock, stale-state cleanup, the
bridge), starts a :class:`~tests.support.cluster.ControlPlane` configured for a node (apiserver on
the bridge address, ``Node,RBAC``, ServiceAccount admission and tokens, the lease endpoint
reconciler, services in 198.19.0.0/16) and then a :class:`RealNode` on it. Pods get addresses in
198.18.0.0/24 on the bridge ``garfield0`` (gateway 198.18.0.1): all of it is in 198.18.0.0/15,
the benchmarking range, and stays in this machine's own network namespaces.

The binaries come from ``scripts/test-cluster.sh build`` (kubelet, kube-scheduler, kube-proxy,
pause from the same v1.20.2 tree as the apiserver; containerd/runc/CNI plugins from Debian).
Images come from no registry: archives are imported into the node's private containerd with
:meth:`RealNode.import_image` and pods use ``imagePullPolicy: Never`` or ``IfNotPresent``.

Host state touched, and put back by :meth:`RealCluster.stop` (or by the next start, if a session
was killed): the bridge and the veths on it, the pods' network namespaces (bound under
containerd's state dir in the temp folder, not in /run/netns), kube-proxy's ``KUBE-*`` iptables chains, the sysctls that
kubelet, kube-proxy and the CNI bridge set (saved first, restored after), bind mounts over
``/var/log/pods`` and ``/var/log/containers`` (kubelet's fixed log folders, redirected into the
temp folder), CNI result files ``/var/lib/cni/results/garfield-pods-*``, and every mount under
the temp folder. One node runs on a machine at a time (a lock in /run).
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import io
import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml

from garfield.observability.models import sha256_of

from . import dns
from .cluster import ControlPlane, ControlPlaneUnavailable, cache_dir, free_port

T = TypeVar("T")

NODE_NAME = "garfield-node"
BRIDGE = "garfield0"
GATEWAY = "198.18.0.1"
POD_CIDR = "198.18.0.0/24"
SERVICE_CIDR = "198.19.0.0/16"
CLUSTER_DOMAIN = "cluster.local"
CNI_NETWORK = "garfield-pods"
PAUSE_IMAGE = "localhost/pause:1"
TEST_IMAGE = "localhost/garfield-node-test:bookworm"
STATE_DIR = Path(os.environ.get("GARFIELD_TEST_NODE_STATE", "/run/garfield-test-node"))
WORKDIR_PREFIX = "garfield-node-"
HOST_LOG_DIRS = ("/var/log/pods", "/var/log/containers")
# Set by kubelet (setupKernelTunables), kube-proxy (route_localnet) and the CNI bridge (ip_forward).
SYSCTLS = (
    "net.ipv4.ip_forward", "net.ipv4.conf.all.route_localnet", "vm.overcommit_memory", "vm.panic_on_oom",
    "kernel.panic", "kernel.panic_on_oops", "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes",
    "net.bridge.bridge-nf-call-iptables",
)
STARTED_EXECUTABLES = (
    "etcd", "kube-apiserver", "kube-controller-manager", "kubelet", "kube-scheduler", "kube-proxy", "containerd",
)
NODE_BINARIES = ("kubelet", "kube-scheduler", "kube-proxy", "pause")
HOST_TOOLS = ("containerd", "ctr", "runc", "containerd-shim-runc-v2", "ip", "iptables")
BUILD_HINT = "run scripts/test-cluster.sh build"


class NodeUnavailable(ControlPlaneUnavailable):
    """The node's binaries are missing or it did not become Ready."""


# -- small host helpers -------------------------------------------------------------------------


def _run(argv: list[str], check: bool = True, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout, **kw)


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def _read_sysctls() -> dict[str, str]:
    out = {}
    for name in SYSCTLS:
        try:
            out[name] = _sysctl_path(name).read_text().strip()
        except OSError:
            pass
    return out


def _write_sysctls(values: dict[str, str]) -> None:
    for name, value in values.items():
        try:
            path = _sysctl_path(name)
            if path.read_text().strip() != value:
                path.write_text(value + "\n")
        except OSError:
            pass


def _mounts() -> list[str]:
    """Mount points of this mount namespace (octal escapes decoded)."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            points.append(point.encode().decode("unicode_escape"))
    return points


_libc = ctypes.CDLL(None, use_errno=True)


def _umount(path: str) -> None:
    if _libc.umount2(path.encode(), 2) != 0:  # MNT_DETACH
        err = ctypes.get_errno()
        if err not in (22, 2):  # EINVAL (not a mount point), ENOENT
            raise OSError(err, os.strerror(err), path)


def unmount_under(prefix: str) -> int:
    """Detach every mount at or below ``prefix``, deepest first; return how many."""
    prefix = prefix.rstrip("/")
    found = [m for m in _mounts() if m == prefix or m.startswith(prefix + "/")]
    for point in sorted(set(found), key=len, reverse=True):
        try:
            _umount(point)
        except OSError:
            pass
    return len(found)


def _pids() -> Iterator[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []


def _ppid(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _kill(pid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def kill_shims(address_marker: str) -> int:
    """SIGKILL the containerd shims whose ``-address`` contains ``address_marker`` and their
    children (each container's init, so the container's PID namespace goes with it)."""
    shims = []
    for pid in _pids():
        argv = _cmdline(pid)
        if argv and os.path.basename(argv[0]).startswith("containerd-shim") and "-address" in argv:
            addr = argv[argv.index("-address") + 1] if argv.index("-address") + 1 < len(argv) else ""
            if address_marker in addr:
                shims.append(pid)
    if not shims:
        return 0
    children = [pid for pid in _pids() if _ppid(pid) in shims]
    for pid in children + shims:
        _kill(pid)
    return len(shims)


def our_netns() -> list[str]:
    """Namespaces in ``/run/netns`` holding an address of the pod network. The node keeps its
    pods' netns under containerd's state dir (``netns_mounts_under_state_dir``), so this finds
    only what an older or foreign setup left there."""
    names = []
    netns_dir = Path("/run/netns")
    if not netns_dir.is_dir():
        return names
    net = ipaddress.ip_network(POD_CIDR)
    for entry in sorted(netns_dir.iterdir()):
        for ip in _netns_addresses(str(entry)):
            if ipaddress.ip_address(ip) in net:
                names.append(entry.name)
                break
    return names


def _netns_addresses(path: str) -> list[str]:
    """IPv4 addresses inside the network namespace bound at ``path``."""
    proc = _run(["nsenter", f"--net={path}", "ip", "-4", "-o", "addr", "show"], check=False, timeout=10)
    out = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if "inet" in parts:
            out.append(parts[parts.index("inet") + 1].split("/")[0])
    return out


# -- image archives (docker-archive format, written by hand: no registry, no podman storage) ----


def write_image_archive(out: Path, ref: str, layer: Path, config: dict[str, Any]) -> Path:
    """An image archive (``docker save`` layout) of one uncompressed layer tar, for
    ``ctr images import``. ``config``: the image's runtime config (Entrypoint, Cmd, Env...)."""
    diff_id = sha256_of(layer)
    image_config = {
        "architecture": "amd64", "os": "linux", "config": config,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]},
        "history": [{"created_by": "tests/support/node.py write_image_archive"}],
    }
    config_bytes = json.dumps(image_config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [ref], "Layers": [f"{diff_id}/layer.tar"]}]).encode()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    with tarfile.open(tmp, "w") as tar:
        for name, data in ((config_name, config_bytes), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.add(str(layer), arcname=f"{diff_id}/layer.tar")
    os.replace(tmp, out)
    return out


def pause_image_archive(pause_binary: Path) -> Path:
    """The sandbox image (``FROM scratch`` + ``/pause``), cached by the binary's digest."""
    digest = sha256_of(pause_binary)
    out = cache_dir() / "images" / f"pause-{digest[:16]}.tar"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    layer = out.with_name(out.name + f".layer{os.getpid()}")
    with tarfile.open(layer, "w") as tar:
        info = tar.gettarinfo(str(pause_binary), arcname="pause")
        info.mode, info.uid, info.gid, info.uname, info.gname, info.mtime = 0o755, 0, 0, "", "", 0
        with open(pause_binary, "rb") as f:
            tar.addfile(info, f)
    try:
        return write_image_archive(out, PAUSE_IMAGE, layer, {"Entrypoint": ["/pause"], "User": "65535:65535"})
    finally:
        layer.unlink(missing_ok=True)


def test_image_rootfs() -> Path:
    return cache_dir() / "images" / "debian-bookworm-python3.rootfs.tar"


def test_image_archive() -> Path:
    """The node tests' minimal image: Debian bookworm minbase + python3 (``scripts/test-cluster.sh
    build`` debootstraps the root), cached as an archive keyed by the root tar's size and mtime."""
    rootfs = test_image_rootfs()
    if not rootfs.is_file():
        raise NodeUnavailable(f"node test image root missing ({rootfs}): {BUILD_HINT}")
    st = rootfs.stat()
    out = rootfs.with_name(f"garfield-node-test-{st.st_size}-{st.st_mtime_ns}.tar")
    if not out.is_file():
        for old in rootfs.parent.glob("garfield-node-test-*.tar"):
            old.unlink(missing_ok=True)
        write_image_archive(out, TEST_IMAGE, rootfs, {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"],
            "Cmd": ["/bin/bash"], "WorkingDir": "/",
        })
    return out


# -- the node -----------------------------------------------------------------------------------


class RealNode:
    """containerd + kubelet + kube-scheduler + kube-proxy + DNS stand-in on the ``garfield0`` bridge.

    Use through :class:`RealCluster`: :meth:`prepare_host` must run before the control plane
    (the apiserver binds the bridge address), :meth:`start` after it.
    """

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin_dir = Path(bin_dir or cache_dir() / "bin")
        self.workdir: Path | None = None
        self.socket = ""
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Any] = []
        self._lock_fd: int | None = None
        self._imported: dict[tuple[str, int, int], str] = {}
        self._host_mounts: list[str] = []
        self._created_dirs: list[str] = []
        self.plane: ControlPlane | None = None
        self.timings: dict[str, float] = {}

    # -- checks ---------------------------------------------------------------------------------
    def check_binaries(self) -> None:
        missing = [str(self.bin_dir / b) for b in NODE_BINARIES if not os.access(self.bin_dir / b, os.X_OK)]
        missing += [t for t in HOST_TOOLS if not shutil.which(t) and not os.access(f"/usr/sbin/{t}", os.X_OK)]
        if not Path("/usr/lib/cni/bridge").is_file():
            missing.append("/usr/lib/cni/bridge (apt package containernetworking-plugins)")
        if os.geteuid() != 0:
            missing.append("root (the node needs network namespaces, mounts and iptables)")
        if missing:
            raise NodeUnavailable(f"test node prerequisites missing ({', '.join(missing)}): {BUILD_HINT}")

    # -- host preparation -----------------------------------------------------------------------
    def prepare_host(self, lock_timeout: float = 900.0) -> None:
        """Take the machine-wide lock, clean what a killed session left, save the sysctls, make
        the bridge with the gateway address, and redirect kubelet's log folders."""
        self.check_binaries()
        t0 = time.monotonic()
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        fd = os.open(STATE_DIR / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + lock_timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise NodeUnavailable(f"another test node holds {STATE_DIR / 'lock'} for over {lock_timeout}s") from None
                time.sleep(1)
        self._lock_fd = fd
        try:
            cleaned = clean_stale_state()
            self.workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
            os.chmod(self.workdir, 0o755)
            (STATE_DIR / "sysctl.json").write_text(json.dumps(_read_sysctls()))
            self._save_state()
            _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
            _run(["ip", "addr", "add", f"{GATEWAY}/24", "dev", BRIDGE])
            _run(["ip", "link", "set", BRIDGE, "up"])
            # folders kubelet and libcni use outside the temp folder: removed again if we made them
            for path in ("/var/lib/cni", "/var/lib/cni/results", *HOST_LOG_DIRS):
                if not os.path.isdir(path):
                    os.makedirs(path, exist_ok=True)
                    self._created_dirs.append(path)
            self._save_state()
            logs = self.workdir / "host-logs"
            for host_dir in HOST_LOG_DIRS:
                target = logs / Path(host_dir).name
                target.mkdir(parents=True)
                _run(["mount", "--bind", str(target), host_dir])
                self._host_mounts.append(host_dir)
                self._save_state()
        except BaseException:
            self.stop()
            raise
        self.timings["host_prepare_s"] = round(time.monotonic() - t0, 2)
        self.timings["stale_items_cleaned"] = cleaned

    def _save_state(self) -> None:
        state = {
            "workdir": str(self.workdir) if self.workdir else "",
            "host_mounts": self._host_mounts,
            "created_dirs": self._created_dirs,
            "procs": [{"pid": p.pid, "argv": [str(a) for a in p.args]} for p in self._procs if p.poll() is None],
        }
        if self.plane is not None:
            state["procs"] += [{"pid": p.pid, "argv": [str(a) for a in p.args]} for p in self.plane._procs if p.poll() is None]
            state["plane_workdir"] = str(self.plane.workdir)
        tmp = STATE_DIR / "state.json.tmp"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, STATE_DIR / "state.json")

    def track_plane(self, plane: ControlPlane) -> None:
        """Record the control plane's processes too, so a killed session's are ended next time."""
        self.plane = plane
        self._save_state()

    # -- processes ------------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        assert self.workdir is not None
        log = open(self.workdir / f"{name}.log", "wb")
        self._logs.append(log)
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                start_new_session=True, env=env)
        self._procs.append(proc)
        self._save_state()
        return proc

    def _check_alive(self) -> None:
        for proc in self._procs:
            if proc.poll() is not None:
                name = os.path.basename(str(proc.args[0]))
                raise NodeUnavailable(f"{name} exited with {proc.returncode}:\n{self.logs(name)[-3000:]}")

    def logs(self, name: str) -> str:
        if self.workdir is None:
            return ""
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def ctr(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return _run(["ctr", "--address", self.socket, "-n", "k8s.io", *args], check=check, timeout=timeout)

    # -- start ----------------------------------------------------------------------------------
    def start(self, plane: ControlPlane, timeout: float = 120.0, preload: list[Path] | None = None) -> "RealNode":
        """Start containerd (with the pause image), the DNS stand-in, kubelet, kube-scheduler and
        kube-proxy, and wait for the node to be Ready. ``preload``: image archives imported while
        kubelet starts (in a thread; done when this returns)."""
        assert self.workdir is not None, "prepare_host() first"
        self.track_plane(plane)
        t0 = time.monotonic()
        loader: threading.Thread | None = None
        errors: list[BaseException] = []
        try:
            self._start_containerd()
            self.timings["containerd_s"] = round(time.monotonic() - t0, 2)
            self.import_image(pause_image_archive(self.bin_dir / "pause"))
            if preload:
                def load() -> None:
                    t1 = time.monotonic()
                    try:
                        for archive in preload:
                            self.import_image(archive)
                    except BaseException as exc:  # reported by start()
                        errors.append(exc)
                    self.timings["preload_images_s"] = round(time.monotonic() - t1, 2)

                loader = threading.Thread(target=load, daemon=True)
                loader.start()
            self._spawn_dns(plane)
            users = (f"system:node:{NODE_NAME}", "system:kube-scheduler", "system:kube-proxy")
            kubeconfigs = {u: plane.user_kubeconfig(u) for u in users}
            self._start_kubelet(kubeconfigs[f"system:node:{NODE_NAME}"])
            k = kubeconfigs["system:kube-scheduler"]
            self._spawn("kube-scheduler", [
                str(self.bin_dir / "kube-scheduler"), f"--kubeconfig={k}", f"--authentication-kubeconfig={k}",
                f"--authorization-kubeconfig={k}", "--leader-elect=false", "--port=0", "--secure-port=0", "--v=0",
            ])
            self._start_kube_proxy(kubeconfigs["system:kube-proxy"])
            self._wait_dns()
            self.wait_ready(plane, timeout)
            self.timings["node_ready_s"] = round(time.monotonic() - t0, 2)
            if loader is not None:
                loader.join(timeout)
                if errors:
                    raise errors[0]
        except BaseException:
            if loader is not None:
                loader.join(60)
            self.stop_processes()  # the caller stops the plane, then release_host()
            raise
        self.timings["node_start_s"] = round(time.monotonic() - t0, 2)
        return self

    def _start_containerd(self) -> None:
        assert self.workdir is not None
        c = self.workdir / "containerd"
        cni_conf = self.workdir / "cni" / "net.d"
        for sub in (c / "root", c / "state", c / "opt", c / "runc", cni_conf, self.workdir / "cni" / "ipam"):
            sub.mkdir(parents=True, exist_ok=True)
        self.socket = str(c / "containerd.sock")
        config = f"""version = 2
root = "{c / 'root'}"
state = "{c / 'state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{c / 'ttrpc.sock'}"
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{c / 'opt'}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # without it every sandbox fails here ("can't get final child's PID from pipe: EOF"): no
  # CAP_SYS_RESOURCE, so no process may lower its oom_score_adj
  restrict_oom_score_adj = true
  # the pods' netns bind mounts under <state>/netns, not the shared /run/netns (podman's too):
  # private to this node, and unmounted with the rest of its temp folder
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{c / 'runc'}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_conf}"
    max_conf_num = 1
"""
        (c / "config.toml").write_text(config)
        # loopback is set up by the CRI plugin itself (go-cni's WithLoNetwork, from bin_dir)
        conflist = {
            "cniVersion": "0.4.0", "name": CNI_NETWORK,
            "plugins": [{
                "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
                "ipam": {
                    "type": "host-local", "dataDir": str(self.workdir / "cni" / "ipam"),
                    "ranges": [[{"subnet": POD_CIDR, "rangeStart": "198.18.0.10", "rangeEnd": "198.18.0.250",
                                 "gateway": GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            }],
        }
        (cni_conf / "10-garfield.conflist").write_text(json.dumps(conflist, indent=2))
        self._spawn("containerd", ["containerd", "--config", str(c / "config.toml")])
        deadline = time.monotonic() + 30
        while True:
            self._check_alive()
            if os.path.exists(self.socket) and self.ctr("version", check=False, timeout=10).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise NodeUnavailable(f"containerd not up after 30s:\n{self.logs('containerd')[-3000:]}")
            time.sleep(0.1)

    def _spawn_dns(self, plane: ControlPlane) -> None:
        assert self.workdir is not None
        token = self.workdir / "dns.token"
        token.write_text(plane.token)
        os.chmod(token, 0o600)
        self._spawn("dns", [sys.executable, str(Path(__file__).with_name("dns.py")), "--listen", GATEWAY, "--port", "53",
                            "--server", plane.server, "--token-file", str(token), "--domain", CLUSTER_DOMAIN])

    def _wait_dns(self) -> None:
        deadline = time.monotonic() + 30
        name = f"kubernetes.default.svc.{CLUSTER_DOMAIN}"
        while True:
            self._check_alive()
            try:
                rcode, addrs = dns.query(GATEWAY, 53, name, timeout=1)
                if rcode == 0 and addrs:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise NodeUnavailable(f"DNS stand-in does not answer {name}:\n{self.logs('dns')[-3000:]}")
            time.sleep(0.2)

    def _start_kubelet(self, kubeconfig: str) -> None:
        assert self.workdir is not None
        k = self.workdir / "kubelet"
        for sub in ("root", "certs", "volume-plugins", "seccomp"):
            (k / sub).mkdir(parents=True, exist_ok=True)
        # The pods' resolv.conf: kubelet writes nameserver clusterDNS and the cluster search path;
        # this file adds nothing from the host (the pods reach nothing outside this machine).
        (k / "resolv.conf").write_text("# garfield test node: no upstream resolvers\n")
        self.kubelet_port, self.kubelet_healthz_port = free_port(), free_port()
        cfg = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": GATEWAY, "port": self.kubelet_port, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": self.kubelet_healthz_port,
            "cgroupDriver": "cgroupfs", "cgroupsPerQOS": False, "enforceNodeAllocatable": [],
            "failSwapOn": False, "clusterDNS": [GATEWAY], "clusterDomain": CLUSTER_DOMAIN,
            "resolvConf": str(k / "resolv.conf"),
            "authentication": {"anonymous": {"enabled": True}, "webhook": {"enabled": False}},
            "authorization": {"mode": "AlwaysAllow"},
            "evictionHard": {}, "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "makeIPTablesUtilChains": False, "volumePluginDir": str(k / "volume-plugins"),
            "oomScoreAdj": 0, "serializeImagePulls": False,
            # status computed every second (posted only on change, or every minute): Ready sooner
            "nodeStatusUpdateFrequency": "1s", "nodeStatusReportFrequency": "1m",
            "syncFrequency": "10s", "fileCheckFrequency": "20s", "maxPods": 110,
        }
        (k / "config.yaml").write_text(yaml.safe_dump(cfg))
        self._spawn("kubelet", [
            str(self.bin_dir / "kubelet"), f"--kubeconfig={kubeconfig}", f"--config={k / 'config.yaml'}",
            "--container-runtime=remote", f"--container-runtime-endpoint=unix://{self.socket}",
            f"--image-service-endpoint=unix://{self.socket}", f"--root-dir={k / 'root'}", f"--cert-dir={k / 'certs'}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={GATEWAY}", f"--pod-infra-container-image={PAUSE_IMAGE}",
            f"--seccomp-profile-root={k / 'seccomp'}", "--v=1",
        ])

    def _start_kube_proxy(self, kubeconfig: str) -> None:
        assert self.workdir is not None
        cfg = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": kubeconfig}, "mode": "iptables",
            "bindAddress": GATEWAY, "clusterCIDR": POD_CIDR, "hostnameOverride": NODE_NAME,
            "healthzBindAddress": f"127.0.0.1:{free_port()}", "metricsBindAddress": f"127.0.0.1:{free_port()}",
            "nodePortAddresses": [f"{GATEWAY}/32"], "oomScoreAdj": 0,
            # no conntrack sysctls: leave the host's table sizes and timeouts alone
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "iptables": {"syncPeriod": "30s", "minSyncPeriod": "0s", "masqueradeAll": False},
        }
        path = self.workdir / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(cfg))
        self._spawn("kube-proxy", [str(self.bin_dir / "kube-proxy"), f"--config={path}", "--v=0"])

    def wait_ready(self, plane: ControlPlane, timeout: float) -> None:
        """Until the node is Ready and the node controller has lifted its not-ready taint."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        last = ""
        while time.monotonic() < deadline:
            self._check_alive()
            proc = plane.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
            if proc.returncode == 0:
                self.timings.setdefault("node_registered_s", round(time.monotonic() - t0, 2))
                node = json.loads(proc.stdout)
                conds = {c["type"]: c for c in node.get("status", {}).get("conditions", [])}
                ready = conds.get("Ready", {})
                taints = [t["key"] for t in node.get("spec", {}).get("taints") or []]
                last = f"Ready={ready.get('status')} ({ready.get('message', '')}), taints={taints}"
                if os.environ.get("GARFIELD_NODE_DEBUG"):
                    print(f"{time.monotonic() - t0:6.2f} {last}", file=sys.stderr)
                if ready.get("status") == "True":
                    self.timings.setdefault("node_ready_condition_s", round(time.monotonic() - t0, 2))
                    if not any(t.startswith("node.kubernetes.io/") for t in taints):
                        return
            else:
                last = proc.stderr.strip()
            time.sleep(0.5)
        kubelet = self.logs("kubelet")[-4000:]
        raise NodeUnavailable(f"node {NODE_NAME} not Ready after {timeout}s: {last}\n--- kubelet:\n{kubelet}")

    # -- images ---------------------------------------------------------------------------------
    def import_image(self, archive: str | Path) -> str:
        """Import an image archive (``docker save``/``podman save``/OCI tar) into the node's
        containerd (namespace k8s.io, where kubelet looks). The same file (path, size, mtime) is
        imported once per node. Returns ctr's output."""
        path = Path(archive).resolve()
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns)
        if key in self._imported:
            return self._imported[key]
        proc = self.ctr("images", "import", str(path), check=False)
        if proc.returncode != 0:
            raise NodeUnavailable(f"ctr images import {path} failed: {proc.stderr.strip()}")
        self._imported[key] = proc.stdout
        return proc.stdout

    def images(self) -> list[str]:
        return [line.split()[0] for line in self.ctr("images", "ls").stdout.splitlines()[1:] if line.strip()]

    # -- network namespaces ---------------------------------------------------------------------
    @property
    def netns_dir(self) -> Path:
        """Where containerd binds the pods' network namespaces (under its private state dir)."""
        assert self.workdir is not None
        return self.workdir / "containerd" / "state" / "io.containerd.grpc.v1.cri" / "netns"

    def netns_paths(self) -> list[Path]:
        return sorted(self.netns_dir.iterdir()) if self.netns_dir.is_dir() else []

    def netns_for_ip(self, ip: str) -> Path | None:
        """The bound network namespace holding ``ip``, if any."""
        for path in self.netns_paths():
            if ip in _netns_addresses(str(path)):
                return path
        return None

    # -- stop -----------------------------------------------------------------------------------
    def stop(self) -> None:
        """:meth:`stop_processes` then :meth:`release_host`."""
        try:
            self.stop_processes()
        finally:
            self.release_host()

    def stop_processes(self) -> None:
        """Stop every process this node started, by PID: kubelet, scheduler and proxy first, then
        the containers (through containerd, so runc removes their cgroups), containerd, the DNS
        stand-in, and any shim left."""
        by_name = {os.path.basename(str(p.args[0])): p for p in self._procs}
        for name in ("kubelet", "kube-scheduler", "kube-proxy"):
            _stop_proc(by_name.get(name))
        containerd = by_name.get("containerd")
        if self.socket and containerd is not None and containerd.poll() is None:
            self._kill_tasks()
        for proc in reversed(self._procs):
            _stop_proc(proc)
        self._procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
        if self.workdir is not None:
            kill_shims(str(self.workdir))

    def release_host(self) -> None:
        """Remove the netns, mounts, bridge, iptables chains and CNI results, restore the sysctls,
        delete the temp folder and release the lock."""
        if self._lock_fd is None:
            return
        _host_cleanup(str(self.workdir) if self.workdir else None, self._host_mounts, self._created_dirs)
        self._host_mounts = []
        self._created_dirs = []
        if self.workdir is not None and not os.environ.get("GARFIELD_KEEP_CONTROL_PLANE"):
            if not any(m.startswith(str(self.workdir) + "/") for m in _mounts()):
                shutil.rmtree(self.workdir, ignore_errors=True)
        for name in ("state.json", "sysctl.json"):
            (STATE_DIR / name).unlink(missing_ok=True)
        os.close(self._lock_fd)
        self._lock_fd = None

    def _kill_tasks(self) -> None:
        """Kill and delete every container task through containerd (runc removes their cgroups)."""
        proc = self.ctr("tasks", "ls", check=False, timeout=30)
        ids = [line.split()[0] for line in proc.stdout.splitlines()[1:] if line.strip()]
        for tid in ids:
            self.ctr("tasks", "kill", "--all", "--signal", "SIGKILL", tid, check=False, timeout=30)
        for tid in ids:
            for _ in range(30):
                out = self.ctr("tasks", "delete", "--force", tid, check=False, timeout=30)
                # the CRI plugin may delete an exited task itself, between two of these calls
                if out.returncode == 0 or "not found" in out.stderr or "no running task" in out.stderr:
                    break
                time.sleep(0.1)


def _stop_proc(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _cni_results_cleanup() -> int:
    """libcni's cache files of this node's pods: every one of its network, and the CRI plugin's
    loopback ones (``cni-loopback-*``, left even after a clean sandbox stop) whose DNS capability
    names this node's cluster DNS."""
    n = 0
    for result in Path("/var/lib/cni/results").glob("*"):
        ours = result.name.startswith(CNI_NETWORK + "-")
        if not ours and result.name.startswith("cni-loopback-"):
            try:
                servers = json.loads(result.read_text()).get("capabilityArgs", {}).get("dns", {}).get("Servers") or []
                ours = GATEWAY in servers
            except (OSError, ValueError, AttributeError):
                ours = False
        if ours:
            result.unlink(missing_ok=True)
            n += 1
    return n


def _host_cleanup(workdir: str | None, host_mounts: list[str], created_dirs: list[str] = ()) -> int:  # type: ignore[assignment]
    """Undo what a node did to the host; return how many things were removed."""
    n = 0
    for name in our_netns():
        _run(["ip", "netns", "delete", name], check=False)
        n += 1
    if workdir:
        n += unmount_under(workdir)
    for host_dir in host_mounts:
        if host_dir in _mounts():
            _umount(host_dir)
            n += 1
    if _run(["ip", "link", "show", BRIDGE], check=False).returncode == 0:
        # veths still on the bridge (their netns pinned elsewhere): deleting one end ends the pair
        for line in _run(["ip", "-o", "link", "show", "master", BRIDGE], check=False).stdout.splitlines():
            _run(["ip", "link", "del", line.split(":")[1].strip().split("@")[0]], check=False)
            n += 1
        _run(["ip", "link", "del", BRIDGE], check=False)
        n += 1
    n += iptables_cleanup()
    n += _cni_results_cleanup()
    # the containers' cgroups (parent: containerd's namespace k8s.io). runc removes them on a
    # clean delete; a killed session's stay. rmdir only succeeds on a cgroup without processes.
    for controller in Path("/sys/fs/cgroup").glob("*/k8s.io"):
        for sub in sorted((p for p in controller.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            try:
                sub.rmdir()
                n += 1
            except OSError:
                pass
        try:
            controller.rmdir()
        except OSError:
            pass
    for created in sorted(created_dirs, key=len, reverse=True):
        try:
            os.rmdir(created)  # only when empty
        except OSError:
            pass
    saved = STATE_DIR / "sysctl.json"
    if saved.is_file():
        try:
            _write_sysctls(json.loads(saved.read_text()))
        except ValueError:
            pass
    return n


def iptables_cleanup() -> int:
    """Remove the ``KUBE-*`` chains (kube-proxy's rules and its canaries) and the jumps to them,
    in IPv4 and IPv6, tables nat, filter and mangle; return how many chains went. Only one test
    node runs on a machine (the lock), and nothing else here runs kube-proxy or kubelet."""
    removed = 0
    for tool in ("iptables", "ip6tables"):
        if not shutil.which(tool):
            continue
        for table in ("nat", "filter", "mangle"):
            proc = _run([tool, "-w", "5", "-t", table, "-S"], check=False, timeout=30)
            if proc.returncode != 0:
                continue
            lines = proc.stdout.splitlines()
            chains = [line.split()[1] for line in lines if line.startswith("-N KUBE-")]
            if not chains:
                continue
            for line in lines:  # jumps into KUBE-* from the built-in (or any other) chains
                parts = shlex.split(line)
                if parts[:1] == ["-A"] and not parts[1].startswith("KUBE-") and any(p.startswith("KUBE-") for p in parts[2:]):
                    _run([tool, "-w", "5", "-t", table, "-D", *parts[1:]], check=False, timeout=30)
            for chain in chains:
                _run([tool, "-w", "5", "-t", table, "-F", chain], check=False, timeout=30)
            for chain in chains:
                if _run([tool, "-w", "5", "-t", table, "-X", chain], check=False, timeout=30).returncode == 0:
                    removed += 1
    return removed


def clean_stale_state() -> int:
    """With the lock held: end a killed session's processes (the PIDs it recorded, when their
    command line still matches), its shims and containers, and undo its host changes."""
    state_file = STATE_DIR / "state.json"
    n = 0
    state: dict[str, Any] = {}
    if state_file.is_file():
        try:
            state = json.loads(state_file.read_text())
        except ValueError:
            state = {}
    for entry in state.get("procs", []):
        if _cmdline(entry["pid"]) == entry["argv"]:
            _kill(entry["pid"])
            n += 1
    # and any process whose command line names a node temp folder (its plane's too: etcd,
    # apiserver, controller-manager), in case the session died before recording it
    marker = os.path.join(tempfile.gettempdir(), WORKDIR_PREFIX)
    for pid in _pids():
        argv = _cmdline(pid)
        exe = os.path.basename(argv[0]) if argv else ""
        ours = exe in STARTED_EXECUTABLES or (exe.startswith("python") and any(a.endswith("/dns.py") for a in argv))
        if pid != os.getpid() and ours and any(marker in arg for arg in argv):
            _kill(pid)
            n += 1
    n += kill_shims("/" + WORKDIR_PREFIX)
    if n:
        time.sleep(0.5)
    n += _host_cleanup(state.get("workdir") or None, state.get("host_mounts", []), state.get("created_dirs", []))
    # with the lock held, every node temp folder (and its plane's) is a dead session's
    for old in Path(tempfile.gettempdir()).glob(WORKDIR_PREFIX + "*"):
        if old.is_dir():
            n += unmount_under(str(old))
            if not any(m.startswith(f"{old}/") for m in _mounts()):
                shutil.rmtree(old, ignore_errors=True)
                n += 1
    for name in ("state.json", "sysctl.json"):
        (STATE_DIR / name).unlink(missing_ok=True)
    return n


# -- the cluster tests use ----------------------------------------------------------------------


class RealCluster:
    """A control plane with one real node. Attributes: ``plane`` (ControlPlane: ``kubectl``,
    ``apply``, ``api_client``, ``env``, ``kubeconfig``, ``server``), ``node`` (RealNode:
    ``import_image``, ``netns_for_ip``, ``ctr``, ``logs``), ``timings`` (seconds)."""

    def __init__(self, bin_dir: Path | None = None, preload_test_image: bool = True) -> None:
        self.bin_dir = Path(bin_dir or cache_dir() / "bin")
        self.node = RealNode(self.bin_dir)
        self.plane: ControlPlane | None = None
        self.timings: dict[str, float] = {}
        self.preload_test_image = preload_test_image

    def start(self, timeout: float = 120.0) -> "RealCluster":
        t0 = time.monotonic()
        self.node.prepare_host()
        try:
            t1 = time.monotonic()
            self.plane = ControlPlane(
                self.bin_dir,
                bind_address=GATEWAY, service_cidr=SERVICE_CIDR, authorization_mode="Node,RBAC",
                service_account_admission=True, endpoint_reconciler="lease",
                extra_users=[(f"system:node:{NODE_NAME}", "garfield-node", "system:nodes"),
                             ("system:kube-scheduler", "garfield-kube-scheduler", ""),
                             ("system:kube-proxy", "garfield-kube-proxy", "")],
                extra_apiserver_args=["--enable-admission-plugins=NodeRestriction",
                                      "--kubelet-preferred-address-types=InternalIP"],
                # the node controller lifts the not-ready taint within a second of Ready
                extra_controller_manager_args=["--node-monitor-period=1s"],
                workdir_prefix=WORKDIR_PREFIX + "cp-",
            )
            self.plane.start(timeout=60)
            self.node.track_plane(self.plane)
            self.timings["control_plane_s"] = round(time.monotonic() - t1, 2)
            self.node.start(self.plane, timeout=timeout, preload=[test_image_archive()] if self.preload_test_image else None)
        except BaseException:
            self.stop()
            raise
        self.timings.update(self.node.timings)
        self.timings["total_start_s"] = round(time.monotonic() - t0, 2)
        return self

    def stop(self) -> None:
        """The node's processes, then the control plane's, then the host's state (lock released)."""
        try:
            self.node.stop_processes()
        finally:
            try:
                if self.plane is not None:
                    # one at a time, newest first: an apiserver whose etcd is already gone waits
                    # (about 10 s) to remove its lease endpoint
                    for proc in reversed(self.plane._procs):
                        _stop_proc(proc)
                    self.plane.stop()
            finally:
                self.plane = None
                self.node.release_host()

    def __enter__(self) -> "RealCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- delegation -----------------------------------------------------------------------------
    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        assert self.plane is not None
        return self.plane.kubectl(*args, **kw)

    def apply(self, manifest: dict[str, Any] | str, namespace: str | None = None,
              check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.plane is not None
        return self.plane.apply(manifest, namespace, check)

    def api_client(self) -> Any:
        assert self.plane is not None
        return self.plane.api_client()

    @property
    def env(self) -> dict[str, str]:
        assert self.plane is not None
        return self.plane.env

    @property
    def kubeconfig(self) -> str:
        assert self.plane is not None
        return self.plane.kubeconfig

    def import_image(self, archive: str | Path) -> str:
        return self.node.import_image(archive)

    # -- helpers --------------------------------------------------------------------------------
    def test_image(self) -> str:
        """The minimal Debian + python3 image, imported on first use; returns its reference."""
        self.node.import_image(test_image_archive())  # once per node: a no-op when preloaded
        return TEST_IMAGE

    def create_namespace(self, name: str, timeout: float = 60) -> str:
        """Create ``name`` and wait for its ``default`` ServiceAccount's token Secret: before it,
        ServiceAccount admission rejects pods."""
        self.kubectl("create", "namespace", name, check=False)

        def token_ready() -> bool | None:
            proc = self.kubectl("-n", name, "get", "serviceaccount", "default", "-o", "json", check=False)
            return (proc.returncode == 0 and bool(json.loads(proc.stdout).get("secrets"))) or None

        wait_for(token_ready, timeout, f"ServiceAccount {name}/default has no token Secret")
        return name

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        proc = self.kubectl("-n", namespace, "get", "pod", name, "-o", "json", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def wait_pod(self, namespace: str, name: str, phases: tuple[str, ...] = ("Running",), timeout: float = 90) -> dict[str, Any]:
        """Until the pod's phase is one of ``phases``; a pod in another terminal phase fails fast."""
        def check() -> dict[str, Any] | None:
            pod = self.pod(namespace, name)
            phase = (pod or {}).get("status", {}).get("phase")
            if phase in phases:
                return pod
            if phase in ("Succeeded", "Failed"):
                raise AssertionError(f"pod {namespace}/{name} is {phase}, not {phases}:\n{self.describe(namespace, name)}")
            return None

        return wait_for(check, timeout, lambda: f"pod {namespace}/{name} not {phases}:\n{self.describe(namespace, name)}")

    def describe(self, namespace: str, name: str) -> str:
        out = self.kubectl("-n", namespace, "describe", "pod", name, check=False)
        logs = self.kubectl("-n", namespace, "logs", name, "--all-containers", "--tail=50", check=False)
        return f"{out.stdout}{out.stderr}\n--- logs:\n{logs.stdout}{logs.stderr}"


def wait_for(check: Callable[[], T | None], timeout: float, message: str | Callable[[], str], interval: float = 0.3) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(message() if callable(message) else message)
        time.sleep(interval)
