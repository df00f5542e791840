"""kopf glue (thin): watches say which job changed; the controller does the rest.

Three watches feed one work queue: the jobs themselves, and their pods and services (selected
server-side by the ``garfield.dev/job-name`` label, so the operator never streams unrelated pods).
No handler here changes an object, so kopf keeps no state on the jobs and adds no finalizer.

The handlers are coroutines on purpose: kopf runs plain functions in a thread pool, and the work
queue (an asyncio.Queue) must only be touched from the event loop's thread. A put from another
thread may never wake the waiting worker, which left a job unreconciled until the next resync.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from garfield_operator import constants as C
from garfield_operator.controller import Controller
from garfield_operator.kube import Client
from garfield_operator.metrics import Metrics
from garfield_operator.progress import HttpStatusSource
from garfield_operator.settings import Config

registry = kopf.OperatorRegistry()
log = logging.getLogger("garfield_operator")


@kopf.on.login(registry=registry)
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """The same credentials for kopf's watches and the operator's own client (kube.Client)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup(registry=registry)
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: Config = memo.config
    metrics: Metrics = memo.metrics
    if config.metrics_port:
        metrics.serve(config.metrics_port, config.bind_address)
    client = Client.from_environment(settings)
    source = memo.get("status_source") or HttpStatusSource(port=config.status_port)
    controller = Controller(config, client, metrics, source)
    memo.controller = controller
    controller.start()
    log.info("garfield-operator started", extra={"image": config.runtime_image,
                                                  "namespaces": config.namespaces or ["*"]})


@kopf.on.cleanup(registry=registry)
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    controller: Controller | None = memo.get("controller")
    if controller is not None:
        await controller.stop()


@kopf.on.probe(id="reconciler", registry=registry)
async def probe(memo: kopf.Memo, **_: Any) -> dict[str, Any]:
    controller: Controller | None = memo.get("controller")
    return controller.healthy() if controller is not None else {}


# kopf types `namespace` as optional (cluster-scoped resources have none); the three watched here
# are namespaced, so it is always set.
@kopf.on.event(C.GROUP, C.VERSION, C.PLURAL, registry=registry)
async def job_event(type: str | None, namespace: str | None, name: str, memo: kopf.Memo, **_: Any) -> None:
    assert namespace is not None
    memo.controller.job_event(type, namespace, name)


@kopf.on.event("v1", "pods", labels={C.LABEL_JOB: kopf.PRESENT}, registry=registry)
async def pod_event(namespace: str | None, labels: Mapping[str, str], memo: kopf.Memo, **_: Any) -> None:
    assert namespace is not None
    memo.controller.child_event(namespace, labels[C.LABEL_JOB])


@kopf.on.event("v1", "services", labels={C.LABEL_JOB: kopf.PRESENT}, registry=registry)
async def service_event(namespace: str | None, labels: Mapping[str, str], memo: kopf.Memo, **_: Any) -> None:
    assert namespace is not None
    memo.controller.child_event(namespace, labels[C.LABEL_JOB])
