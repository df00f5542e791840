"""The Garfield operator: reconciles ByzantineTrainingJobs into pods and a headless service.

Layers, from pure to effectful (each module has one purpose):

- ``constants``: labels, annotations, condition types and reasons (the operator's vocabulary);
- ``rendering``: plan -> pod and service manifests (pure);
- ``observe``: what a pod's status means (running, ready, failed and why, stuck and why) (pure);
- ``policies/``: one file per run policy (failure/backoff, deadline, suspend, completion,
  cleanup, ttl), each a pure function of the observed state;
- ``status``: phase, conditions, replicaStatuses, progress (pure);
- ``reconcile``: desired vs observed -> one ``Decision`` (pure; unit-tested without a cluster);
- ``progress``: reading the correct servers' ``/status`` (pluggable source);
- ``kube``: a small async Kubernetes REST client over aiohttp (kopf's own HTTP stack);
- ``workqueue``, ``controller``: level-triggered reconciliation with de-duplication and backoff;
- ``metrics``, ``settings``, ``handlers`` (thin kopf glue), ``main`` (the ``garfield-operator`` CLI).
"""

__version__ = "0.1.0"
