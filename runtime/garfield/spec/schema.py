"""The one schema of a ByzantineTrainingJob, as the OpenAPI v3 document the CRD carries.

Everything that reads a job (the CRD the apiserver enforces, ``garfield validate``, the local
launcher, the operator) starts from this dict, so a field exists in exactly one place. The CRD
file under ``crds/`` and the Helm chart's copy are rendered from it (``garfield crd``) and a test
fails when they drift. Kubernetes 1.20 has no CEL, so the schema holds only per-field bounds;
cross-field rules (n >= 2f+3 ...) live in :mod:`garfield.spec.validation`.
"""

from __future__ import annotations

from typing import Any

from garfield.aggregators.catalog import RULES as GAR_RULES
from garfield.aggregators.preaggregation import STAGES as PRE_STAGES
from garfield.attacks.catalog import SERVER_ATTACKS, WORKER_ATTACKS
from garfield.spec.contract import TLS_MOUNT_PATH
from garfield.spec.model import MUTUAL_TLS_DEFAULT, CheckpointSpec
from garfield.spec.podtemplate import FLAT_HINTS, OWNED_FIELDS

GROUP = "garfield.dev"
VERSION = "v1alpha1"
KIND = "ByzantineTrainingJob"
PLURAL = "byzantinetrainingjobs"
SINGULAR = "byzantinetrainingjob"
SHORT_NAMES = ["btj"]
API_VERSION = f"{GROUP}/{VERSION}"

Schema = dict[str, Any]


def _obj(description: str, properties: dict[str, Schema], required: list[str] | None = None) -> Schema:
    schema: Schema = {"type": "object", "description": description, "properties": properties}
    if required:
        schema["required"] = required
    return schema


def _free(description: str) -> Schema:
    return {"type": "object", "description": description, "x-kubernetes-preserve-unknown-fields": True}


def _numeric(kind: str, description: str, minimum: float | None, maximum: float | None, default: float | None) -> Schema:
    schema: Schema = {"type": kind, "description": description}
    for key, value in (("minimum", minimum), ("maximum", maximum), ("default", default)):
        if value is not None:
            schema[key] = value
    return schema


def _int(description: str, minimum: int | None = None, maximum: int | None = None, default: int | None = None) -> Schema:
    return _numeric("integer", description, minimum, maximum, default)


def _num(description: str, minimum: float | None = None, maximum: float | None = None, default: float | None = None) -> Schema:
    return _numeric("number", description, minimum, maximum, default)


def _str(description: str, enum: list[str] | None = None, default: str | None = None, pattern: str | None = None) -> Schema:
    schema: Schema = {"type": "string", "description": description}
    if enum:
        schema["enum"] = enum
    if default is not None:
        schema["default"] = default
    if pattern is not None:
        schema["pattern"] = pattern
    return schema


_QUANTITY: Schema = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "x-kubernetes-int-or-string": True,
    # Kubernetes' resource.Quantity syntax: a signed decimal, then a binary or decimal SI suffix or an exponent.
    "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
               r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
}


def _resource_list(description: str) -> Schema:
    return {"type": "object", "description": description, "additionalProperties": dict(_QUANTITY)}


def _gar(default_name: str) -> Schema:
    return _obj(
        "The gradient aggregation rule (GAR) this role applies to the replies it waits for.",
        {
            "name": _str(
                "Rule name. Each rule has its own resilience condition on the n - f replies it aggregates "
                "(for example krum needs n >= 2f+3, bulyan n >= 4f+3, median and mda n >= 2f+1).",
                enum=sorted(GAR_RULES),
                default=default_name,
            ),
            "params": _free(
                "Rule parameters with the rule's defaults (for example m for multi-krum, tolerance for geometric-median)."),
            "preAggregation": {
                "type": "array",
                "description": "Pre-aggregation stages applied in order to the replies before the rule (for example "
                               "[{name: nnm}] or [{name: bucketing, params: {s: 2}}]). Each stage has its own condition "
                               "on the vectors it gets; bucketing hands on ceil(n/s) vectors, which the rule's condition "
                               "must then hold on.",
                "maxItems": 8,
                "items": _obj(
                    "One pre-aggregation stage.",
                    {
                        "name": _str("Stage name: nnm (nearest-neighbour mixing), bucketing, clipping (static) or arc "
                                     "(adaptive robust clipping).", enum=sorted(PRE_STAGES)),
                        "params": _free("Stage parameters (s and seed for bucketing, threshold for clipping)."),
                    },
                    required=["name"],
                ),
            },
        },
    )


_ENV_VAR: Schema = _obj(
    "An environment variable set in the replica's container.",
    {"name": _str("Variable name.", pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"), "value": _str("Variable value.")},
    required=["name"],
)


_DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


def _ref(kind: str) -> Schema:
    return _obj(f"A {kind} in the job's namespace.", {
        "name": _str(f"{kind} name.", pattern=_DNS_SUBDOMAIN),
        "optional": {"type": "boolean", "description": f"Start the pod even when the {kind} does not exist."},
    }, required=["name"])


def _owned() -> dict[str, Schema]:
    """Pod fields a template may not set, declared so that the apiserver keeps them (it prunes
    undeclared fields silently) and validation can refuse them by name, and so `kubectl explain`
    says whose they are."""
    fields: dict[str, Schema] = {}
    for key, why in OWNED_FIELDS.items():
        fields[key] = {"description": f"Not settable: Garfield owns {why}. Validation refuses it.",
                       "x-kubernetes-preserve-unknown-fields": True}
    for key, hint in FLAT_HINTS.items():
        fields[key] = {"description": f"Not a template field: {hint}. Validation refuses it.",
                       "x-kubernetes-preserve-unknown-fields": True}
    return fields


def _template(role: str) -> Schema:
    return _obj(
        f"What the {role} pods run with: resources (nvidia.com/gpu included), placement, environment, volumes, "
        "identity, scheduling, metadata and security context, as in a pod template. Garfield owns the container's "
        "command, ports and name, the restart policy, hostname and subdomain and the owner references; a template "
        "cannot set them.",
        {
            "resources": _obj(
                "Compute resources of the replica's container, as in a Pod. Requesting nvidia.com/gpu makes the runtime "
                "train and aggregate on the GPU.",
                {
                    "requests": _resource_list("Minimum resources, for example cpu: 500m, memory: 1Gi."),
                    "limits": _resource_list("Maximum resources, for example nvidia.com/gpu: 1."),
                },
            ),
            "nodeSelector": {
                "type": "object",
                "description": "Node labels the replica's pod must match.",
                "additionalProperties": {"type": "string"},
            },
            "tolerations": {
                "type": "array",
                "description": "Pod tolerations, as in a Pod spec.",
                "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
            "env": {"type": "array", "description": "Extra environment variables.", "items": _ENV_VAR},
            "envFrom": {
                "type": "array",
                "description": "Container environment variables from whole ConfigMaps or Secrets, as in a Container. "
                               "They cannot set the replica contract's GARFIELD_* variables: the operator lists every "
                               "one of them in env, which wins over envFrom. Ignored by garfield run.",
                "items": _obj(
                    "One ConfigMap or Secret whose keys become environment variables.",
                    {
                        "prefix": _str("Prefix added to each key's variable name.",
                                       pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"),
                        "configMapRef": _ref("ConfigMap"),
                        "secretRef": _ref("Secret"),
                    },
                ),
            },
            "volumes": {
                "type": "array",
                "description": "Pod volumes, as in a Pod spec (persistentVolumeClaim, configMap, secret, emptyDir, "
                               "nfs, csi, ...); the apiserver checks each volume source when it creates the pods. The "
                               "name garfield-tls is Garfield's (the replica's own TLS key); a hostPath volume needs "
                               "allowWeakerSecurityContext. Ignored by garfield run.",
                "maxItems": 64,
                "items": {
                    "type": "object",
                    "description": "One pod volume: a name and one volume source, as in a Pod spec.",
                    "required": ["name"],
                    "properties": {"name": _str("Volume name (a DNS label), referred to by volumeMounts.")},
                    "x-kubernetes-preserve-unknown-fields": True,
                },
            },
            "volumeMounts": {
                "type": "array",
                "description": "Where the replica's container mounts the template's volumes, as in a Container. "
                               f"{TLS_MOUNT_PATH} (and below) is where Garfield mounts the replica's own TLS key. "
                               "Ignored by garfield run.",
                "maxItems": 64,
                "items": _obj(
                    "One volume mount of the container.",
                    {
                        "name": _str("The name of one of template.volumes."),
                        "mountPath": _str("Absolute path in the container."),
                        "readOnly": {"type": "boolean", "description": "Mount read-only."},
                        "subPath": _str("Path within the volume to mount instead of its root."),
                        "subPathExpr": _str("Like subPath, expanding $(VAR) from the container's environment."),
                        "mountPropagation": _str("How mounts propagate between host and container.",
                                                 enum=["None", "HostToContainer", "Bidirectional"]),
                    },
                    required=["name", "mountPath"],
                ),
            },
            "serviceAccountName": _str("The pod's ServiceAccount (its credentials for the Kubernetes API, or a "
                                       "cloud identity bound to it); the namespace's default one when omitted.",
                                       pattern=_DNS_SUBDOMAIN),
            "imagePullSecrets": {
                "type": "array",
                "description": "Secrets (kubernetes.io/dockerconfigjson) the kubelet pulls the image with, as in a Pod spec.",
                "items": _obj("A Secret in the job's namespace.", {"name": _str("Secret name.", pattern=_DNS_SUBDOMAIN)},
                              required=["name"]),
            },
            "imagePullPolicy": _str("When the kubelet pulls the image, as in a Container: Always, IfNotPresent or "
                                    "Never (Kubernetes' default when omitted: Always for :latest, else IfNotPresent).",
                                    enum=["Always", "IfNotPresent", "Never"]),
            "affinity": _free("Pod affinity and anti-affinity and node affinity, as in a Pod spec (nodeAffinity, "
                              "podAffinity, podAntiAffinity), e.g. to spread a role's replicas over nodes or zones so "
                              "one machine's failure costs at most f."),
            "priorityClassName": _str("The pod's PriorityClass (it must exist).", pattern=_DNS_SUBDOMAIN),
            "schedulerName": _str("The scheduler that places the pods (e.g. volcano, or another gang scheduler); the "
                                  "default scheduler when omitted.", pattern=_DNS_SUBDOMAIN),
            "labels": {
                "type": "object",
                "description": "Labels added to the role's pods. garfield.dev/ keys and app.kubernetes.io/managed-by "
                               "are Garfield's (it selects its pods by them).",
                "additionalProperties": {"type": "string"},
            },
            "annotations": {
                "type": "object",
                "description": "Annotations added to the role's pods (garfield.dev/ keys are Garfield's).",
                "additionalProperties": {"type": "string"},
            },
            "podSecurityContext": _free(
                "Pod-level securityContext (PodSecurityContext: runAsUser, runAsGroup, fsGroup, supplementalGroups, "
                "seccompProfile, sysctls, ...), merged over Garfield's (fsGroup 10001 under mutual TLS, so the node "
                "reads its key; another fsGroup works as well). runAsUser: 0 or runAsNonRoot: false needs "
                "allowWeakerSecurityContext."),
            "securityContext": _free(
                "Container-level securityContext (SecurityContext), merged over Garfield's defaults "
                "(allowPrivilegeEscalation: false, capabilities.drop: [ALL], seccompProfile RuntimeDefault; "
                "capabilities.drop always keeps ALL). A value that weakens them (privileged: true, "
                "allowPrivilegeEscalation: true, capabilities.add, seccompProfile Unconfined, procMount Unmasked, "
                "runAsUser: 0, runAsNonRoot: false) needs allowWeakerSecurityContext; readOnlyRootFilesystem, "
                "runAsUser, SELinux and AppArmor options only strengthen or keep them."),
            "allowWeakerSecurityContext": {
                "type": "boolean",
                "description": "Accept securityContext or podSecurityContext values that weaken Garfield's defaults, "
                               "and hostPath volumes (validation otherwise refuses them); each is still reported as a "
                               "warning, and the "
                               "operator posts a Warning event when it creates the pods.",
            },
            **_owned(),
        },
    )


def _role(role: str, default_gar: str, description: str) -> Schema:
    return _obj(
        description,
        {
            "replicas": _int(f"Number of {role} replicas.", minimum=1, maximum=1024),
            "byzantine": _int(
                f"f: how many {role} replicas may be Byzantine (send anything, or nothing). The others wait for the "
                "first n - f replies, so f also bounds how many may crash.",
                minimum=0,
                default=0,
            ),
            "gar": _gar(default_gar),
            "template": _template(role),
        },
        required=["replicas"],
    )


def _attack(role: str, names: list[str]) -> Schema:
    return _obj(
        f"Byzantine behaviour given to some {role} replicas, for evaluation runs. They are real nodes that send real bad "
        "messages through the protocol.",
        {
            "count": _int(f"How many {role} replicas behave Byzantine (the highest indices). At most the role's byzantine.",
                          minimum=0, default=0),
            "name": _str("Attack name.", enum=names),
            "params": _free(
                "Attack parameters, with the attack's defaults (for example scale for signflip, epsilon for empire)."),
        },
        required=["name"],
    )


def spec_schema() -> Schema:
    return _obj(
        "What to train, on how many replicas, tolerating how many Byzantine ones.",
        {
            "framework": _str("The framework of the task's code.", enum=["pytorch", "tensorflow"], default="pytorch"),
            "output": _obj(
                "Where the job's results go. At the end each correct server (each correct peer, decentralized) writes "
                "its final model there in the framework's own format, in <path>/<role>-<index>/: model.pt (a PyTorch "
                "state_dict) or model.keras, beside model.json (job, step, accuracy, framework, parameter count, "
                "SHA-256). Simulated Byzantine replicas never write.",
                {"path": _str("Absolute folder inside the pods, on a volume they mount. garfield run writes to the "
                              "run folder's models/ unless a path is given.", pattern=r"^/.*$")},
            ),
            "checkpoint": _obj(
                "Periodic checkpoints of each correct server, to resume from after a crash or a restart of the job. "
                "Every everySteps steps each correct server writes its model, optimizer state (server-side momentum "
                "included), step and RNG state to <output>/<role>-<index>/checkpoints/ (an atomic write with a "
                "SHA-256 manifest) and keeps the last keep. A server that starts again resumes from its newest valid "
                "checkpoint and catches up with its peers; workers keep no checkpoint (their momentum restarts from "
                "zero). Needs spec.output.path on a cluster (garfield run writes to its run folder). Servers only: "
                "not available for decentralized jobs.",
                {
                    "everySteps": _int("Steps between two checkpoints of a server; 0 (the default) writes none.",
                                       minimum=0, default=CheckpointSpec.every_steps),
                    "keep": _int("How many of its newest checkpoints each server keeps.", minimum=1, maximum=100,
                                 default=CheckpointSpec.keep),
                },
            ),
            "security": _obj(
                "How the job's replicas authenticate each other.",
                {"mutualTLS": {"type": "boolean", "default": MUTUAL_TLS_DEFAULT, "description":
                               "Mutual TLS between every pair of replicas, with one key per replica: a per-job CA signs a "
                               "certificate naming each replica (DNS SAN of its stable name, URI SAN "
                               "garfield://<namespace>/<job>/<role>/<index>); each side checks the other's, and a request "
                               "is served only when its requester is the authenticated caller and its role may ask for "
                               "it. false: plaintext gRPC, for trusted networks and measurements only."}},
            ),
            "image": _str("Container image with Garfield and the task's code. Defaults to the operator's runtime image."),
            "task": _obj(
                "The user's own training code: an entry point that returns their model, loss, optimizer and data, unchanged.",
                {
                    "entrypoint": _str(
                        "Python entry point 'package.module:function'. The function returns a garfield.Task (or a mapping "
                        "with model, loss, optimizer, train and test).",
                        pattern=r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$",
                    ),
                    "args": _free("Keyword arguments passed to the entry point."),
                },
                required=["entrypoint"],
            ),
            "topology": _str(
                "ssmw (one server, many workers), msmw (replicated servers) or decentralized (every node is worker and "
                "server; set no servers). Derived from servers.replicas when omitted.",
                enum=["ssmw", "msmw", "decentralized"],
            ),
            "servers": _role("server", "median", "The parameter-server replicas. Each correct one aggregates worker gradients, "
                             "then the models of the other servers."),
            "workers": _role("worker", "mda", "The workers. Each pulls models from the servers, aggregates them, computes a "
                             "gradient on its own batch."),
            "training": _obj(
                "How long and how to train. Learning rate and batch size are handed to the task's optimizer and data.",
                {
                    "steps": _int("Number of model updates.", minimum=1, default=1000),
                    "batchSize": _int("Samples per worker per step.", minimum=1, default=32),
                    "learningRate": _num("When set, overrides the learning rate of the task's optimizer.", minimum=0),
                    "workerMomentum": _num(
                        "Momentum kept on each worker; workers send their momentum instead of the raw gradient, which makes "
                        "robust aggregation far harder to fool (El Mhamdi et al. 2021, Karimireddy et al. 2021). "
                        "0 sends raw gradients.",
                        minimum=0,
                        maximum=0.999,
                        default=0.9,
                    ),
                    "evaluationInterval": _int("Steps between test-set evaluations on the servers; 0 evaluates only at the end.",
                                               minimum=0, default=50),
                    "seed": _int("Seed of model initialisation and data order.", minimum=0, default=1),
                    "timeouts": _obj(
                        "Deadlines. Asynchrony means no step waits for a fixed time; these only bound single calls and start-up.",
                        {
                            "rpcSeconds": _num("Deadline of one call to a peer.", minimum=0.1, default=30),
                            "startupSeconds": _num("How long a node waits for its quorums to come up before failing.",
                                                   minimum=1, default=300),
                        },
                    ),
                },
            ),
            "attack": _obj(
                "Simulated Byzantine behaviour, for evaluation. Omit for production runs.",
                {
                    "workers": _attack("worker", sorted(WORKER_ATTACKS)),
                    "servers": _attack("server", sorted(SERVER_ATTACKS)),
                },
            ),
            "runPolicy": _obj(
                "What the operator does with pods across the job's life.",
                {
                    "backoffLimit": _int("Pod recreations allowed before the job fails.", minimum=0, default=3),
                    "activeDeadlineSeconds": _int("Seconds the job may run before it fails with DeadlineExceeded.", minimum=1),
                    "ttlSecondsAfterFinished": _int("Seconds after completion before the job is deleted.", minimum=0),
                    "cleanPodPolicy": _str(
                        "Which pods to delete when the job finishes: All, Running (still running ones) or None.",
                        enum=["All", "Running", "None"],
                        default="Running",
                    ),
                    "restartPolicy": _str("Recreate failed pods (OnFailure) or never (Never).", enum=["OnFailure", "Never"],
                                          default="OnFailure"),
                    "suspend": {"type": "boolean",
                                "description": "Deletes the job's pods while true; recreates them when false again.",
                                "default": False},
                },
            ),
        },
        required=["task", "workers"],
    )


def _condition() -> Schema:
    return _obj(
        "One observed aspect of the job.",
        {
            "type": _str("Condition type: Created, Running, Succeeded, Failed, Suspended, Restarting, Invalid, Degraded, "
                         "SpecChangeRejected."),
            "status": _str("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "reason": _str("Machine-readable reason in CamelCase."),
            "message": _str("Human-readable detail."),
            "lastTransitionTime": {"type": "string", "format": "date-time", "description": "When status last changed."},
        },
        required=["type", "status"],
    )


def _replica_status() -> Schema:
    return _obj(
        "Pod counts of one role.",
        {
            "active": _int("Pods pending or running."),
            "ready": _int("Pods running and ready."),
            "succeeded": _int("Pods that exited 0."),
            "failed": _int("Pods that failed (each failure counted once)."),
        },
    )


def status_schema() -> Schema:
    return _obj(
        "What the operator observed.",
        {
            "phase": _str("Pending, Running, Restarting, Suspended, Succeeded or Failed.",
                          enum=["Pending", "Running", "Restarting", "Suspended", "Succeeded", "Failed"]),
            "conditions": {"type": "array", "description": "Observed conditions, newest transition last.", "items": _condition()},
            "replicaStatuses": _obj(
                "Pod counts per role.",
                {"servers": _replica_status(), "workers": _replica_status()},
            ),
            "progress": _obj(
                "Training progress read from the correct servers.",
                {
                    "step": _int("Model updates done."),
                    "totalSteps": _int("spec.training.steps."),
                    "loss": _num("Latest training loss."),
                    "accuracy": _num("Latest test accuracy, 0 to 1."),
                    "stepsPerSecond": _num("Recent training speed."),
                    "rejectedMessages": _int("Messages rejected as malformed, oversized, stale or non-finite."),
                    "updateTime": {"type": "string", "format": "date-time", "description": "When progress was read."},
                },
            ),
            "restarts": _int("Pods recreated after failures, counted against runPolicy.backoffLimit."),
            "createdReplicas": {
                "type": "array",
                "description": "Replicas that have had a pod (names, as the operator saw their pods): a missing or "
                               "not yet running pod of one of them is a lost replica being replaced; any other replica "
                               "is not created yet (its create may have been refused) and is no failure.",
                "items": {"type": "string"},
            },
            "startTime": {"type": "string", "format": "date-time", "description": "When the job's pods were first created."},
            "completionTime": {"type": "string", "format": "date-time", "description": "When the job succeeded or failed."},
            "observedGeneration": _int("metadata.generation the status describes."),
            "models": {"type": "array", "description": "The final model of each correct server (peer) that wrote one "
                       "(spec.output.path), from its container's termination message once the job succeeded.",
                       "items": _obj("One exported model: load it with torch.load + load_state_dict, or with Keras.", {
                           "replica": _str("The server (peer) that wrote it."),
                           "path": _str("The model file inside the pods' filesystem (on the volume of spec.output.path)."),
                           "sha256": _str("Checksum of the model file (absent for a multi-file TensorFlow checkpoint)."),
                           "format": _str("The framework's format of the file."),
                           "step": _int("The training step the model is of."),
                           "accuracy": _num("Its test accuracy, 0 to 1."),
                       })},
            "appliedSpec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "description":
                            "The spec the job's pods run with. While the job has pods, edits apply to runPolicy only; "
                            "other changes are rejected (condition SpecChangeRejected) until the job is suspended "
                            "(it resumes with the spec as it is then) or the change is reverted."},
        },
    )


def job_schema() -> Schema:
    """The whole object's schema (what the CRD's openAPIV3Schema holds)."""
    return {
        "type": "object",
        "description": "A Byzantine-resilient distributed training job: replicated parameter servers and workers that train "
        "the user's model while up to f of each misbehave arbitrarily.",
        "properties": {
            "apiVersion": {"type": "string", "description": "garfield.dev/v1alpha1"},
            "kind": {"type": "string", "description": "ByzantineTrainingJob"},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": status_schema(),
        },
        "required": ["spec"],
    }


PRINTER_COLUMNS: list[Schema] = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Lifecycle phase."},
    {"name": "Step", "type": "integer", "jsonPath": ".status.progress.step", "description": "Model updates done."},
    {"name": "Accuracy", "type": "number", "jsonPath": ".status.progress.accuracy", "description": "Latest test accuracy."},
    {"name": "Servers", "type": "integer", "jsonPath": ".status.replicaStatuses.servers.ready", "description": "Ready servers."},
    {"name": "Workers", "type": "integer", "jsonPath": ".status.replicaStatuses.workers.ready", "description": "Ready workers."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def crd() -> Schema:
    """The CustomResourceDefinition, as applied to a cluster (apiextensions.k8s.io/v1, Kubernetes >= 1.20)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": ["all", "garfield"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": job_schema()},
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                }
            ],
        },
    }
