"""A real Kubernetes control plane for tests: etcd + kube-apiserver (+ kube-controller-manager).

Built by ``scripts/test-cluster.sh build`` into a cache outside the clone. There is no kubelet and
no scheduler: pods stay Pending until a test binds them and writes their status (see
:func:`tests.support.kubelet`). Everything listens on free 127.0.0.1 ports with its data in a
temp folder, and :meth:`ControlPlane.stop` kills exactly the processes it started.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
BUILD_HINT = "run scripts/test-cluster.sh build"


def cache_dir() -> Path:
    root = os.environ.get("GARFIELD_TEST_CLUSTER_CACHE")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "garfield-test-cluster"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ControlPlaneUnavailable(RuntimeError):
    """The binaries are missing or the control plane did not come up."""


class ControlPlane:
    """etcd + kube-apiserver (+ controller-manager for garbage collection and namespace deletion)."""

    def __init__(
        self,
        bin_dir: Path | None = None,
        controller_manager: bool = True,
        *,
        bind_address: str = "127.0.0.1",
        advertise_address: str | None = None,
        service_cidr: str = "10.96.0.0/16",
        authorization_mode: str = "RBAC",
        service_account_admission: bool = False,
        endpoint_reconciler: str = "none",
        extra_users: list[tuple[str, str, str]] | None = None,
        extra_apiserver_args: list[str] | None = None,
        extra_controller_manager_args: list[str] | None = None,
        workdir_prefix: str = "garfield-cp-",
    ) -> None:
        """The defaults are the session `control_plane`'s (no node: tests play kubelet).

        The keyword options serve a plane with a real node (tests/support/node.py): the apiserver
        bound and advertised on an address pods reach, its own service range, `Node,RBAC`
        authorization, ServiceAccount admission (the controller-manager's token controller fills
        the token Secrets), the lease endpoint reconciler (so the `kubernetes` service has
        endpoints), and ``extra_users``: (user, uid, groups comma-separated) rows added to the
        token file, each with a fresh token (see :attr:`user_tokens`).
        """
        self.bin_dir = Path(bin_dir or cache_dir() / "bin")
        self.controller_manager = controller_manager
        self.bind_address = bind_address
        self.advertise_address = advertise_address or bind_address
        self.service_cidr = service_cidr
        self.authorization_mode = authorization_mode
        self.service_account_admission = service_account_admission
        self.endpoint_reconciler = endpoint_reconciler
        self.extra_users = list(extra_users or [])
        self.extra_apiserver_args = list(extra_apiserver_args or [])
        self.extra_controller_manager_args = list(extra_controller_manager_args or [])
        self.user_tokens: dict[str, str] = {}
        self.api_port = 0
        self.workdir = Path(tempfile.mkdtemp(prefix=workdir_prefix))
        self.token = secrets.token_hex(16)
        self.server = ""
        self.kubeconfig = str(self.workdir / "kubeconfig")
        self._procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Any] = []
        self.env: dict[str, str] = {}

    # -- lifecycle -------------------------------------------------------------------------------
    def _binaries(self) -> dict[str, str]:
        found: dict[str, str] = {}
        missing = []
        for name in ("kube-apiserver", "kube-controller-manager", "kubectl", "helm"):
            path = self.bin_dir / name
            if path.is_file() and os.access(path, os.X_OK):
                found[name] = str(path)
            else:
                missing.append(str(path))
        etcd = shutil.which("etcd") or ("/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK) else None)
        if etcd:
            found["etcd"] = etcd
        else:
            missing.append("etcd (apt package etcd-server)")
        if missing:
            raise ControlPlaneUnavailable(f"test control plane binaries missing ({', '.join(missing)}): {BUILD_HINT}")
        return found

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.workdir / f"{name}.log", "wb")
        self._logs.append(log)
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir, start_new_session=True)
        self._procs.append(proc)
        return proc

    def start(self, timeout: float = 60.0) -> "ControlPlane":
        bins = self._binaries()
        d = self.workdir
        etcd_port, etcd_peer, api_port = free_port(), free_port(), free_port()
        self._spawn("etcd", [
            bins["etcd"], "--data-dir", str(d / "etcd"), "--name", "garfield-test",
            "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
            "--initial-cluster", f"garfield-test=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync", "--log-level", "warn",
        ])
        rows = [f"{self.token},admin,admin,system:masters\n"]
        for user, uid, groups in self.extra_users:
            self.user_tokens[user] = secrets.token_hex(16)
            token = self.user_tokens[user]
            rows.append(f'{token},{user},{uid},"{groups}"\n' if groups else f"{token},{user},{uid}\n")
        (d / "tokens.csv").write_text("".join(rows))
        subprocess.run(["openssl", "genrsa", "-out", str(d / "sa.key"), "2048"], check=True, capture_output=True)
        subprocess.run(["openssl", "rsa", "-in", str(d / "sa.key"), "-pubout", "-out", str(d / "sa.pub")],
                       check=True, capture_output=True)
        certs = d / "certs"
        certs.mkdir()
        self.api_port = api_port
        self._spawn("kube-apiserver", [
            bins["kube-apiserver"], f"--etcd-servers=http://127.0.0.1:{etcd_port}", f"--bind-address={self.bind_address}",
            f"--secure-port={api_port}", f"--advertise-address={self.advertise_address}", f"--cert-dir={certs}",
            f"--token-auth-file={d / 'tokens.csv'}", f"--authorization-mode={self.authorization_mode}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={d / 'sa.pub'}", f"--service-account-signing-key-file={d / 'sa.key'}",
            f"--service-cluster-ip-range={self.service_cidr}", f"--endpoint-reconciler-type={self.endpoint_reconciler}",
            *([] if self.service_account_admission else ["--disable-admission-plugins=ServiceAccount"]),
            "--allow-privileged=true", *self.extra_apiserver_args, "--v=0",
        ])
        host = self.bind_address if self.bind_address not in ("0.0.0.0", "::") else self.advertise_address
        self.server = f"https://{host}:{api_port}"
        self._write_kubeconfig(self.kubeconfig, self.token, "admin")
        self.env = self._make_env()
        try:
            self._wait_ready(timeout)
            if self.controller_manager:
                cm_certs = d / "cm-certs"
                cm_certs.mkdir()
                self._spawn("kube-controller-manager", [
                    bins["kube-controller-manager"], f"--kubeconfig={self.kubeconfig}",
                    f"--authentication-kubeconfig={self.kubeconfig}", f"--authorization-kubeconfig={self.kubeconfig}",
                    "--leader-elect=false", "--bind-address=127.0.0.1", "--port=0", f"--secure-port={free_port()}",
                    f"--cert-dir={cm_certs}", f"--service-account-private-key-file={d / 'sa.key'}",
                    f"--root-ca-file={certs / 'apiserver.crt'}", "--use-service-account-credentials=false",
                    "--controllers=*", *self.extra_controller_manager_args, "--v=0",
                ])
            self.kubectl("create", "namespace", "garfield-system", check=False)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        last = ""
        while time.monotonic() < deadline:
            for proc in self._procs:
                if proc.poll() is not None:
                    raise ControlPlaneUnavailable(f"{proc.args[0]} exited with {proc.returncode}; logs in {self.workdir}")
            try:
                req = urllib.request.Request(f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.token}"})
                with urllib.request.urlopen(req, context=ctx, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except Exception as exc:  # not up yet
                last = str(exc)
            time.sleep(0.2)
        raise ControlPlaneUnavailable(f"kube-apiserver not ready after {timeout}s ({last}); logs in {self.workdir}")

    def stop(self) -> None:
        """Kill every process this control plane started (by PID), newest first, then remove its data."""
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self._procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        self._procs.clear()
        for log in self._logs:
            log.close()
        self._logs.clear()
        if not os.environ.get("GARFIELD_KEEP_CONTROL_PLANE"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "ControlPlane":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- configuration ---------------------------------------------------------------------------
    def user_kubeconfig(self, user: str) -> str:
        """A kubeconfig for one of ``extra_users`` (written on first use)."""
        path = self.workdir / f"user-{user.replace(':', '-')}.kubeconfig"
        if not path.exists():
            self._write_kubeconfig(str(path), self.user_tokens[user], user)
        return str(path)

    def _write_kubeconfig(self, path: str, token: str, user: str, namespace: str | None = None) -> None:
        context: dict[str, Any] = {"cluster": "garfield-test", "user": user}
        if namespace:
            context["namespace"] = namespace
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "garfield-test", "cluster": {"server": self.server, "insecure-skip-tls-verify": True}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "garfield-test", "context": context}],
            "current-context": "garfield-test",
        }
        Path(path).write_text(yaml.safe_dump(config))
        os.chmod(path, 0o600)

    def _make_env(self) -> dict[str, str]:
        d = self.workdir
        for sub in ("kubecache", "helm/cache", "helm/config", "helm/data"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update({
            "KUBECONFIG": self.kubeconfig,
            "KUBECACHEDIR": str(d / "kubecache"),
            "HELM_CACHE_HOME": str(d / "helm/cache"),
            "HELM_CONFIG_HOME": str(d / "helm/config"),
            "HELM_DATA_HOME": str(d / "helm/data"),
            # The cache's kubectl/helm first, then this interpreter's scripts (garfield-operator) even
            # when pytest runs as `.venv/bin/python -m pytest` without an activated virtualenv.
            "PATH": os.pathsep.join([str(self.bin_dir), str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        })
        return env

    # -- tools -----------------------------------------------------------------------------------
    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the cached kubectl against this control plane (text in, text out)."""
        return self._run([str(self.bin_dir / "kubectl"), f"--cache-dir={self.env['KUBECACHEDIR']}", *args], input, check, timeout)

    def helm(self, *args: str, input: str | None = None, check: bool = True,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self._run([str(self.bin_dir / "helm"), *args], input, check, timeout)

    def _run(self, argv: list[str], input: str | None, check: bool, timeout: float) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(argv, input=input, capture_output=True, text=True, env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, argv, proc.stdout, proc.stderr)
        return proc

    def apply(self, manifest: dict[str, Any] | str, namespace: str | None = None,
              check: bool = True) -> subprocess.CompletedProcess[str]:
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        args = ["apply", "-f", "-"] + (["-n", namespace] if namespace else [])
        return self.kubectl(*args, input=text, check=check)

    def api_client(self) -> Any:
        """A kubernetes.client.ApiClient authenticated as cluster admin."""
        import urllib3
        from kubernetes import client

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # self-signed test apiserver
        cfg = client.Configuration()
        cfg.host = self.server
        cfg.verify_ssl = False
        cfg.api_key = {"authorization": f"Bearer {self.token}"}
        return client.ApiClient(cfg)

    def service_account_kubeconfig(self, namespace: str, name: str) -> str:
        """A kubeconfig authenticating as ServiceAccount `namespace/name` (created if missing).

        ServiceAccount admission is disabled here, so no token controller fills Secrets in: the token
        comes from the TokenRequest API (GA since 1.20), signed by the apiserver's service-account key.
        """
        self.kubectl("create", "namespace", namespace, check=False)
        self.kubectl("-n", namespace, "create", "serviceaccount", name, check=False)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 86400}}
        from kubernetes import client

        api = client.CoreV1Api(self.api_client())
        resp = api.create_namespaced_service_account_token(name, namespace, body)
        path = str(self.workdir / f"sa-{namespace}-{name}.kubeconfig")
        self._write_kubeconfig(path, resp.status.token, f"{namespace}-{name}", namespace)
        return path

    def logs(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""
