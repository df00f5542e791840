"""The headline path, for real: the project's image, `helm install`, and the examples trained as pods.

On the `real_cluster` (a control plane with one real node: kube-scheduler, kubelet, containerd,
runc, a CNI bridge, kube-proxy and a DNS stand-in; docs/test-node.md), with the image built from
the project's Dockerfile by scripts/build-image.sh and imported into the node's containerd:
* `helm install` of the chart: the operator runs as a pod under the chart's ServiceAccount (its
  mounted token), its liveness probe passing, and reads progress from the job pods' status
  endpoints over the pod network;
* `kubectl apply` of the SSMW, MSMW and decentralized examples (steps cut, replica counts not):
  kube-scheduler binds the pods, kubelet starts them, they find each other through the headless
  service names and train to `Succeeded` with the accuracy bars of `garfield run` (tests/e2e);
* faults on real pods: a worker and a server deleted mid-run (within f) are recreated, the server
  resumes from its checkpoint on the job's PersistentVolumeClaim, and the job succeeds with its
  final models on that volume; f+1 workers deleted fail it with its reason and a Warning event; the GPU example stays
  unschedulable, reported as a condition and a Warning event;
* each job trains behind its own NetworkPolicy (made and accepted; the CNI bridge does not enforce
  it); `kubectl delete btj` collects pods, service and policy; `helm uninstall` leaves nothing of the operator;
* a user's own task in an image built FROM the project's image (docs/user-guide.md) trains.

Tests run in order and share one release (module-scoped fixtures).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from garfield.observability.checkpoints import CheckpointStore
from garfield.spec import schema

from support.node import RealCluster

pytestmark = [pytest.mark.cluster, pytest.mark.node]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "garfield"
RELEASE = "garfield"
RELEASE_NAMESPACE = "garfield-system"
WATCHED = "ml-team"
T = TypeVar("T")

# Accuracy bars of the same examples under `garfield run` (tests/e2e/test_training.py).
# tests/tensorflow/test_tf_training.py for the Keras one).
BARS = {"mnist-ssmw": (200, 0.85), "mnist-msmw": (300, 0.90), "mnist-decentralized": (200, 0.85),
        "mnist-msmw-keras": (150, 0.90)}


def wait_for(check: Callable[[], T | None], timeout: float, what: str | Callable[[], str]) -> T:
    """Poll `check` until it returns a value; fail with `what` (or its result) after `timeout`.
    Once a second: the 2 cores also run the pods, and each kubectl costs a process start."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(what() if callable(what) else what)
        time.sleep(1.0)


def build_image(command: str) -> str:
    return subprocess.run(["bash", str(REPO / "scripts" / "build-image.sh"), command], capture_output=True,
                          text=True, check=True).stdout.strip()


def image_archive() -> Path:
    out = build_image("archive-path")
    path = Path(out)
    if not path.is_file():
        pytest.fail(f"no image archive for this tree at {path}: run scripts/build-image.sh build "
                    "(scripts/test-setup.sh does)", pytrace=False)
    return path


class Cluster:
    """kubectl on the real cluster, with the few reads these tests repeat."""

    def __init__(self, real: RealCluster) -> None:
        from kubernetes import client

        self.real = real
        # The reads repeated while a job trains go through one in-process client (kubectl is a
        # process start each time); what a user sees (`kubectl get btj`) stays kubectl.
        self.api = real.api_client()
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)

    def kubectl(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 120) -> str:
        return self.real.kubectl(*args, check=check, input=input, timeout=timeout).stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def job(self, name: str) -> dict[str, Any]:
        job: dict[str, Any] = self.custom.get_namespaced_custom_object(
            schema.GROUP, schema.VERSION, WATCHED, schema.PLURAL, name)
        return job

    def pods(self, job: str) -> list[dict[str, Any]]:
        pods = self.core.list_namespaced_pod(WATCHED, label_selector=f"garfield.dev/job-name={job}")
        items: list[dict[str, Any]] = self.api.sanitize_for_serialization(pods)["items"]
        return items

    def events(self, job: str) -> list[dict[str, Any]]:
        items = self.json("-n", WATCHED, "get", "events", "--field-selector", f"involvedObject.name={job}")["items"]
        return items

    def debug(self, job: str) -> str:
        parts = [self.kubectl("-n", WATCHED, "get", "btj,pods,svc", "-o", "wide", check=False),
                 self.kubectl("-n", WATCHED, "describe", "btj", job, check=False),
                 self.kubectl("-n", RELEASE_NAMESPACE, "logs", "deploy/garfield", "--tail=40", check=False)]
        return "\n".join(parts)


def variant(example: str, name: str, spec_patch: dict[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    manifest = yaml.safe_load((REPO / "examples" / f"{example}.yaml").read_text())
    manifest["metadata"] = {"name": name, "namespace": WATCHED}
    for key in drop:
        manifest["spec"].pop(key, None)
    for key, value in spec_patch.items():
        if isinstance(value, dict):
            manifest["spec"].setdefault(key, {}).update(value)
        else:
            manifest["spec"][key] = value
    return manifest


def apply(cluster: Cluster, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(manifest))


def watch_until_terminal(cluster: Cluster, name: str, timeout: float,
                         on_progress: Callable[[dict[str, Any]], None] | None = None,
                         ) -> tuple[dict[str, Any], list[tuple[Any, Any]]]:
    """Poll `kubectl get btj` until the job is Succeeded or Failed; return it and the (step, accuracy)
    pairs the table showed on the way."""
    seen: list[tuple[Any, Any]] = []

    def check() -> dict[str, Any] | None:
        row = cluster.kubectl("-n", WATCHED, "get", "btj", name, "--no-headers").split()
        # NAME PHASE STEP ACCURACY SERVERS WORKERS AGE (printer columns; empty ones are "<none>")
        if len(row) >= 4 and (row[2], row[3]) not in seen[-1:]:
            seen.append((row[2], row[3]))
        job = cluster.job(name)
        if on_progress is not None:
            on_progress(job)
        return job if (job.get("status") or {}).get("phase") in ("Succeeded", "Failed") else None

    job = wait_for(check, timeout, lambda: f"{name} did not finish:\n{cluster.debug(name)}")
    return job, seen


# -- fixtures -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(real_cluster: RealCluster) -> Cluster:
    return Cluster(real_cluster)


@pytest.fixture(scope="module")
def image(real_cluster: RealCluster) -> str:
    started = time.monotonic()
    real_cluster.import_image(image_archive())
    real_cluster.timings["garfield_image_import_s"] = round(time.monotonic() - started, 2)
    ref = build_image("image")
    assert ref in real_cluster.node.images(), real_cluster.node.images()
    return ref


@pytest.fixture(scope="module")
def release(real_cluster: RealCluster, cluster: Cluster, image: str) -> Iterator[str]:
    """`helm install` of the chart with the built image; yields the operator pod's name."""
    real_cluster.create_namespace(RELEASE_NAMESPACE)
    real_cluster.create_namespace(WATCHED)
    repository, tag = image.rsplit(":", 1)
    assert real_cluster.plane is not None
    started = time.monotonic()
    real_cluster.plane.helm("install", RELEASE, str(CHART), "-n", RELEASE_NAMESPACE,
                            "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
                            "--set", "image.pullPolicy=Never", "--set", f"watch.namespaces={{{WATCHED}}}",
                            timeout=300)

    def operator_ready() -> str | None:
        pods = cluster.json("-n", RELEASE_NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/name=garfield")["items"]
        for pod in pods:
            conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
            if conditions.get("Ready") == "True":
                return pod["metadata"]["name"]
        return None

    name = wait_for(operator_ready, 240, lambda: cluster.kubectl("-n", RELEASE_NAMESPACE, "describe", "pods", check=False))
    real_cluster.timings["operator_ready_s"] = round(time.monotonic() - started, 2)
    yield name
    real_cluster.plane.helm("uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--wait", timeout=300, check=False)


# -- the operator as a pod ---------------------------------------------------------------------------


def test_operator_pod_runs_under_the_charts_service_account(cluster: Cluster, release: str) -> None:
    pod = cluster.json("-n", RELEASE_NAMESPACE, "get", "pod", release)
    assert pod["spec"]["serviceAccountName"] == RELEASE
    assert pod["spec"]["nodeName"]  # bound by kube-scheduler
    container = pod["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"]["path"]
    mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
    assert "/var/run/secrets/kubernetes.io/serviceaccount" in mounts
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] and status["restartCount"] == 0, status
    # The operator's own log: JSON lines, no permission error.
    log = cluster.kubectl("-n", RELEASE_NAMESPACE, "logs", release)
    assert "forbidden" not in log.lower(), log[-3000:]


# -- the examples as pods -----------------------------------------------------------------------------


@pytest.mark.parametrize("example", list(BARS))
def test_example_trains_as_pods(cluster: Cluster, real_cluster: RealCluster, release: str, example: str) -> None:
    steps, bar = BARS[example]
    name = f"real-{example.removeprefix('mnist-')}"  # real-msmw-keras: TensorFlow, from the same image
    manifest = variant(example, name, {"training": {"steps": steps}})
    started = time.monotonic()
    first_step: list[float] = []
    bound: dict[str, str] = {}  # pod name -> the node kube-scheduler bound it to, while it trained

    def progress(job: dict[str, Any]) -> None:
        step = ((job.get("status") or {}).get("progress") or {}).get("step")
        if not first_step and isinstance(step, int) and step > 0:
            first_step.append(time.monotonic() - started)
        if (job.get("status") or {}).get("phase") == "Running":
            for pod in cluster.pods(name):
                if pod["status"].get("phase") == "Running":
                    bound[pod["metadata"]["name"]] = pod["spec"].get("nodeName", "")

    apply(cluster, manifest)
    job, seen = watch_until_terminal(cluster, name, 900, progress)
    real_cluster.timings[f"{name}_first_step_s"] = round(first_step[0], 1) if first_step else -1
    real_cluster.timings[f"{name}_succeeded_s"] = round(time.monotonic() - started, 1)
    status = job["status"]
    assert status["phase"] == "Succeeded", cluster.debug(name)
    # The final result, from the servers' termination messages once their status endpoints are gone.
    assert status["progress"]["step"] == steps, status["progress"]
    accuracy = status["progress"].get("accuracy")
    real_cluster.timings[f"{name}_accuracy"] = accuracy
    assert isinstance(accuracy, (int, float)) and accuracy >= bar, status["progress"]
    # `kubectl get btj` showed training move: several distinct steps with an accuracy.
    steps_seen = {s for s, _ in seen if s not in ("<none>",)}
    assert len(steps_seen) >= 2 and any(a not in ("<none>",) for _, a in seen), seen
    # Every replica ran as a pod (replica counts as in the example), bound by kube-scheduler and
    # started by kubelet. Counted while training: on success the run policy deletes the workers.
    expected = sum(r["replicas"] for k, r in manifest["spec"].items() if k in ("servers", "workers"))
    assert len(bound) == expected and all(bound.values()), bound
    primary = "peer" if example == "mnist-decentralized" else "server"
    lines = cluster.kubectl("-n", WATCHED, "logs", f"{name}-{primary}-0").splitlines()
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    assert entries and all("msg" in e and "level" in e for e in entries), lines[-5:]
    assert any(e.get("msg") == "done" for e in entries), lines[-5:]
    # Mutual TLS (spec.security.mutualTLS, on by default): the primary served authenticated peers
    # only, from the key in its own Secret (the node refuses to start on one that is not its own).
    assert any(e.get("msg") == "listening" and e.get("tls") == "mutual" for e in entries), lines[:10]
    secret = cluster.json("-n", WATCHED, "get", "secret", f"{name}-{primary}-0-tls")
    assert secret["type"] == "kubernetes.io/tls" and secret["metadata"]["ownerReferences"][0]["kind"] == "ByzantineTrainingJob"
    # It trained behind its own NetworkPolicy (the chart's networkPolicy.perJob), accepted by the
    # apiserver: gRPC only from this job's pods, status only from the operator's pods. The test
    # node's CNI bridge does not enforce policies, so this shows the policy made and accepted,
    # not traffic refused.
    policy = cluster.json("-n", WATCHED, "get", "networkpolicy", name)
    job_pods = {"matchLabels": {"garfield.dev/job-name": name}}
    assert policy["spec"]["podSelector"] == job_pods, policy["spec"]
    grpc_rule, status_rule = policy["spec"]["ingress"]
    assert grpc_rule == {"from": [{"podSelector": job_pods}], "ports": [{"protocol": "TCP", "port": 50051}]}
    assert status_rule["ports"] == [{"protocol": "TCP", "port": 9090}]
    assert status_rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == RELEASE
    cluster.kubectl("-n", WATCHED, "delete", "btj", name, "--wait=true", timeout=180)


# -- faults on real pods ------------------------------------------------------------------------------


def _wait_step(cluster: Cluster, name: str, step: int, timeout: float = 600) -> None:
    def reached() -> bool | None:
        progress = ((cluster.job(name).get("status") or {}).get("progress") or {})
        return True if isinstance(progress.get("step"), int) and progress["step"] >= step else None

    wait_for(reached, timeout, lambda: f"{name} never reached step {step}:\n{cluster.debug(name)}")


@pytest.fixture
def output_claim(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A PersistentVolumeClaim bound to a PersistentVolume on a folder of the node (the PV controller
    binds them; the pods mount the claim, not a hostPath: no weakening), the users' way of giving a
    job storage that outlives its pods (docs/user-guide.md, section 7). Yields the claim's name and
    the folder, so that a test reads what the pods wrote there."""
    folder = tmp_path_factory.mktemp("pv-output")
    folder.chmod(0o777)  # the image's user (uid 10001) writes there; a hostPath PV gets no fsGroup
    claim = "real-output"
    documents = [
        {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "real-output"},
         "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "",
                  "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(folder), "type": "Directory"},
                  "claimRef": {"namespace": WATCHED, "name": claim}}},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": WATCHED},
         "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "", "volumeName": "real-output",
                  "resources": {"requests": {"storage": "1Gi"}}}},
    ]
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(yaml.safe_dump(d) for d in documents))
    wait_for(lambda: True if cluster.json("-n", WATCHED, "get", "pvc", claim)["status"].get("phase") == "Bound" else None,
             120, lambda: cluster.kubectl("-n", WATCHED, "describe", "pvc", claim, check=False))
    yield claim, folder
    # Not waited on: a claim still mounted by a pod (a test that failed before deleting its job)
    # keeps its protection finalizer until that pod is gone.
    cluster.kubectl("-n", WATCHED, "delete", "pvc", claim, "--wait=false", check=False)
    cluster.kubectl("delete", "pv", "real-output", "--wait=false", check=False)


def _checkpointed_step(folder: Path) -> int | None:
    """The newest step whose checkpoint manifest (written last, after its state) is in `folder`."""
    steps = CheckpointStore(folder, keep=1).steps()  # newest first
    return steps[0] if steps else None


def test_pods_deleted_within_f_are_recreated_and_the_job_succeeds(cluster: Cluster, release: str,
                                                                 output_claim: tuple[str, Path]) -> None:
    """A worker and a server pod deleted mid-run are recreated; the server resumes from its own
    checkpoint on the job's volume (a PVC) rather than from step 0, and the job succeeds with its
    final models written there."""
    # The main example without its simulated attackers, so that f (1 server, 2 workers) is free
    # for real faults: attackers count against f too (garfield.lifecycle).
    claim, folder = output_claim
    name = "real-faults"
    manifest = variant("mnist-msmw", name, {"training": {"steps": 200}, "output": {"path": "/output"},
                                            "checkpoint": {"everySteps": 20, "keep": 2}}, drop=("attack",))
    manifest["spec"]["servers"]["template"] = {
        "volumes": [{"name": "output", "persistentVolumeClaim": {"claimName": claim}}],
        "volumeMounts": [{"name": "output", "mountPath": "/output"}]}
    apply(cluster, manifest)
    try:
        _check_resume_on_the_claim(cluster, name, manifest, folder)
    finally:
        cluster.kubectl("-n", WATCHED, "delete", "btj", name, "--ignore-not-found", "--wait=true", timeout=180)


def _check_resume_on_the_claim(cluster: Cluster, name: str, manifest: dict[str, Any], folder: Path) -> None:
    checkpoints = folder / "server-1" / "checkpoints"
    _wait_step(cluster, name, 40)
    saved = wait_for(lambda: _checkpointed_step(checkpoints), 300,
                     lambda: f"server-1 wrote no checkpoint in {checkpoints}:\n{cluster.debug(name)}")
    before = {p["metadata"]["name"]: p["metadata"]["uid"] for p in cluster.pods(name)}
    cluster.kubectl("-n", WATCHED, "delete", "pod", f"{name}-worker-1", f"{name}-server-1", "--wait=false")
    job, _ = watch_until_terminal(cluster, name, 900)
    assert job["status"]["phase"] == "Succeeded", cluster.debug(name)
    after = {p["metadata"]["name"]: p["metadata"]["uid"] for p in cluster.pods(name)}
    for replaced in (f"{name}-worker-1", f"{name}-server-1"):
        assert replaced in after and after[replaced] != before[replaced]  # recreated under its name
    assert job["status"]["progress"].get("accuracy", 0) >= 0.85, job["status"]["progress"]
    # Every correct server's final model is on the volume (and in the job's status); the recreated
    # server's says its training resumed from its checkpoint there, at a step >= the one seen
    # before its pod was deleted, and went on to the end. (Read from the volume, not the pod's log:
    # `kubectl logs` of the recreated pod once failed here, "unable to retrieve container logs",
    # its exited container already removed from containerd.)
    for index in range(manifest["spec"]["servers"]["replicas"]):
        model = json.loads((folder / f"server-{index}" / "model.json").read_text())
        assert model["step"] == 200 and (folder / f"server-{index}" / "model.pt").stat().st_size > 0, model
        if index == 1:
            assert isinstance(model["resumed_from"], int) and model["resumed_from"] >= saved, (saved, model)
        else:
            assert model["resumed_from"] is None, model
    # The status names the models of the servers that had finished when the job succeeded: at
    # least a quorum (n - f), each at its path on the claim.
    servers = manifest["spec"]["servers"]
    listed = {m["replica"]: m["path"] for m in job["status"].get("models", [])}
    assert len(listed) >= servers["replicas"] - servers["byzantine"], job["status"].get("models")
    assert all(path == f"/output/{replica.removeprefix(name + '-')}/model.pt" for replica, path in listed.items()), listed


def test_f_plus_one_workers_deleted_fail_the_job_with_reason_and_event(cluster: Cluster, release: str) -> None:
    name = "real-too-many"
    apply(cluster, variant("mnist-msmw", name, {"training": {"steps": 2000}}, drop=("attack",)))
    _wait_step(cluster, name, 10)
    cluster.kubectl("-n", WATCHED, "delete", "pod", *(f"{name}-worker-{i}" for i in range(3)), "--wait=false")
    job, _ = watch_until_terminal(cluster, name, 300)
    failed = next(c for c in job["status"]["conditions"] if c["type"] == "Failed")
    assert job["status"]["phase"] == "Failed" and failed["reason"] == "TooManyFailures", failed
    assert "more than the f=2" in failed["message"], failed
    warnings = [e for e in cluster.events(name) if e["type"] == "Warning" and e["reason"] == "TooManyFailures"]
    assert warnings, cluster.events(name)
    cluster.kubectl("-n", WATCHED, "delete", "btj", name, "--wait=true", timeout=180)


def test_gpu_example_is_reported_unschedulable(cluster: Cluster, release: str) -> None:
    manifest = yaml.safe_load((REPO / "examples" / "mnist-msmw-gpu.yaml").read_text())
    name = "real-gpu"
    manifest["metadata"] = {"name": name, "namespace": WATCHED}
    apply(cluster, manifest)

    def degraded() -> dict[str, Any] | None:
        conditions = (cluster.job(name).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Degraded" and c["status"] == "True"), None)

    cond = wait_for(degraded, 180, lambda: cluster.debug(name))
    assert cond["reason"] == "Unschedulable", cond
    assert cluster.job(name)["status"]["phase"] != "Running"
    assert any(e["type"] == "Warning" and e["reason"] == "Unschedulable" for e in cluster.events(name))
    assert all(p["status"]["phase"] == "Pending" for p in cluster.pods(name))


def test_deleting_the_job_collects_its_pods_and_service(cluster: Cluster, release: str) -> None:
    name = "real-gpu"  # left by the previous test, its pods Pending
    assert cluster.pods(name)
    cluster.kubectl("-n", WATCHED, "delete", "btj", name, "--wait=true", timeout=180)

    def gone() -> bool | None:
        left = cluster.kubectl("-n", WATCHED, "get", "pods,svc,networkpolicy", "-l", f"garfield.dev/job-name={name}",
                               "-o", "name")
        return True if not left.strip() else None

    wait_for(gone, 120, lambda: cluster.kubectl("-n", WATCHED, "get", "pods,svc,networkpolicy", check=False))


# -- a user's own task, in an image built FROM the project's ----------------------------------------

GUIDE = REPO / "docs" / "user-guide.md"


def _guide_blocks(lang: str) -> list[str]:
    import re

    return [body for kind, body in re.findall(r"^```(\w*)\n(.*?)^```", GUIDE.read_text(), re.M | re.S) if kind == lang]


def _host_ca_mounts() -> list[str]:
    """Build-time only: the host's CA bundle over the image's (pip's vendored certifi and the
    system store), for the guide's `pip install` where HTTPS to PyPI passes a TLS-inspecting proxy
    whose CA only the host trusts (as scripts/build-image.sh does for uv; docs/image.md). Nothing of
    it stays in the user's image."""
    bundle = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")
    if not bundle.is_file():
        return []
    targets = ("/opt/venv/lib/python3.11/site-packages/pip/_vendor/certifi/cacert.pem", "/etc/ssl/certs/ca-certificates.crt")
    return [arg for target in targets for arg in ("-v", f"{bundle.resolve()}:{target}:ro")]


def test_users_task_image_built_from_the_project_image_trains(cluster: Cluster, real_cluster: RealCluster,
                                                              release: str, image: str, tmp_path: Path) -> None:
    """docs/user-guide.md section 6, followed literally: its task package, its Dockerfile (FROM the
    project's image instead of the guide's registry name) and its `blobs` job (steps cut)."""
    import re

    context = tmp_path / "context"
    package = context / "my_task"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    for block in _guide_blocks("python"):
        first = block.splitlines()[0].strip()
        match = re.fullmatch(r"# my_task/(\w+\.py)", first)
        if match:
            (package / match.group(1)).write_text(block)
    assert (package / "torch_task.py").is_file()
    dockerfile = next(b for b in _guide_blocks("dockerfile") if "COPY my_task/" in b)
    guide_base = dockerfile.splitlines()[0].split()[1]
    (context / "Dockerfile").write_text(dockerfile.replace(guide_base, image, 1))
    user_image = "localhost/blobs:1.0"
    build = subprocess.run(["podman", "build", "--runtime", "runc", "--pull=never", "--network", "host",
                            "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", *_host_ca_mounts(),
                            "-t", user_image, str(context)],
                           capture_output=True, text=True, timeout=900)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    archive = tmp_path / "blobs.tar"
    subprocess.run(["podman", "save", "-o", str(archive), user_image], check=True, capture_output=True, timeout=900)
    real_cluster.import_image(archive)
    archive.unlink()

    blobs = next(yaml.safe_load(b) for b in _guide_blocks("yaml") if "name: blobs" in b)
    blobs["metadata"] = {"name": "blobs", "namespace": WATCHED}
    blobs["spec"]["image"] = user_image
    blobs["spec"]["training"]["steps"] = 150
    apply(cluster, blobs)
    job, _ = watch_until_terminal(cluster, "blobs", 900)
    assert job["status"]["phase"] == "Succeeded", cluster.debug("blobs")
    assert job["status"]["progress"].get("accuracy", 0) >= 0.9, job["status"]["progress"]
    assert all(p["spec"]["containers"][0]["image"] == user_image for p in cluster.pods("blobs"))
    cluster.kubectl("-n", WATCHED, "delete", "btj", "blobs", "--wait=true", timeout=180)


# -- uninstall (last: the release fixture's teardown would do it too) -----------------------------------


def test_helm_uninstall_leaves_nothing_of_the_operator(cluster: Cluster, real_cluster: RealCluster, release: str) -> None:
    assert real_cluster.plane is not None
    real_cluster.plane.helm("uninstall", RELEASE, "-n", RELEASE_NAMESPACE, "--wait", timeout=300)

    def nothing_left() -> bool | None:
        left = cluster.kubectl("get", "deploy,rs,pods,sa,role,rolebinding,clusterrole,clusterrolebinding,svc",
                               "-A", "-l", "app.kubernetes.io/instance=garfield", "-o", "name", check=False)
        return True if not left.strip() else None

    wait_for(nothing_left, 120, lambda: cluster.kubectl("get", "all", "-n", RELEASE_NAMESPACE, check=False))
