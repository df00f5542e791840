"""Operator benchmark against the real test control plane (scripts/test-cluster.sh build first).

Measures, with the operator running as its own process (`garfield-operator`):
1. apply -> all pods + service created, for a job of 64 workers (+1 server): target <= 2 s;
2. 100 jobs applied at once (5 pods each): all reconciled (pods + status), target 0 errors;
3. the operator's peak resident memory (VmHWM) over the whole run: target <= 200 MB;
4. a job deleted while the operator is down is gone (no finalizer holds it): target <= 5 s. The
   same is measured for kopf's own way of per-job background work (a ``@kopf.timer`` on the jobs,
   ``bench/kopf_way_operator.py``): the reason the operator keeps its own work queue and loops
   (docs/operator.md, "What is kopf's and what is ours").

    python bench/operator.py [--repeats 5] [--jobs 100] [--out bench/results/operator.md]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from kubernetes import client, watch  # noqa: E402

from support.cluster import ControlPlane, free_port  # noqa: E402
from support.crd import install_crd  # noqa: E402

GROUP, VERSION, PLURAL = "garfield.dev", "v1alpha1", "byzantinetrainingjobs"


def manifest(name: str, workers: int, f: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "ByzantineTrainingJob", "metadata": {"name": name},
        "spec": {"task": {"entrypoint": "garfield.tasks.mnist:mlp"}, "servers": {"replicas": 1},
                 "workers": {"replicas": workers, "byzantine": f, "gar": {"name": "median"}}},
    }


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def time_big_job(plane: ControlPlane, ns: str, workers: int) -> float:
    """Seconds from the create call to the last of the job's pods and its service being stored."""
    api = plane.api_client()
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    plane.kubectl("create", "namespace", ns)
    want = workers + 1
    seen: set[str] = set()
    service_at: list[float] = []
    done = threading.Event()
    last: list[float] = []

    def watch_pods() -> None:
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_pod, ns, timeout_seconds=60):
            if ev["type"] == "ADDED":
                seen.add(ev["object"].metadata.name)
                if len(seen) == want:
                    last.append(time.perf_counter())
                    w.stop()
        done.set()

    def watch_services() -> None:
        w = watch.Watch()
        for ev in w.stream(core.list_namespaced_service, ns, timeout_seconds=60):
            if ev["type"] == "ADDED":
                service_at.append(time.perf_counter())
                w.stop()

    threads = [threading.Thread(target=watch_pods, daemon=True), threading.Thread(target=watch_services, daemon=True)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # both watches established
    t0 = time.perf_counter()
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, manifest("big", workers, 8))
    for t in threads:
        t.join(70)
    if len(seen) != want or not service_at:
        raise RuntimeError(f"only {len(seen)} of {want} pods (service: {bool(service_at)}) in {ns}")
    return max(last[0], service_at[0]) - t0


def many_jobs(plane: ControlPlane, ns: str, count: int) -> tuple[float, int, int]:
    """Create `count` jobs at once; seconds until every one has its 5 pods and a status saying so."""
    api = plane.api_client()
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    plane.kubectl("create", "namespace", ns)
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda i: custom.create_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, manifest(f"job-{i:03d}", 4, 1)), range(count)))
    created = time.perf_counter() - t0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        items = custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]
        ok = [j for j in items if (j.get("status") or {}).get("replicaStatuses", {}).get("workers", {}).get("active") == 4]
        failed = [j for j in items if (j.get("status") or {}).get("phase") == "Failed"]
        if len(ok) == count:
            pods = len(core.list_namespaced_pod(ns).items)
            return time.perf_counter() - t0, pods, len(failed)
        time.sleep(0.2)
    raise RuntimeError(f"not all {count} jobs reconciled in 120 s (created in {created:.1f} s)")


def wait_operator(live_port: int, proc: subprocess.Popen[bytes]) -> None:
    """Until kopf's liveness endpoint answers (it does once the startup handlers have run)."""
    for _ in range(600):
        if proc.poll() is not None:
            raise RuntimeError(f"operator exited with {proc.returncode} before it was ready")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{live_port}/healthz", timeout=1)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("operator not live after 60 s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def delete_while_down(plane: ControlPlane, ns: str, argv: list[str], ready: str,
                      bound: float = 20.0) -> tuple[float | None, list[str]]:
    """Start an operator (`argv`), create a job, wait until the operator has acted on it (`ready`:
    "pods" or "finalizer"), stop the operator, delete the job: (seconds until it is gone or None
    when it is still there after `bound` s, the finalizers that held it)."""
    api = plane.api_client()
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    plane.kubectl("create", "namespace", ns)
    live = free_port()
    log = open(plane.workdir / f"{ns}.log", "wb")
    proc = subprocess.Popen([*argv, "--liveness", f"http://127.0.0.1:{live}/healthz"] if argv[0] == "kopf" else
                            [*argv, "--liveness-port", str(live), "--metrics-port", "0"],
                            env=plane.env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_operator(live, proc)
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, manifest("doomed", 2, 0))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            job = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "doomed")
            acted = (len(core.list_namespaced_pod(ns).items) == 3 if ready == "pods"
                     else bool(job["metadata"].get("finalizers")))
            if acted:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"{argv[0]} did not act on the job in 60 s ({ready})")
    finally:
        stop(proc)
    held = list(custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "doomed")["metadata"].get("finalizers") or [])
    t0 = time.perf_counter()
    custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "doomed")
    while time.perf_counter() - t0 < bound:
        if not custom.list_namespaced_custom_object(GROUP, VERSION, ns, PLURAL)["items"]:
            return time.perf_counter() - t0, held
        time.sleep(0.05)
    return None, held


def reconcile_errors(metrics_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(ln.split()[-1]) for ln in text.splitlines() if ln.startswith("garfield_operator_reconcile_errors_total{"))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--workers", type=int, default=64)
    p.add_argument("--jobs", type=int, default=100)
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "operator.md"))
    args = p.parse_args()

    load_before = os.getloadavg()[0]
    plane = ControlPlane().start()
    op: subprocess.Popen[bytes] | None = None
    try:
        install_crd(plane)
        live, metrics = free_port(), free_port()
        log = open(plane.workdir / "operator.log", "wb")
        op = subprocess.Popen(["garfield-operator", "--namespace", "bench-*", "--standalone", "--bind-address", "127.0.0.1",
                               "--liveness-port", str(live), "--metrics-port", str(metrics)],
                              env=plane.env, stdout=log, stderr=subprocess.STDOUT)
        wait_operator(live, op)
        idle_rss = rss_mb(op.pid)
        big = [time_big_job(plane, f"bench-big-{i}", args.workers) for i in range(args.repeats)]
        print(f"{args.workers}-worker job: {[round(b, 3) for b in big]} s", flush=True)
        many_s, pods, failed = many_jobs(plane, "bench-many", args.jobs)
        errors = reconcile_errors(metrics)
        print(f"{args.jobs} jobs: {many_s:.2f} s, {pods} pods, {failed} failed, {errors:.0f} reconcile errors", flush=True)
        peak = peak_rss_mb(op.pid)
        final_rss = rss_mb(op.pid)
        print(f"operator RSS: idle {idle_rss:.0f} MB, peak {peak:.0f} MB", flush=True)
        stop(op)
        op = None
        ours, ours_held = delete_while_down(
            plane, "bench-del-ours", ["garfield-operator", "--namespace", "bench-del-ours", "--standalone",
                                      "--bind-address", "127.0.0.1"], ready="pods")
        kopf_way, kopf_held = delete_while_down(
            plane, "bench-del-kopf", ["kopf", "run", "--standalone", "--namespace", "bench-del-kopf",
                                      str(REPO / "bench" / "kopf_way_operator.py")], ready="finalizer")
        print(f"delete while down: ours {ours} s {ours_held}, kopf's way {kopf_way} s {kopf_held}", flush=True)
    finally:
        if op is not None:
            stop(op)
        plane.stop()

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    med = statistics.median(big)

    def gone(seconds: float | None) -> str:
        return f"{seconds:.2f} s" if seconds is not None else "still there after 20 s"

    load_after = os.getloadavg()[0]
    lines = [
        "# Operator benchmark",
        "",
        f"Generated by `bench/operator.py` on {cpu} ({os.cpu_count()} cores), Python {platform.python_version()}, "
        f"kube-apiserver v1.20.2 + etcd 3.4 from `scripts/test-cluster.sh` (all on the same machine; no kubelet).",
        "The operator runs as its own process (`garfield-operator --standalone`), with its defaults (8 reconcile workers).",
        "",
        "| measure | result | target |",
        "|---|---|---|",
        f"| apply -> all {args.workers + 1} pods + headless service stored, {args.workers}-worker job "
        f"(median of {args.repeats}; min {min(big):.2f}, max {max(big):.2f}) | **{med:.2f} s** | <= 2 s |",
        f"| {args.jobs} jobs (1 server + 4 workers each) created at once -> every job's pods created and its status "
        f"counting them | **{many_s:.1f} s**, {pods} pods, {failed} failed jobs, **{errors:.0f} reconcile errors** | 0 errors |",
        f"| operator peak RSS (VmHWM) over the whole run | **{peak:.0f} MB** (idle after start {idle_rss:.0f} MB, "
        f"at the end {final_rss:.0f} MB) | <= 200 MB |",
        f"| a job deleted while the operator is down, after the operator created its pods -> the job is gone "
        f"| **{gone(ours)}** (finalizers: {ours_held or 'none'}) | <= 5 s |",
        f"| the same with kopf's way of per-job background work (`@kopf.timer` on the jobs, "
        f"`bench/kopf_way_operator.py`, run by `kopf run`) | **{gone(kopf_way)}** (finalizers: {', '.join(kopf_held) or 'none'}) "
        f"| <= 5 s |",
        "",
        "How: the 64-worker time runs from the create call to the last pod ADDED / service ADDED event of two watches "
        "opened beforehand. The 100 jobs are created by 16 client threads; the time ends when a list shows every job's "
        "status with 4 active workers. Reconcile errors are the operator's own "
        "`garfield_operator_reconcile_errors_total`. Note the apiserver, etcd, the operator and the benchmark's client share "
        "the machine's cores, so the figures include their contention. "
        f"Load average (1 min) from other processes on the machine: {load_before:.1f} before the run, "
        f"{load_after:.1f} after it. The deletion rows stop the operator (SIGTERM) once it has acted on a new job, "
        "then delete the job and poll the job list every 50 ms.",
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
