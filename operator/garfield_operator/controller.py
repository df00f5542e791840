"""Level-triggered reconciliation: read the job, its pods and service; decide; apply.

kopf's watches only say *which* job to look at (see ``handlers``); each pass then reads fresh state
from the apiserver (a GET, a label-selected LIST and a GET, plus the job's NetworkPolicy and, under
mutual TLS, its CA Secret, each a GET by name), so a decision never rests on a stale
cache, and a restarted operator picks up exactly where the cluster is. Deletions go before
creations (a failed pod must be gone before its replacement takes the name), creations run
concurrently, and every error is retried with per-job exponential backoff.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import time
from typing import Any

from garfield.plan import Replica
from garfield.security.certificates import KeyPair
from garfield.spec.model import mutual_tls_of

from garfield_operator import constants as C
from garfield_operator import progress as P
from garfield_operator import status as S
from garfield_operator.credentials import Credentials, ForeignSecret, classify, key_pair
from garfield_operator.kube import ApiError, Body, Client, core_path, jobs_path, network_policies_path
from garfield_operator.metrics import Metrics
from garfield_operator.reconcile import Decision, Event, Observed, StatusTarget, decide
from garfield_operator.rendering import NetworkPolicyOptions
from garfield_operator.settings import Config
from garfield_operator.status import rfc3339
from garfield_operator.workqueue import WorkQueue

log = logging.getLogger("garfield_operator")
Key = tuple[str, str]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Controller:
    def __init__(self, config: Config, client: Client, metrics: Metrics, source: P.StatusSource,
                 *, resync_interval: float = 300.0) -> None:
        self.config = config
        self.client = client
        self.credentials = Credentials(client)
        self.metrics = metrics
        self.source = source
        self.queue: WorkQueue[tuple[str, str]] = WorkQueue()  # (namespace, job name)
        self.known: set[Key] = set()
        self.progress: dict[Key, dict[str, Any]] = {}
        self.targets: dict[Key, list[StatusTarget]] = {}
        self.create_failures: dict[Key, dict[str, str]] = {}  # pod creates the apiserver refused, per job
        self.resync_interval = resync_interval
        self.network = (NetworkPolicyOptions(dict(config.operator_pod_labels), list(config.metrics_from))
                        if config.network_policies else None)
        self.instance = os.environ.get("HOSTNAME", "garfield-operator")
        self._tasks: list[asyncio.Task[Any]] = []

    # -- event intake (called by kopf handlers) --------------------------------------------------
    def job_event(self, event_type: str | None, namespace: str, name: str) -> None:
        key = (namespace, name)
        if event_type == "DELETED":
            self.known.discard(key)
            self.progress.pop(key, None)
            self.targets.pop(key, None)
            self.create_failures.pop(key, None)
            self.queue.discard(key)
            self.metrics.set_phase(key, None)
            return
        self.known.add(key)
        self.queue.add(key)
        self.metrics.queue_depth.set(len(self.queue))

    def child_event(self, namespace: str, job_name: str) -> None:
        self.queue.add((namespace, job_name))

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.queue.run_workers(self.config.workers, self.reconcile_key), name="garfield-workers"),
            asyncio.create_task(self._progress_loop(), name="garfield-progress"),
            asyncio.create_task(self._resync_loop(), name="garfield-resync"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.queue.close()
        await self.client.close()
        await self.source.close()

    def healthy(self) -> dict[str, Any]:
        dead = [t.get_name() for t in self._tasks if t.done()]
        if dead:
            raise RuntimeError(f"background tasks stopped: {', '.join(dead)}")
        return {"jobs": len(self.known), "queued": len(self.queue)}

    # -- one reconcile ---------------------------------------------------------------------------
    async def reconcile_key(self, key: Key) -> None:
        started = time.perf_counter()
        try:
            await self._reconcile(*key)
            self.queue.forget(key)
        except Exception as exc:  # retried: the next pass starts from fresh state
            reason = f"http{exc.status}" if isinstance(exc, ApiError) else type(exc).__name__
            self.metrics.errors.labels(reason).inc()
            delay = self.queue.add_rate_limited(key)
            # Structured fields, so that log readers (and tests) match the status code, not a substring.
            log.warning("reconcile of %s/%s failed, retrying in %.1fs: %s", key[0], key[1], delay, exc,
                        extra={"job": f"{key[0]}/{key[1]}", "error_reason": reason,
                               "http_status": exc.status if isinstance(exc, ApiError) else None})
        finally:
            self.metrics.reconciles.inc()
            self.metrics.latency.observe(time.perf_counter() - started)
            self.metrics.queue_depth.set(len(self.queue))

    async def _reconcile(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        job = await self.client.get_or_none(jobs_path(namespace, name))
        if job is None:
            self.job_event("DELETED", namespace, name)
            return
        uid = job["metadata"]["uid"]
        async def network_policy() -> Body | None:
            if self.network is None:
                return {}  # none is made: count it as there
            return await self.client.get_or_none(network_policies_path(namespace, name))

        async def ca_secret() -> Body | None:
            return await self.credentials.read_ca(job) if mutual_tls_of(job.get("spec") or {}) else None

        pods, service, policy, ca = await asyncio.gather(
            self.client.list(core_path(namespace, "pods"), f"{C.LABEL_JOB}={name}"),
            self.client.get_or_none(core_path(namespace, "services", name)),
            network_policy(),
            ca_secret(),
        )
        owned = [p for p in pods if any(o.get("uid") == uid for o in p["metadata"].get("ownerReferences") or [])]
        now = utcnow()
        observed = Observed(job, owned, service is not None, now, self.progress.get(key),
                            network_policy_exists=policy is not None, ca_secret=classify(ca, job),
                            create_failures=dict(self.create_failures.get(key, {})))
        decision = decide(observed, self.config.runtime_image, self.network)
        errors = await self._apply(job, decision, now, ca)
        self.metrics.set_phase(key, decision.phase)
        if decision.progress_targets:
            self.targets[key] = decision.progress_targets
        else:
            self.targets.pop(key, None)
        if errors:
            raise errors[0]
        if decision.requeue_after is not None:
            self.queue.add_after(key, decision.requeue_after)

    async def _apply(self, job: dict[str, Any], d: Decision, now: dt.datetime,
                     ca_secret: Body | None = None) -> list[Exception]:
        """`ca_secret`: the job's CA Secret as read for this pass (mutual TLS), signing its certificates."""
        meta = job["metadata"]
        ns, name = meta["namespace"], meta["name"]
        errors: list[Exception] = []
        if d.delete_pods:
            results = await self.client.gather([
                self.client.delete(core_path(ns, "pods", p.name), uid=p.uid, grace_seconds=p.grace_seconds)
                for p in d.delete_pods])
            self.metrics.pods_deleted.inc(sum(1 for r in results if r is True))
            errors += [r for r in results if isinstance(r, Exception)]
        if d.create_service is not None:
            try:
                await self.client.create(core_path(ns, "services"), d.create_service)
            except ApiError as exc:
                errors.append(exc)
                d.events.append(Event("Warning", "FailedCreate", f"service {name}: {exc.message}"))
        if d.create_network_policy is not None:
            try:
                await self.client.create(network_policies_path(ns), d.create_network_policy)
            except ApiError as exc:
                errors.append(exc)
                d.events.append(Event("Warning", "FailedCreate", f"network policy {name}: {exc.message}"))
        if d.create_pods:
            ca: KeyPair | None = None
            if d.issue_certificates:
                try:
                    if d.create_ca or ca_secret is None:
                        ca = await self.credentials.create_ca(job)
                    else:
                        ca = key_pair(ca_secret)
                except (ApiError, ForeignSecret) as exc:
                    errors.append(exc)
                    d.events.append(Event("Warning", "FailedCreate", f"CA secret of job {name}: {exc}"))
            certificates = {r.name: r for r in d.issue_certificates}
            results = await self.client.gather(
                [self._create_pod(job, pod, certificates.get(pod["metadata"]["name"]), ca) for pod in d.create_pods],
                limit=32)
            self.metrics.pods_created.inc(sum(1 for r in results if isinstance(r, dict)))
            failures = self.create_failures.setdefault((ns, name), {})
            for pod, result in zip(d.create_pods, results, strict=True):
                pod_name = pod["metadata"]["name"]
                if isinstance(result, Exception):
                    errors.append(result)
                    if isinstance(result, ApiError) and result.status in (400, 403, 422):
                        # Posted now; the next pass (the error's retry) puts it in the Degraded condition.
                        d.events.append(Event("Warning", C.R_FAILED_CREATE, f"pod {pod_name}: {result.message}"))
                        failures[pod_name] = result.message
                elif isinstance(result, dict):
                    failures.pop(pod_name, None)
            if not failures:
                self.create_failures.pop((ns, name), None)
        if d.status_patch is not None:
            try:
                await self.client.merge_patch(jobs_path(ns, name) + "/status", {"status": d.status_patch})
            except ApiError as exc:
                if exc.status != 404:
                    errors.append(exc)
        if d.events:
            await self.client.gather([self._post_event(job, ev, now) for ev in d.events])
        if d.delete_job:
            await self.client.delete(jobs_path(ns, name), uid=meta["uid"])
        for ev in d.events:
            level = logging.WARNING if ev.type == "Warning" else logging.INFO
            log.log(level, "%s: %s", ev.reason, ev.message, extra={"job": f"{ns}/{name}", "reason": ev.reason})
        return errors

    async def _create_pod(self, job: dict[str, Any], pod: dict[str, Any], certificate: Replica | None,
                          ca: KeyPair | None) -> Body | None:
        """Create one pod; under mutual TLS, first give its replica a fresh key in its own Secret
        (the rotation on every (re)creation): a pod is never created before its key."""
        if certificate is not None:
            if ca is None:
                return None  # the job's CA could not be had this pass (reported once); retried
            await self.credentials.rotate(job, ca, certificate)
        return await self.client.create(core_path(job["metadata"]["namespace"], "pods"), pod)

    async def _post_event(self, job: dict[str, Any], ev: Event, now: dt.datetime) -> None:
        meta = job["metadata"]
        stamp = rfc3339(now)
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": C.API_VERSION, "kind": C.KIND, "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta["uid"]},
            "reason": ev.reason,
            "message": ev.message[:1024],
            "type": ev.type,
            "source": {"component": C.MANAGER},
            "reportingComponent": C.MANAGER,
            "reportingInstance": self.instance,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            await self.client.create(core_path(meta["namespace"], "events"), body)
        except ApiError as exc:  # events are best effort; the status carries the same facts
            log.debug("cannot post event %s: %s", ev.reason, exc)

    # -- background loops ------------------------------------------------------------------------
    async def _progress_loop(self) -> None:
        sem = asyncio.Semaphore(32)

        async def one(key: Key, targets: list[StatusTarget]) -> None:
            async with sem:
                summary = await P.read(self.source, targets, utcnow())
            if summary is not None and not S.same_progress(summary, self.progress.get(key)) and key in self.known:
                self.progress[key] = summary
                self.queue.add(key)

        while True:
            await asyncio.sleep(self.config.progress_interval)
            await asyncio.gather(*(one(k, t) for k, t in list(self.targets.items())), return_exceptions=True)

    async def _resync_loop(self) -> None:
        """Look at every job now and then, whatever the watches said (they can drop events)."""
        while True:
            await asyncio.sleep(self.resync_interval)
            for key in list(self.known):
                self.queue.add(key)
