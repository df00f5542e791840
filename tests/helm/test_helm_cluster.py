"""The chart against the real kube-apiserver v1.20: install, RBAC, the operator under it, upgrade, uninstall.

The RBAC proof: `garfield-operator` runs as a subprocess authenticated with a token of the chart's
own ServiceAccount (TokenRequest API), reconciles a job into pods and a service, patches its status,
posts events and recreates a failed pod; its log must show no permission error. Together with
test_helm_chart.test_rbac_is_least_privilege (nothing beyond the list) this pins the permissions to
exactly what the operator uses.

Tests in this module run in order and share one release (module-scoped fixture).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from helm_support import CHART, RELEASE_NAMESPACE, REPO
from support import manifests
from support.cluster import ControlPlane, free_port
from support.kubelet import FakeKubelet

pytestmark = pytest.mark.cluster

RELEASE = "garfield"  # fullname "garfield": the ServiceAccount, Role and Deployment names
WATCHED = "helm-team-a"
UNWATCHED = "helm-team-b"
SA = f"system:serviceaccount:{RELEASE_NAMESPACE}:{RELEASE}"
T = TypeVar("T")

# (verb, resource, extra kubectl args) the operator needs in a watched namespace.
NEEDED = [
    ("get", "byzantinetrainingjobs.garfield.dev", []),
    ("list", "byzantinetrainingjobs.garfield.dev", []),
    ("watch", "byzantinetrainingjobs.garfield.dev", []),
    ("delete", "byzantinetrainingjobs.garfield.dev", []),
    ("patch", "byzantinetrainingjobs.garfield.dev", ["--subresource=status"]),
    ("update", "byzantinetrainingjobs.garfield.dev", ["--subresource=finalizers"]),
    ("list", "pods", []), ("watch", "pods", []), ("create", "pods", []), ("delete", "pods", []),
    ("get", "services", []), ("list", "services", []), ("watch", "services", []), ("create", "services", []),
    ("create", "events", []),
    # mutual TLS: the jobs' CA Secrets and one Secret per replica, by name.
    ("get", "secrets", []), ("create", "secrets", []), ("update", "secrets", []),
    # networkPolicy.perJob (on by default): each job's own NetworkPolicy.
    ("get", "networkpolicies.networking.k8s.io", []), ("create", "networkpolicies.networking.k8s.io", []),
]
# (verb, resource, extra args) it must be denied: listing or watching secrets anywhere (it only
# reads the ones it names), deleting or patching them, anything it does not use, and everything
# outside its watched namespaces.
DENIED = [
    ("list", "secrets", []), ("watch", "secrets", []), ("delete", "secrets", []), ("patch", "secrets", []),
    ("list", "secrets", ["-n", RELEASE_NAMESPACE]), ("get", "secrets", ["-n", RELEASE_NAMESPACE]),
    ("get", "secrets", ["-n", UNWATCHED]), ("create", "secrets", ["-n", UNWATCHED]), ("get", "secrets", ["-A"]),
    ("list", "secrets", ["-A"]),
    ("get", "configmaps", []), ("create", "deployments.apps", []), ("create", "jobs.batch", []),
    ("create", "pods", ["--subresource=exec"]), ("get", "pods", ["--subresource=log"]),
    ("patch", "pods", []), ("update", "pods", []),
    ("create", "byzantinetrainingjobs.garfield.dev", []), ("update", "byzantinetrainingjobs.garfield.dev", []),
    ("patch", "byzantinetrainingjobs.garfield.dev", []),
    ("delete", "services", []), ("patch", "services", []),
    ("create", "serviceaccounts", ["--subresource=token"]), ("create", "roles.rbac.authorization.k8s.io", []),
    ("create", "rolebindings.rbac.authorization.k8s.io", []),
    ("delete", "networkpolicies.networking.k8s.io", []), ("patch", "networkpolicies.networking.k8s.io", []),
    ("list", "networkpolicies.networking.k8s.io", []),
    ("list", "pods", ["-n", UNWATCHED]), ("create", "pods", ["-n", UNWATCHED]),
    ("list", "byzantinetrainingjobs.garfield.dev", ["-n", UNWATCHED]), ("list", "pods", ["-A"]),
    ("list", "nodes", []), ("list", "namespaces", []), ("list", "customresourcedefinitions.apiextensions.k8s.io", []),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", []), ("impersonate", "serviceaccounts", []),
]

JOB = manifests.job("rbac-proof", servers=1, server_f=None, server_gar=None, workers=4, worker_f=1,
                    training={"steps": 10})


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0, interval: float = 0.25) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@dataclass
class Release:
    plane: ControlPlane
    install_output: str
    operators: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = self.plane.helm(*args, "--namespace", RELEASE_NAMESPACE, check=False)
        if check and proc.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def get(self, *args: str) -> dict[str, Any] | None:
        proc = self.plane.kubectl("get", *args, "-o", "json", check=False)
        return json.loads(proc.stdout) if proc.returncode == 0 else None

    def can_i(self, verb: str, resource: str, extra: list[str]) -> bool:
        args = ["auth", "can-i", verb, resource, f"--as={SA}"]
        args += extra if any(a in ("-n", "-A") for a in extra) else [*extra, "-n", WATCHED]
        proc = self.plane.kubectl(*args, check=False)
        answer = proc.stdout.strip()
        assert answer in ("yes", "no"), f"kubectl {' '.join(args)}: {proc.stdout} {proc.stderr}"
        return answer == "yes"

    def start_operator(self, log: Path, *extra: str, scope: str = f"--namespace={WATCHED}") -> subprocess.Popen[bytes]:
        """garfield-operator as the chart's ServiceAccount (a TokenRequest token, nothing else)."""
        kubeconfig = self.plane.service_account_kubeconfig(RELEASE_NAMESPACE, RELEASE)
        env = {k: v for k, v in self.plane.env.items() if not k.startswith("KUBERNETES_")}
        env["KUBECONFIG"] = kubeconfig
        argv = [sys.executable, "-c", "import sys; from garfield_operator.main import main; sys.exit(main())",
                scope, f"--liveness-port={free_port()}", "--metrics-port=0",
                "--runtime-image=garfield:test", "--log-format=plain", *extra]
        with open(log, "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        self.operators.append(proc)
        return proc

    def stop_operators(self) -> None:
        for proc in self.operators:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self.operators.clear()


@pytest.fixture(scope="module")
def release(control_plane: ControlPlane) -> Iterator[Release]:
    for ns in (WATCHED, UNWATCHED):
        control_plane.kubectl("create", "namespace", ns, check=False)
    out = control_plane.helm(
        "install", RELEASE, str(CHART), "--namespace", RELEASE_NAMESPACE, "--set", f"watch.namespaces={{{WATCHED}}}",
    ).stdout
    rel = Release(control_plane, out)
    try:
        yield rel
    finally:
        rel.stop_operators()
        control_plane.helm("uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE, check=False)
        for ns in (WATCHED, UNWATCHED, "team-a", "team-b"):
            control_plane.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_install_creates_crd_rbac_and_operator(release: Release) -> None:
    crd = release.get("crd", "byzantinetrainingjobs.garfield.dev")
    assert crd is not None
    installed = yaml.safe_load((REPO / "crds" / "byzantinetrainingjobs.yaml").read_text())
    assert crd["spec"]["versions"][0]["schema"] == installed["spec"]["versions"][0]["schema"]
    assert release.get("crd", "kopfpeerings.kopf.dev") is not None
    assert release.get("serviceaccount", RELEASE, "-n", RELEASE_NAMESPACE) is not None
    role = release.get("role", RELEASE, "-n", WATCHED)
    assert role is not None and release.get("rolebinding", RELEASE, "-n", WATCHED) is not None
    assert release.get("role", RELEASE, "-n", UNWATCHED) is None
    assert release.get("clusterrole", RELEASE) is None, "namespaced mode creates no cluster-wide permissions"
    deployment = release.get("deployment", RELEASE, "-n", RELEASE_NAMESPACE)
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == RELEASE
    # NOTES.txt: the next three commands.
    notes = release.install_output
    assert f"kubectl -n {RELEASE_NAMESPACE} rollout status deployment/{RELEASE}" in notes
    assert f"kubectl -n {WATCHED} apply -f examples/mnist-msmw.yaml" in notes
    assert f"kubectl -n {WATCHED} get btj -w" in notes and f"kubectl -n {WATCHED} describe btj mnist-msmw" in notes
    assert yaml.safe_load((REPO / "examples" / "mnist-msmw.yaml").read_text())["metadata"]["name"] == "mnist-msmw"


@pytest.mark.parametrize("values", ["ci-values", "all-namespaces-values"])
def test_every_template_branch_is_accepted_by_a_1_20_apiserver(release: Release, values: str) -> None:
    """Server-side dry run of the ci/ renders (NetworkPolicies, metrics Service, peering objects,
    ClusterRole ...): the API server validates every object as it would store it."""
    for ns in ("team-a", "team-b"):
        release.plane.kubectl("create", "namespace", ns, check=False)
    rendered = release.plane.helm("template", "ci", str(CHART), "--namespace", RELEASE_NAMESPACE,
                                  "--values", str(CHART / "ci" / f"{values}.yaml")).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] != "ServiceMonitor"]  # no prometheus-operator here
    assert len(docs) >= 8
    out = release.plane.kubectl("apply", "--dry-run=server", "-f", "-",
                                input="\n---\n".join(yaml.safe_dump(d) for d in docs)).stdout
    assert out.count("(server dry run)") == len(docs), out


def test_operator_account_can_do_what_it_needs(release: Release) -> None:
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda c: release.can_i(*c), NEEDED))
    missing = [f"{verb} {res} {' '.join(extra)}".strip()
               for (verb, res, extra), ok in zip(NEEDED, answers, strict=True) if not ok]
    assert not missing, f"{SA} lacks: {missing}"


def test_operator_account_cannot_list_secrets_or_touch_anything_else(release: Release) -> None:
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda c: release.can_i(*c), DENIED))
    allowed = [f"{verb} {res} {' '.join(extra)}".strip() for (verb, res, extra), ok in zip(DENIED, answers, strict=True) if ok]
    assert not allowed, f"{SA} may: {allowed}"


def _pods(release: Release, job: str, namespace: str = WATCHED) -> list[dict[str, Any]]:
    found = release.get("pods", "-n", namespace, "-l", f"garfield.dev/job-name={job}")
    return found["items"] if found else []


def _permission_errors(log: str) -> list[str]:
    """Log lines reporting an RBAC denial of the operator's account (the apiserver's wording:
    'User "system:serviceaccount:NS:NAME" cannot VERB resource ...')."""
    return [line for line in log.splitlines() if f'User \\"{SA}\\" cannot' in line or f'User "{SA}" cannot' in line]


def test_permission_error_filter_recognises_apiserver_denials() -> None:
    """The log check below is only as good as this filter: it must catch what kopf and the
    operator's client log on a 403 (seen with a too-narrow Role), and nothing else."""
    denied = (f"Request attempt #1/9 failed; will retry: GET https://127.0.0.1:1/api/v1/namespaces -> APIForbiddenError("
              f"'namespaces is forbidden: User \"{SA}\" cannot list resource \"namespaces\" in API group \"\" at the "
              f"cluster scope', {{'code': 403}}, status=403)")
    other = 'pods "x" is forbidden: unable to create new content in namespace t because it is being terminated'
    assert _permission_errors(f"start\n{denied}\n{other}\n") == [denied]


def test_operator_reconciles_a_job_under_the_chart_service_account(release: Release, tmp_path: Path) -> None:
    log = tmp_path / "operator.log"
    # The network-policy flags the chart's Deployment passes (networkPolicy.perJob, its default).
    deployment = release.get("deployment", RELEASE, "-n", RELEASE_NAMESPACE)
    assert deployment is not None
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    network = [a for a in args if a.split("=")[0] in ("--network-policy", "--operator-pod-labels", "--metrics-from")]
    assert len(network) == 3, args
    operator = release.start_operator(log, "--standalone", *network)
    release.plane.apply(JOB, namespace=WATCHED)
    name = JOB["metadata"]["name"]
    expected = {f"{name}-server-0", *(f"{name}-worker-{i}" for i in range(4))}
    pods = wait_for("the job's 5 pods",
                    lambda: (p := _pods(release, name)) and {x["metadata"]["name"] for x in p} == expected and p)
    job = release.get("btj", name, "-n", WATCHED)
    assert job is not None
    assert all(p["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"] for p in pods)
    assert release.get("service", name, "-n", WATCHED) is not None
    policy = wait_for("the job's NetworkPolicy", lambda: release.get("networkpolicy", name, "-n", WATCHED))
    assert policy["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    wait_for("a status patch", lambda: (j := release.get("btj", name, "-n", WATCHED)) and j.get("status", {}).get("phase"))
    wait_for("an event on the job", lambda: (e := release.get("events", "-n", WATCHED, "--field-selector",
                                                                f"involvedObject.name={name}")) and e["items"])

    # Mutual TLS (on by default): the job's CA Secret and each replica's own, created as this account.
    ca = release.get("secret", f"{name}-ca", "-n", WATCHED)
    assert ca is not None and ca["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    victim_secret = release.get("secret", f"{name}-worker-1-tls", "-n", WATCHED)
    assert victim_secret is not None and victim_secret["type"] == "kubernetes.io/tls"

    # A worker fails: the operator deletes the failed pod and creates a replacement (within f=1),
    # with a fresh key in its Secret (a replace: the update verb).
    kubelet = FakeKubelet(release.plane.api_client())
    victim = next(p for p in pods if p["metadata"]["name"] == f"{name}-worker-1")
    kubelet.exit(WATCHED, victim["metadata"]["name"], code=1)
    wait_for("the failed worker's replacement", lambda: any(
        p["metadata"]["name"] == victim["metadata"]["name"] and p["metadata"]["uid"] != victim["metadata"]["uid"]
        for p in _pods(release, name)))
    rotated = release.get("secret", f"{name}-worker-1-tls", "-n", WATCHED)
    assert rotated is not None and rotated["data"]["tls.key"] != victim_secret["data"]["tls.key"]

    assert operator.poll() is None, log.read_text()[-3000:]
    errors = _permission_errors(log.read_text())
    assert not errors, "the operator hit permission errors:\n" + "\n".join(errors[:20])
    release.stop_operators()


def test_upgrade_to_peering_then_cluster_wide_then_uninstall(release: Release, tmp_path: Path) -> None:
    release.helm("upgrade", RELEASE, str(CHART), "--reuse-values",
                 "--set", "peering.enabled=true", "--set", "metrics.service.enabled=true")
    history = json.loads(release.helm("history", RELEASE, "-o", "json").stdout)
    assert [h["revision"] for h in history] == [1, 2] and history[-1]["status"] == "deployed"
    assert release.get("service", f"{RELEASE}-metrics", "-n", RELEASE_NAMESPACE) is not None
    assert release.get("kopfpeering", RELEASE, "-n", WATCHED) is not None
    args = release.get("deployment", RELEASE, "-n", RELEASE_NAMESPACE)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--peering={RELEASE}" in args and "--standalone" not in args

    # The upgraded permissions suffice for a peering operator: it keeps its peering alive and reconciles.
    log = tmp_path / "operator-peering.log"
    operator = release.start_operator(log, f"--peering={RELEASE}")
    wait_for("the operator's keep-alive in the KopfPeering",
             lambda: (p := release.get("kopfpeering", RELEASE, "-n", WATCHED)) and p.get("status"))
    second = {**JOB, "metadata": {"name": "rbac-proof-peering"}}
    release.plane.apply(second, namespace=WATCHED)
    wait_for("the second job's pods", lambda: len(_pods(release, "rbac-proof-peering")) == 5)
    assert operator.poll() is None, log.read_text()[-3000:]
    errors = _permission_errors(log.read_text())
    assert not errors, "the peering operator hit permission errors:\n" + "\n".join(errors[:20])
    release.stop_operators()

    # Cluster-wide: a ClusterRole replaces the Roles, and the operator reconciles any namespace.
    release.helm("upgrade", RELEASE, str(CHART), "--reuse-values",
                 "--set", "watch.allNamespaces=true", "--set-json", "watch.namespaces=[]")
    assert release.get("clusterrole", RELEASE) is not None and release.get("role", RELEASE, "-n", WATCHED) is None
    assert release.get("clusterkopfpeering", RELEASE) is not None
    log = tmp_path / "operator-cluster.log"
    operator = release.start_operator(log, f"--peering={RELEASE}", scope="--all-namespaces")
    third = {**JOB, "metadata": {"name": "rbac-proof-cluster"}}
    release.plane.apply(third, namespace=UNWATCHED)
    wait_for("the cluster-wide job's pods", lambda: len(_pods(release, "rbac-proof-cluster", UNWATCHED)) == 5)
    assert operator.poll() is None, log.read_text()[-3000:]
    errors = _permission_errors(log.read_text())
    assert not errors, "the cluster-wide operator hit permission errors:\n" + "\n".join(errors[:20])
    release.stop_operators()

    release.helm("uninstall", RELEASE)
    assert release.get("deployment", RELEASE, "-n", RELEASE_NAMESPACE) is None
    assert release.get("role", RELEASE, "-n", WATCHED) is None
    assert release.get("serviceaccount", RELEASE, "-n", RELEASE_NAMESPACE) is None
    assert release.get("clusterrole", RELEASE) is None and release.get("clusterrolebinding", RELEASE) is None
    assert release.get("clusterkopfpeering", RELEASE) is None
    # helm never deletes CRDs from crds/ (that would delete every job): docs/user-guide.md says how.
    assert release.get("crd", "byzantinetrainingjobs.garfield.dev") is not None
