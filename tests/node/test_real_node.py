"""The real test node: scheduling, kubelet, pod network, DNS stand-in, kubernetes service, GPUs.

These pods use the minimal Debian + python3 image (no dependency on the project's image).
"""

from __future__ import annotations

import ipaddress
import json
import time
from typing import Any

import pytest

from support.node import GATEWAY, NODE_NAME, POD_CIDR, SERVICE_CIDR, RealCluster, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.node]

NS = "node-tests"


@pytest.fixture(scope="module")
def ns(real_cluster: RealCluster) -> str:
    return real_cluster.create_namespace(NS)


def pod(name: str, image: str, code: str, *, labels: dict[str, str] | None = None, restart: str = "Never",
        extra: dict[str, Any] | None = None, resources: dict[str, Any] | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image, "imagePullPolicy": "Never",
                                 "command": ["python3", "-u", "-c", code]}
    if resources:
        container["resources"] = resources
    spec: dict[str, Any] = {"restartPolicy": restart, "terminationGracePeriodSeconds": 1, "containers": [container]}
    spec.update(extra or {})
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {"app": name}}, "spec": spec}


def last_json_line(cluster: RealCluster, ns: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("-n", ns, "logs", name).stdout
    return json.loads(out.strip().splitlines()[-1])


def in_pod_net(ip: str) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(POD_CIDR)


SLEEPER = (
    "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
    "print('hello from the real node', flush=True)\nwhile True: time.sleep(3600)\n"
)


def test_node_is_ready(real_cluster: RealCluster) -> None:
    node = json.loads(real_cluster.kubectl("get", "node", NODE_NAME, "-o", "json").stdout)
    conds = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conds["Ready"] == "True"
    assert {"type": "InternalIP", "address": GATEWAY} in node["status"]["addresses"]
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert node["status"]["nodeInfo"]["kubeletVersion"] == "v1.20.2"
    assert "nvidia.com/gpu" not in node["status"]["allocatable"]
    # the node cluster's service range, not the operator tests' 10.96.0.0/16
    svc = json.loads(real_cluster.kubectl("get", "service", "kubernetes", "-o", "json").stdout)
    assert ipaddress.ip_address(svc["spec"]["clusterIP"]) in ipaddress.ip_network(SERVICE_CIDR)


def test_deployment_scheduled_started_and_logged(real_cluster: RealCluster, ns: str) -> None:
    image = real_cluster.test_image()
    template = pod("hello", image, SLEEPER, restart="Always")
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hello"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "hello"}},
                 "template": {"metadata": template["metadata"], "spec": template["spec"]}},
    }
    t0 = time.monotonic()
    real_cluster.apply(deployment, namespace=ns)

    def running() -> dict[str, Any] | None:
        items = json.loads(real_cluster.kubectl("-n", ns, "get", "pods", "-l", "app=hello", "-o", "json").stdout)["items"]
        return next((p for p in items if p["status"].get("phase") == "Running"), None)

    p = wait_for(running, 120, lambda: real_cluster.kubectl("-n", ns, "describe", "pods", "-l", "app=hello", check=False).stdout)
    real_cluster.timings.setdefault("first_pod_running_s", round(time.monotonic() - t0, 2))
    assert p["spec"]["nodeName"] == NODE_NAME
    conds = {c["type"]: c["status"] for c in p["status"]["conditions"]}
    assert conds["PodScheduled"] == "True" and conds["Ready"] == "True"
    assert in_pod_net(p["status"]["podIP"]), p["status"]["podIP"]
    events = real_cluster.kubectl("-n", ns, "get", "events", "--field-selector", f"involvedObject.name={p['metadata']['name']}",
                                  "-o", "json").stdout
    # the scheduler reports through events.k8s.io/v1: its name is the reportingComponent
    sources = {(e["reason"], e["source"].get("component") or e.get("reportingComponent"))
               for e in json.loads(events)["items"]}
    assert ("Scheduled", "default-scheduler") in sources
    assert ("Started", "kubelet") in sources
    logs = wait_for(lambda: (out := real_cluster.kubectl("-n", ns, "logs", "deploy/hello", check=False).stdout) and
                    "hello from the real node" in out and out, 30, "no logs from deploy/hello")
    assert "hello from the real node" in logs


SERVER = """
import signal, socket, sys
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7000))
s.listen()
print("listening", flush=True)
while True:
    c, addr = s.accept()
    c.sendall(("hello from %s to %s\\n" % (socket.gethostname(), addr[0])).encode())
    c.close()
"""

CLIENT = """
import json, socket, sys, time
ns = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read()
fqdn = "server.peers.%s.svc.cluster.local" % ns
names = {"fqdn": (fqdn, socket.AF_UNSPEC), "search": ("server.peers", socket.AF_INET),
         "service": ("peers.%s.svc.cluster.local" % ns, socket.AF_INET)}
out = {"resolv.conf": open("/etc/resolv.conf").read()}
deadline = time.time() + 90
while True:
    try:
        for key, (name, family) in names.items():
            out[key] = sorted({ai[4][0] for ai in socket.getaddrinfo(name, 7000, family, socket.SOCK_STREAM)})
        break
    except socket.gaierror as exc:  # the server pod may not exist yet: retry, like gRPC does
        if time.time() > deadline:
            out["error"] = str(exc)
            print(json.dumps(out))
            sys.exit(1)
        time.sleep(0.5)
with socket.create_connection((fqdn, 7000), timeout=10) as c:
    out["greeting"] = c.makefile().readline().strip()
try:
    socket.getaddrinfo("nobody.peers.%s.svc.cluster.local" % ns, 7000, socket.AF_INET)
    out["unknown"] = "resolved"
except socket.gaierror as exc:
    out["unknown"] = exc.errno == socket.EAI_NONAME
print(json.dumps(out))
"""


def test_pod_resolves_headless_hostname_and_connects(real_cluster: RealCluster, ns: str) -> None:
    image = real_cluster.test_image()
    real_cluster.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "peers"},
                        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": {"app": "peer"},
                                 "ports": [{"name": "p", "port": 7000}]}}, namespace=ns)
    # the client first: replicas start in any order, the name appears when the server's does
    real_cluster.apply(pod("client", image, CLIENT), namespace=ns)
    real_cluster.apply(pod("server", image, SERVER, labels={"app": "peer"}, restart="Always",
                           extra={"hostname": "server", "subdomain": "peers"}), namespace=ns)
    server = real_cluster.wait_pod(ns, "server", ("Running",))
    server_ip = server["status"]["podIP"]
    assert in_pod_net(server_ip)
    client = real_cluster.wait_pod(ns, "client", ("Succeeded",), timeout=120)
    out = last_json_line(real_cluster, ns, "client")
    assert out["fqdn"] == [server_ip], out
    assert out["search"] == [server_ip], out
    assert out["service"] == [server_ip], out
    assert out["greeting"] == f"hello from server to {client['status']['podIP']}", out
    assert out["unknown"] is True, out
    assert f"nameserver {GATEWAY}" in out["resolv.conf"]
    assert f"search {ns}.svc.cluster.local svc.cluster.local cluster.local" in out["resolv.conf"]


API_CLIENT = """
import json, os, socket, ssl, sys, time, urllib.error, urllib.request
base = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(base + "/token").read()
ns = open(base + "/namespace").read()
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
ctx = ssl.create_default_context(cafile=base + "/ca.crt")  # verified: the apiserver's cert names the service IP

def get(url, auth=True):
    req = urllib.request.Request(url, headers={"Authorization": "Bearer " + token} if auth else {})
    deadline = time.time() + 30
    while True:
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as exc:
            return exc.code, None
        except (urllib.error.URLError, OSError):
            if time.time() > deadline:
                raise
            time.sleep(0.5)

out = {"host": host, "port": port}
path = "/api/v1/namespaces/%s/pods" % ns
status, body = get("https://%s:%s%s" % (host, port, path))
out["status"] = status
out["pods"] = sorted(p["metadata"]["name"] for p in body["items"]) if body else None
out["anonymous"] = get("https://%s:%s%s" % (host, port, path), auth=False)[0]
out["by_name"] = get("https://kubernetes.default.svc%s" % path)[0]
out["resolved"] = socket.gethostbyname("kubernetes.default")
print(json.dumps(out))
"""


def test_pod_reaches_apiserver_through_kubernetes_service(real_cluster: RealCluster, ns: str) -> None:
    image = real_cluster.test_image()
    real_cluster.kubectl("-n", ns, "create", "rolebinding", "default-view", "--clusterrole=view",
                         f"--serviceaccount={ns}:default", check=False)
    real_cluster.apply(pod("apiclient", image, API_CLIENT), namespace=ns)
    real_cluster.wait_pod(ns, "apiclient", ("Succeeded",), timeout=120)
    out = last_json_line(real_cluster, ns, "apiclient")
    svc_ip = json.loads(real_cluster.kubectl("get", "service", "kubernetes", "-o", "json").stdout)["spec"]["clusterIP"]
    assert out["host"] == svc_ip and out["port"] == "443", out
    assert out["status"] == 200 and "apiclient" in out["pods"], out
    assert out["anonymous"] == 403, out  # the token is what authorizes it
    assert out["by_name"] == 200 and out["resolved"] == svc_ip, out


def test_gpu_request_stays_unschedulable(real_cluster: RealCluster, ns: str) -> None:
    image = real_cluster.test_image()
    real_cluster.apply(pod("wants-gpu", image, SLEEPER, resources={"limits": {"nvidia.com/gpu": 1}}), namespace=ns)

    def unschedulable() -> dict[str, Any] | None:
        p = real_cluster.pod(ns, "wants-gpu") or {}
        for c in p.get("status", {}).get("conditions", []):
            if c["type"] == "PodScheduled" and c["status"] == "False" and c.get("reason") == "Unschedulable":
                return c
        return None

    cond = wait_for(unschedulable, 60, "no Unschedulable PodScheduled condition")
    assert "nvidia.com/gpu" in cond["message"], cond
    p = real_cluster.pod(ns, "wants-gpu")
    assert p is not None and p["status"]["phase"] == "Pending" and not p["spec"].get("nodeName")


def test_deleting_a_pod_removes_its_netns(real_cluster: RealCluster, ns: str) -> None:
    image = real_cluster.test_image()
    real_cluster.apply(pod("ephemeral", image, SLEEPER), namespace=ns)
    ip = real_cluster.wait_pod(ns, "ephemeral")["status"]["podIP"]
    netns = real_cluster.node.netns_for_ip(ip)
    assert netns is not None and netns.name.startswith("cni-"), netns
    # kubelet tears the sandbox down (CNI DEL, netns removed) seconds after the delete; the API
    # object goes later (kubelet 1.20's status manager confirms in batches every 10 s)
    real_cluster.kubectl("-n", ns, "delete", "pod", "ephemeral", "--wait=false")
    wait_for(lambda: real_cluster.node.netns_for_ip(ip) is None and not netns.exists(),
             60, f"netns {netns} of the deleted pod is still there")


TLS_CHECK = """
import grp, json, os, stat
folder = os.environ["GARFIELD_TLS_DIR"]
files = {}
for name in sorted(os.listdir(folder)):
    if name.startswith(".."):
        continue  # kubelet's atomic-writer bookkeeping (..data and its timestamped folder)
    st = os.stat(os.path.join(folder, name))
    with open(os.path.join(folder, name), "rb") as handle:
        head = handle.read(30).decode()
    files[name] = {"mode": oct(stat.S_IMODE(st.st_mode)), "uid": st.st_uid, "gid": st.st_gid, "head": head}
print(json.dumps({"uid": os.getuid(), "groups": sorted(os.getgroups()), "files": files}), flush=True)
"""


def test_replica_tls_secret_mount_is_readable_by_the_node_only(real_cluster: RealCluster, ns: str) -> None:
    """The operator's rendering of a replica's Secret and mount (mode 0440 under fsGroup), on a real
    kubelet: the node's user (10001, as in the project's image) reads its key; other users cannot."""
    import datetime as dt

    from garfield.security.certificates import issue, new_ca

    from garfield_operator import rendering
    from garfield_operator.reconcile import CaSecret, Observed, decide

    from support import manifests

    body = manifests.job("tlsmount", workers=4, worker_f=1, metadata={"namespace": ns, "uid": "uid-tlsmount"})
    d = decide(Observed(body, [], False, dt.datetime.now(dt.timezone.utc), ca_secret=CaSecret.MISSING), "unused")
    replica, manifest = d.issue_certificates[0], d.create_pods[0]
    ca = new_ca("tlsmount", ns)
    secret = rendering.render_tls_secret(body, replica, ca.certificate, issue(ca, replica.identity, replica.dns_names))
    for obj in (secret, manifest):
        del obj["metadata"]["ownerReferences"]  # no such job here: nothing to garbage-collect them with
    container = manifest["spec"]["containers"][0]
    container.update(image=real_cluster.test_image(), imagePullPolicy="Never", command=["python3", "-u", "-c", TLS_CHECK])
    container["securityContext"] |= {"runAsUser": 10001, "runAsGroup": 10001, "runAsNonRoot": True}
    del container["readinessProbe"]
    real_cluster.apply(secret, namespace=ns)
    real_cluster.apply(manifest, namespace=ns)
    name = manifest["metadata"]["name"]
    real_cluster.wait_pod(ns, name, ("Succeeded", "Failed"))
    seen = last_json_line(real_cluster, ns, name)
    assert seen["uid"] == 10001 and 10001 in seen["groups"], seen
    assert set(seen["files"]) == {"ca.crt", "tls.crt", "tls.key"}, seen
    for file in seen["files"].values():
        assert file["mode"] == "0o440" and file["gid"] == 10001, seen  # group-readable, nothing for others
    assert seen["files"]["tls.key"]["head"].startswith("-----BEGIN PRIVATE KEY-----"), seen
