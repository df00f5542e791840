"""The operator's vocabulary: API coordinates, labels, annotations, condition types and reasons."""

from __future__ import annotations

from garfield.lifecycle import Phase, Reason
from garfield.spec import contract, schema
from garfield.spec.kinds import Role

GROUP = schema.GROUP
VERSION = schema.VERSION
PLURAL = schema.PLURAL
KIND = schema.KIND
API_VERSION = schema.API_VERSION

PREFIX = "garfield.dev"
LABEL_JOB = f"{PREFIX}/job-name"
LABEL_ROLE = f"{PREFIX}/role"
LABEL_INDEX = f"{PREFIX}/index"
LABEL_BYZANTINE = f"{PREFIX}/byzantine"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "garfield-operator"

# A pod created to replace a lost one (its replica had a pod: status.createdReplicas), not a first
# start (even one after refused creates): the replica counts as lost until the replacement runs, so
# f+1 failures in a row fail the job even while replacements are pending.
ANNOTATION_REPLACEMENT = f"{PREFIX}/replacement"
ANNOTATION_SPEC_HASH = f"{PREFIX}/spec-hash"
FINALIZER = f"{PREFIX}/operator"

CONTAINER_NAME = "garfield"
TLS_VOLUME = contract.TLS_VOLUME  # the replica's own Secret (mutual TLS), mounted read-only at contract.TLS_MOUNT_PATH
# The pods' fsGroup when they mount a key: the Secret's files are then group-owned by it and mode
# 0440, readable by the node's process whatever UID its image runs as (the project's image is
# 10001:10001; the supplementary group reaches users of images built FROM it too), never by others.
TLS_FS_GROUP = 10001
TLS_FILE_MODE = 0o440
PORT_GRPC_NAME = "grpc"
PORT_METRICS_NAME = "metrics"

# Phases (status.phase): garfield.lifecycle's, shared with `garfield run`.
PENDING, RUNNING, RESTARTING, SUSPENDED, SUCCEEDED, FAILED = (
    Phase.PENDING, Phase.RUNNING, Phase.RESTARTING, Phase.SUSPENDED, Phase.SUCCEEDED, Phase.FAILED)
TERMINAL_PHASES = (SUCCEEDED, FAILED)

# Condition types (status.conditions[].type).
COND_CREATED = "Created"
COND_RUNNING = "Running"
COND_RESTARTING = "Restarting"
COND_SUSPENDED = "Suspended"
COND_SUCCEEDED = "Succeeded"
COND_FAILED = "Failed"
COND_INVALID = "Invalid"
COND_DEGRADED = "Degraded"
# An edit of a running job that cannot apply to its pods (policies/edits.py); False once reverted or suspended.
COND_SPEC_CHANGE_REJECTED = "SpecChangeRejected"

# Reasons (CamelCase, machine-readable).
R_INVALID_SPEC = "InvalidSpec"
R_VALID_SPEC = "ValidSpec"
R_PODS_CREATED = "PodsCreated"
R_QUORUM_RUNNING = "QuorumRunning"
R_WAITING_FOR_QUORUM = "WaitingForQuorum"
R_POD_FAILED = "PodFailed"
R_POD_RECREATED = "PodRecreated"
R_TOO_MANY_FAILURES = Reason.TOO_MANY_FAILURES
R_BACKOFF_LIMIT = "BackoffLimitExceeded"
R_DEADLINE = "DeadlineExceeded"
R_SUSPENDED = "JobSuspended"
R_RESUMED = "JobResumed"
R_SUCCEEDED = Reason.SUCCEEDED
R_IMAGE_PULL = "ImagePullBackOff"
R_UNSCHEDULABLE = "Unschedulable"
R_CONTAINER_CONFIG = "CreateContainerConfigError"
R_PODS_HEALTHY = "PodsHealthy"
R_TTL_EXPIRED = "TTLExpired"
R_CHANGED_WHILE_RUNNING = "ChangedWhileRunning"  # fields outside runPolicy edited while the job has pods
R_SPEC_APPLIED = "SpecApplied"
R_FAILED_CREATE = "FailedCreate"  # the apiserver refused to create a pod (the controller's event; Degraded names it)
R_WEAKER_SECURITY = "WeakerSecurityContext"  # a template weakened the default security context, as it asked to
R_FOREIGN_CA_SECRET = "ForeignCASecret"  # the job's CA Secret name is taken by a Secret it does not own

# Role -> status.replicaStatuses key (peers of a decentralized job are its workers).
# Keyed by role name: pod labels carry the plain string (Role is a str enum, so its members match too).
STATUS_KEY: dict[str, str] = {role: role.spec_key for role in Role}
