"""Exactly what the operator does with the API, as RBAC rules (the least privilege it needs).

The Helm chart's Role/ClusterRole and docs/operator.md mirror these; tests/operator/test_rbac.py runs
the operator as a ServiceAccount bound to nothing more.
"""

from __future__ import annotations

from typing import Any

from garfield_operator import constants as C

Rule = dict[str, Any]

# Namespaced rights, in every watched namespace (a Role each, or one ClusterRole with --all-namespaces).
RULES: list[Rule] = [
    # kopf watches jobs; the controller GETs each one; ttlSecondsAfterFinished deletes it.
    {"apiGroups": [C.GROUP], "resources": [C.PLURAL], "verbs": ["get", "list", "watch", "delete"]},
    # status: phase, conditions, replicaStatuses, progress (JSON merge patch).
    {"apiGroups": [C.GROUP], "resources": [f"{C.PLURAL}/status"], "verbs": ["patch"]},
    # children carry blockOwnerDeletion: needed where OwnerReferencesPermissionEnforcement is enabled.
    {"apiGroups": [C.GROUP], "resources": [f"{C.PLURAL}/finalizers"], "verbs": ["update"]},
    # pods: kopf watches (label-selected), the controller lists (label-selected), creates, deletes.
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list", "watch", "create", "delete"]},
    # the headless service: kopf watches, the controller GETs and creates.
    {"apiGroups": [""], "resources": ["services"], "verbs": ["get", "list", "watch", "create"]},
    # Events about jobs (the operator's own, and kopf's on handler errors).
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    # Mutual TLS: each job's CA Secret (created once, read back by name to sign) and one Secret per
    # replica (created, replaced with a fresh key when its pod is recreated). Never list or watch:
    # the operator names the Secrets it reads, so it cannot enumerate anyone else's.
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "update"]},
]

# Only with --network-policy: each job's own NetworkPolicy (the controller GETs and creates it).
NETWORK_POLICY_RULES: list[Rule] = [
    {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "create"]},
]

# Cluster-wide, only with namespace globs (--namespace 'ml-*'): kopf follows namespaces and CRDs.
GLOB_CLUSTER_RULES: list[Rule] = [
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
    {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]},
]

# Only with --peering NAME (several replicas): kopf's peering objects (kopf's own CRDs must be installed).
PEERING_RULES: list[Rule] = [
    {"apiGroups": ["kopf.dev"], "resources": ["kopfpeerings"], "verbs": ["get", "list", "watch", "patch"]},
]
PEERING_CLUSTER_RULES: list[Rule] = [
    {"apiGroups": ["kopf.dev"], "resources": ["clusterkopfpeerings"], "verbs": ["get", "list", "watch", "patch"]},
]
