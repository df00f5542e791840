"""The operator against a real kube-apiserver: the test plays kubelet and checks what users see
(pods, service, status, conditions, events) on every path issue 4 lists."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from support.cluster import ControlPlane
from support.kubelet import FakeKubelet, wait_for
from support.operator_harness import Jobs, OperatorProcess, StatusServer, job_manifest

pytestmark = pytest.mark.cluster

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _owned_by(obj: object, job: dict) -> bool:
    refs = obj.metadata.owner_references or []
    return any(r.uid == job["metadata"]["uid"] and r.controller and r.kind == "ByzantineTrainingJob" for r in refs)


def _wait_pods(jobs: Jobs, ns: str, count: int, timeout: float = 20) -> dict:
    def ready() -> dict | None:
        pods = jobs.pods(ns)
        return pods if len(pods) == count else None

    return wait_for(ready, timeout=timeout, what=f"{count} pods in {ns} (jobs: {jobs.statuses(ns)})")


def _run_all(kubelet: FakeKubelet, ns: str, names: list[str], ip: str = "127.0.0.1") -> None:
    for name in names:
        kubelet.run(ns, name, ip=ip)


def test_example_renders_pods_and_headless_service(operator: OperatorProcess, jobs: Jobs, ns: str) -> None:
    body = yaml.safe_load((EXAMPLES / "mnist-msmw-gpu.yaml").read_text())
    job = jobs.create(ns, body)
    pods = _wait_pods(jobs, ns, 13)
    assert sorted(pods) == sorted([f"mnist-msmw-gpu-server-{i}" for i in range(4)] +
                                  [f"mnist-msmw-gpu-worker-{i}" for i in range(9)])
    svc = wait_for(lambda: jobs.core.read_namespaced_service("mnist-msmw-gpu", ns), what="service")
    assert svc.spec.cluster_ip == "None" and svc.spec.publish_not_ready_addresses
    assert svc.spec.selector == {"garfield.dev/job-name": "mnist-msmw-gpu"}
    assert _owned_by(svc, job)
    servers = ",".join(f"mnist-msmw-gpu-server-{i}.mnist-msmw-gpu.{ns}.svc:50051" for i in range(4))
    for name, pod in pods.items():
        assert _owned_by(pod, job), name
        role, index = name.split("-")[-2:]
        assert pod.metadata.labels["garfield.dev/job-name"] == "mnist-msmw-gpu"
        assert pod.metadata.labels["garfield.dev/role"] == role
        assert pod.metadata.labels["garfield.dev/index"] == index
        assert pod.spec.restart_policy == "Never"
        assert pod.spec.hostname == name and pod.spec.subdomain == "mnist-msmw-gpu"
        assert pod.spec.node_selector == {"nvidia.com/gpu.present": "true"}
        assert pod.spec.tolerations[0].key == "nvidia.com/gpu"
        c = pod.spec.containers[0]
        assert c.image == "registry.test/garfield:test"  # the operator's default (no spec.image)
        assert c.command == ["python", "-m", "garfield", "node"]
        assert {p.name: p.container_port for p in c.ports} == {"grpc": 50051, "metrics": 9090}
        assert c.resources.limits["nvidia.com/gpu"] == "1" and c.resources.requests["nvidia.com/gpu"] == "1"
        env = {e.name: e.value for e in c.env}
        assert env["GARFIELD_ROLE"] == role and env["GARFIELD_INDEX"] == index
        assert env["GARFIELD_SERVERS"] == servers
        assert env["GARFIELD_LISTEN"] == "0.0.0.0:50051"
        assert json.loads(env["GARFIELD_SPEC"])["workers"]["gar"]["name"] == "multi-krum"
    status = jobs.wait_phase(ns, "mnist-msmw-gpu", "Pending")
    assert status["replicaStatuses"]["workers"]["active"] == 9
    wait_for(lambda: jobs.events(ns, "PodsCreated"), what="PodsCreated event")
    # The job's own NetworkPolicy, as the apiserver stored it (the test node's CNI cannot enforce it).
    networking = client.NetworkingV1Api(jobs.core.api_client)
    policy = networking.read_namespaced_network_policy("mnist-msmw-gpu", ns)
    assert _owned_by(policy, job)
    assert policy.spec.pod_selector.match_labels == {"garfield.dev/job-name": "mnist-msmw-gpu"}
    assert policy.spec.policy_types == ["Ingress"]
    grpc, status_port = policy.spec.ingress
    assert [p.pod_selector.match_labels for p in grpc._from] == [{"garfield.dev/job-name": "mnist-msmw-gpu"}]
    assert [p.port for p in grpc.ports] == [50051] and [p.port for p in status_port.ports] == [9090]
    assert status_port._from[0].pod_selector.match_labels == {"app.kubernetes.io/component": "operator"}


def test_running_progress_and_success(operator: OperatorProcess, jobs: Jobs, kubelet: FakeKubelet, ns: str,
                                      status_server: StatusServer, control_plane: ControlPlane) -> None:
    body = job_manifest("train", servers=4, server_f=1, workers=5, worker_f=1,
                        run_policy={"cleanPodPolicy": "All"})
    body["spec"]["attack"] = {"servers": {"count": 1, "name": "random"}}
    jobs.create(ns, body)
    pods = _wait_pods(jobs, ns, 9)
    # Correct servers 0 and 1 serve /status on 127.0.0.2/3 (server 2 serves nothing); the Byzantine
    # server 3 lies on .4.
    ips = {"train-server-0": "127.0.0.2", "train-server-1": "127.0.0.3", "train-server-3": "127.0.0.4"}
    status_server.replies["127.0.0.2"] = {"step": 40, "total_steps": 100, "loss": 0.5, "accuracy": 0.81,
                                          "steps_per_second": 9.5, "rejected": {"nonfinite": 2}, "phase": "running"}
    status_server.replies["127.0.0.3"] = {"step": 42, "total_steps": 100, "loss": 0.4, "accuracy": 0.83,
                                          "steps_per_second": 9.7, "rejected": {}, "phase": "running"}
    status_server.replies["127.0.0.4"] = {"step": 99999, "accuracy": 1.0, "phase": "running"}
    for name in pods:
        kubelet.run(ns, name, ip=ips.get(name, "127.0.0.9"))
    jobs.wait_phase(ns, "train", "Running")  # as soon as a quorum runs; then every pod is counted ready
    wait_for(lambda: (r := jobs.status(ns, "train")["replicaStatuses"])["servers"]["ready"] == 4
             and r["workers"]["ready"] == 5, what="all pods counted ready")
    progress = wait_for(lambda: (p := jobs.status(ns, "train").get("progress", {})).get("step") and p,
                        what="progress from /status")
    assert progress["step"] in (40, 42) and progress["totalSteps"] == 100  # never the Byzantine 99999
    assert 0.8 < progress["accuracy"] < 0.84 and progress["stepsPerSecond"] > 9
    columns = control_plane.kubectl("get", "btj", "train", "-n", ns).stdout.splitlines()[1].split()
    assert columns[1] == "Running" and columns[2] in ("40", "42") and columns[4:6] == ["4", "5"]
    # Three of four servers finish (the quorum n - f): the job succeeds; cleanPodPolicy All deletes pods.
    kubelet.exit(ns, "train-server-0", 0)
    kubelet.exit(ns, "train-server-1", 0)
    assert jobs.status(ns, "train")["phase"] == "Running"
    kubelet.exit(ns, "train-server-2", 0)
    status = jobs.wait_phase(ns, "train", "Succeeded")
    assert status["completionTime"] and status["startTime"]
    assert jobs.condition(ns, "train", "Succeeded")["reason"] == "JobSucceeded"
    kubelet.finish_deletions(ns)
    wait_for(lambda: not jobs.pods(ns) or kubelet.finish_deletions(ns) < 0, what="pods cleaned up")


def test_one_worker_failure_is_tolerated_and_recreated(operator: OperatorProcess, jobs: Jobs, kubelet: FakeKubelet,
                                                        ns: str) -> None:
    jobs.create(ns, job_manifest("tol", workers=5, worker_f=1))
    pods = _wait_pods(jobs, ns, 6)
    _run_all(kubelet, ns, list(pods))
    jobs.wait_phase(ns, "tol", "Running")
    old_uid = pods["tol-worker-3"].metadata.uid
    kubelet.exit(ns, "tol-worker-3", 137, reason="OOMKilled")
    new = wait_for(lambda: (p := jobs.pods(ns).get("tol-worker-3")) is not None and p.metadata.uid != old_uid and p,
                   what="tol-worker-3 recreated")
    assert new.metadata.annotations["garfield.dev/replacement"] == "true"
    # Status and events are written right after the replacement pod (same pass).
    status = wait_for(lambda: (s := jobs.status(ns, "tol")).get("restarts") == 1 and s, what="restarts counted")
    assert status["phase"] in ("Running", "Restarting")  # 4 of 5 workers run: still a quorum
    assert status["replicaStatuses"]["workers"]["failed"] == 1
    events = wait_for(lambda: jobs.events(ns, "PodFailed"), what="PodFailed event")
    assert events and "tol-worker-3" in events[0].message and "OOMKilled" in events[0].message
    assert events[0].type == "Warning"
    kubelet.run(ns, "tol-worker-3")
    jobs.wait_phase(ns, "tol", "Running")


def test_more_than_f_failures_fail_the_job(operator: OperatorProcess, jobs: Jobs, kubelet: FakeKubelet, ns: str) -> None:
    jobs.create(ns, job_manifest("lost", workers=5, worker_f=1, run_policy={"backoffLimit": 10}))
    pods = _wait_pods(jobs, ns, 6)
    _run_all(kubelet, ns, list(pods))
    jobs.wait_phase(ns, "lost", "Running")
    kubelet.exit(ns, "lost-worker-1", 1)
    kubelet.exit(ns, "lost-worker-2", 1)
    status = jobs.wait_phase(ns, "lost", "Failed")
    cond = jobs.condition(ns, "lost", "Failed")
    assert cond["reason"] == "TooManyFailures"
    assert "2 workers lost, 2 faulty, more than the f=1" in cond["message"] and "lost-worker-2" in cond["message"]
    assert status["completionTime"]


def test_backoff_limit(operator: OperatorProcess, jobs: Jobs, kubelet: FakeKubelet, ns: str) -> None:
    jobs.create(ns, job_manifest("backoff", workers=5, worker_f=1, run_policy={"backoffLimit": 1}))
    pods = _wait_pods(jobs, ns, 6)
    _run_all(kubelet, ns, list(pods))
    jobs.wait_phase(ns, "backoff", "Running")
    uid = pods["backoff-worker-0"].metadata.uid
    kubelet.exit(ns, "backoff-worker-0", 1)
    wait_for(lambda: (p := jobs.pods(ns).get("backoff-worker-0")) is not None and p.metadata.uid != uid,
             what="first recreation")
    kubelet.run(ns, "backoff-worker-0")
    jobs.wait_phase(ns, "backoff", "Running")
    kubelet.exit(ns, "backoff-worker-4", 1)
    jobs.wait_phase(ns, "backoff", "Failed")
    assert jobs.condition(ns, "backoff", "Failed")["reason"] == "BackoffLimitExceeded"


def test_image_pull_error_and_unschedulable_are_reported(operator: OperatorProcess, jobs: Jobs, kubelet: FakeKubelet,
                                                         ns: str) -> None:
    jobs.create(ns, job_manifest("stuck", workers=4, worker_f=1, image="registry.invalid/garfield:nope"))
    pods = _wait_pods(jobs, ns, 5)
    assert pods["stuck-worker-0"].spec.containers[0].image == "registry.invalid/garfield:nope"
    for name in ("stuck-server-0", "stuck-worker-0", "stuck-worker-1"):
        kubelet.run(ns, name)
    kubelet.waiting(ns, "stuck-worker-2")
    kubelet.unschedulable(ns, "stuck-worker-3")
    cond = wait_for(lambda: (c := jobs.condition(ns, "stuck", "Degraded")) and "stuck-worker-3" in c["message"] and c,
                    what="Degraded condition naming both pods")
    assert cond["status"] == "True"
    assert "stuck-worker-2: cannot pull image 'registry.invalid/garfield:nope'" in cond["message"]
    assert "stuck-worker-3: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu." in cond["message"]
    for reason in ("ImagePullBackOff", "Unschedulable"):
        ev = wait_for(lambda reason=reason: [e for e in jobs.events(ns) if e.type == "Warning" and e.reason == reason],
                      what=f"{reason} warning event")
        assert len(ev) == 1 and ev[0].involved_object.name == "stuck"
    # 2 of 4 workers run, below the quorum of 3: the job is not reported Running.
    status = jobs.status(ns, "stuck")
    assert status["phase"] == "Pending" and jobs.condition(ns, "stuck", "Running")["status"] == "False"
    assert "2 of 4 workers running or done (quorum 3)" in jobs.condition(ns, "stuck", "Running")["message"]
    # The image pull recovers: a quorum runs, the job is Running, Degraded still names the unschedulable pod.
    kubelet.run(ns, "stuck-worker-2")
    jobs.wait_phase(ns, "stuck", "Running")
    cond = wait_for(lambda: (c := jobs.condition(ns, "stuck", "Degraded")) and "stuck-worker-2" not in c["message"] and c,
                    what="Degraded updated")
    assert cond["status"] == "True" and cond["reason"] == "Unschedulable"


def test_deadline_exceeded(operator: OperatorProcess, jobs: Jobs, kubelet: FakeKubelet, ns: str) -> None:
    jobs.create(ns, job_manifest("late", workers=4, worker_f=1, run_policy={"activeDeadlineSeconds": 4}))
    pods = _wait_pods(jobs, ns, 5)
    kubelet.run(ns, "late-server-0")  # bound and running: deleted gracefully; the others are unbound
    jobs.wait_phase(ns, "late", "Failed")
    cond = jobs.condition(ns, "late", "Failed")
    assert cond["reason"] == "DeadlineExceeded" and "activeDeadlineSeconds=4" in cond["message"]
    # cleanPodPolicy Running (the default): unfinished pods are deleted; the bound one gracefully.
    remaining = wait_for(lambda: (p := jobs.pods(ns)) and len(p) == 1 and p, what="unbound pods deleted")
    assert remaining["late-server-0"].metadata.deletion_timestamp
    assert len(pods) == 5


def test_suspend_and_resume(operator: OperatorProcess, jobs: Jobs, kubelet: FakeKubelet, ns: str) -> None:
    jobs.create(ns, job_manifest("nap", workers=4, worker_f=1))
    pods = _wait_pods(jobs, ns, 5)
    _run_all(kubelet, ns, list(pods))
    jobs.wait_phase(ns, "nap", "Running")
    jobs.patch_spec(ns, "nap", {"spec": {"runPolicy": {"suspend": True}}})
    status = jobs.wait_phase(ns, "nap", "Suspended")
    assert "startTime" not in status
    wait_for(lambda: kubelet.finish_deletions(ns) >= 0 and not jobs.pods(ns), what="pods deleted on suspend")
    assert jobs.core.read_namespaced_service("nap", ns)  # the service stays
    jobs.patch_spec(ns, "nap", {"spec": {"runPolicy": {"suspend": False}}})
    new = _wait_pods(jobs, ns, 5)
    assert all(p.metadata.uid != pods[n].metadata.uid for n, p in new.items())
    assert not any((p.metadata.annotations or {}).get("garfield.dev/replacement") for p in new.values())
    status = jobs.wait_phase(ns, "nap", "Pending")
    assert status["startTime"] and jobs.condition(ns, "nap", "Suspended")["status"] == "False"
    wait_for(lambda: jobs.events(ns, "JobSuspended") and jobs.events(ns, "JobResumed"), what="suspend/resume events")


def test_an_edit_of_a_running_job_is_rejected_until_it_is_suspended(
        operator: OperatorProcess, jobs: Jobs, kubelet: FakeKubelet, ns: str) -> None:
    jobs.create(ns, job_manifest("edit", workers=4, worker_f=1))
    pods = _wait_pods(jobs, ns, 5, timeout=60)
    _run_all(kubelet, ns, list(pods))
    status = jobs.wait_phase(ns, "edit", "Running")
    assert status["appliedSpec"]["workers"]["replicas"] == 4  # kept by the status subresource, not pruned
    jobs.patch_spec(ns, "edit", {"spec": {"workers": {"replicas": 6}, "runPolicy": {"backoffLimit": 7}}})
    cond = wait_for(lambda: (c := jobs.condition(ns, "edit", "SpecChangeRejected")) and c["status"] == "True" and c,
                    timeout=60, what="SpecChangeRejected")
    assert cond["reason"] == "ChangedWhileRunning"
    assert cond["message"].startswith("spec.workers.replicas changed while the job runs and not applied")
    (event,) = wait_for(lambda: jobs.events(ns, "ChangedWhileRunning"), timeout=60, what="ChangedWhileRunning event")
    assert event.type == "Warning"
    # The pass that said so created and deleted nothing; runPolicy was applied.
    now = jobs.pods(ns)
    assert {n: p.metadata.uid for n, p in now.items()} == {n: p.metadata.uid for n, p in pods.items()}
    status = jobs.status(ns, "edit")
    assert status["appliedSpec"]["workers"]["replicas"] == 4 and status["appliedSpec"]["runPolicy"]["backoffLimit"] == 7
    # Suspending lets the edit apply: the resumed job has 6 workers.
    jobs.patch_spec(ns, "edit", {"spec": {"runPolicy": {"suspend": True}}})
    jobs.wait_phase(ns, "edit", "Suspended")
    wait_for(lambda: kubelet.finish_deletions(ns) >= 0 and not jobs.pods(ns), timeout=60, what="pods deleted on suspend")
    assert jobs.condition(ns, "edit", "SpecChangeRejected")["status"] == "False"
    jobs.patch_spec(ns, "edit", {"spec": {"runPolicy": {"suspend": False}}})
    _wait_pods(jobs, ns, 7, timeout=60)
    wait_for(lambda: jobs.status(ns, "edit").get("appliedSpec", {}).get("workers", {}).get("replicas") == 6,
             timeout=60, what="the resumed job's applied spec")


def test_delete_garbage_collects_children(operator: OperatorProcess, jobs: Jobs, ns: str) -> None:
    jobs.create(ns, job_manifest("gone", workers=4, worker_f=1))
    _wait_pods(jobs, ns, 5)
    wait_for(lambda: jobs.core.list_namespaced_service(ns).items, what="service")
    jobs.delete(ns, "gone")
    wait_for(lambda: jobs.get(ns, "gone") is None, what="job deleted (no finalizer holds it)")
    wait_for(lambda: not jobs.pods(ns) and not jobs.core.list_namespaced_service(ns).items,
             what="pods and service garbage-collected")


def test_invalid_spec_gets_condition_and_event_and_no_pods(operator: OperatorProcess, jobs: Jobs, ns: str) -> None:
    # Krum on the 3 replies of 4 workers with f=1 needs n >= 2f+3: the schema cannot see it, the operator must.
    jobs.create(ns, job_manifest("bad", workers=4, worker_f=1, gar="krum"))
    status = jobs.wait_phase(ns, "bad", "Failed")
    cond = jobs.condition(ns, "bad", "Invalid")
    assert cond["status"] == "True" and cond["reason"] == "InvalidSpec"
    assert "spec.workers: krum needs n >= 2f+3" in cond["message"]
    ev = wait_for(lambda: jobs.events(ns, "InvalidSpec"), what="InvalidSpec event")
    assert ev[0].type == "Warning" and "krum" in ev[0].message
    assert status["observedGeneration"] == 1
    assert not jobs.pods(ns) and not jobs.core.list_namespaced_service(ns).items
    # Fixing the spec starts the job.
    jobs.patch_spec(ns, "bad", {"spec": {"workers": {"replicas": 6}}})
    _wait_pods(jobs, ns, 7)
    wait_for(lambda: jobs.condition(ns, "bad", "Invalid")["status"] == "False", what="Invalid cleared")
    status = jobs.wait_phase(ns, "bad", "Pending")
    assert status["observedGeneration"] == 2 and jobs.condition(ns, "bad", "Failed") is None


def test_ttl_deletes_finished_job(operator: OperatorProcess, jobs: Jobs, kubelet: FakeKubelet, ns: str) -> None:
    jobs.create(ns, job_manifest("short", workers=4, worker_f=1, run_policy={"ttlSecondsAfterFinished": 1}))
    pods = _wait_pods(jobs, ns, 5)
    _run_all(kubelet, ns, list(pods))
    kubelet.exit(ns, "short-server-0", 0)
    jobs.wait_phase(ns, "short", "Succeeded")
    wait_for(lambda: jobs.get(ns, "short") is None, what="job deleted by its TTL")


def test_metrics_count_jobs_by_phase(operator: OperatorProcess, jobs: Jobs, ns: str) -> None:
    jobs.create(ns, job_manifest("metered", workers=4, worker_f=1))
    jobs.wait_phase(ns, "metered", "Pending")
    text = operator.metrics()
    pending = [ln for ln in text.splitlines() if ln.startswith('garfield_operator_jobs{phase="Pending"}')]
    assert pending and float(pending[0].split()[-1]) >= 1
    assert "garfield_operator_reconcile_duration_seconds_count" in text
    assert "garfield_operator_reconcile_errors_total" in text


def test_operator_restart_mid_reconcile_makes_no_duplicates(crd: ControlPlane, jobs: Jobs, kubelet: FakeKubelet,
                                                            status_server: StatusServer, tmp_path: Path) -> None:
    """Kill -9 the operator while it creates a 40-worker job's pods; a new one finishes the job."""
    crd.kubectl("create", "namespace", "gor-restart")
    op = OperatorProcess(crd, "gor-*", status_server.port, tmp_path / "op.log").start()
    try:
        jobs.create("gor-restart", job_manifest("big", workers=40, worker_f=5))
        wait_for(lambda: len(jobs.pods("gor-restart")) >= 1, interval=0.01, what="first pods")
        op.stop(kill=True)
        op.start()
        pods = _wait_pods(jobs, "gor-restart", 41)
        assert len({p.metadata.uid for p in pods.values()}) == 41
        status = jobs.wait_phase("gor-restart", "big", "Pending")
        assert status.get("restarts", 0) == 0 and status["replicaStatuses"]["workers"]["active"] == 40
        assert len(jobs.core.list_namespaced_service("gor-restart").items) == 1
        assert len(jobs.events("gor-restart", "PodsCreated")) <= 2  # one per operator life at most
    finally:
        op.stop()
