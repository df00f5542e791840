"""The role templates' pod fields: what Garfield owns, how a user's security context merges with
the operator's safe defaults, and which user values weaken those defaults.

Pure and framework-free: validation (`garfield validate`, the webhook, the operator's own check)
and the operator's rendering share it, so what validation accepts is what the operator renders.

The rule for security contexts: the user's values are merged on top of the defaults below
(`capabilities.drop` keeps `ALL` whatever the user adds to it). A value that gives the replica more
than those defaults, or than the image's non-root user (see :func:`weakenings`), is refused unless
the same template sets `allowWeakerSecurityContext: true`; then it is accepted with a warning
(printed by `garfield validate` and `garfield run`, posted by the operator as a Warning event
when it creates the job's pods).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from garfield.spec.contract import TLS_MOUNT_PATH, TLS_VOLUME

# The container securityContext every replica gets: a training node needs no privilege.
CONTAINER_SECURITY_DEFAULTS: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}

# Template keys a Kubernetes user might write that Garfield sets itself, and why.
OWNED_FIELDS: dict[str, str] = {
    "command": "the container command (python -m garfield node, configured by the replica contract)",
    "args": "the container command (python -m garfield node, configured by the replica contract)",
    "ports": "the container ports (grpc 50051, metrics 9090), which the job's headless service and peers address",
    "restartPolicy": "the pod restart policy (Never: the operator recreates failed pods itself and counts them "
                     "against f; spec.runPolicy.restartPolicy says whether it does)",
    "hostname": "the pod hostname and subdomain, which give each replica its stable DNS name",
    "subdomain": "the pod hostname and subdomain, which give each replica its stable DNS name",
    "setHostnameAsFQDN": "the pod hostname and subdomain, which give each replica its stable DNS name",
    "ownerReferences": "the owner references (the job owns its pods, which go with it)",
    "name": "the pod and container names (<job>-<role>-<index>)",
    "containers": "the replica's container (one, running the Garfield node); set its image with spec.image "
                  "and the rest with the template's own fields",
    "image": "the container image (set it with spec.image)",
    "readinessProbe": "the readiness probe (the node's /status endpoint)",
    "enableServiceLinks": "the service environment variables (off: the replica contract is the whole environment)",
    "terminationMessagePath": "the termination message (the node's final status, read by the operator)",
}

# Keys of a Kubernetes PodTemplateSpec that the flat template spells differently.
FLAT_HINTS: dict[str, str] = {
    "metadata": "the template is flat: pod labels and annotations go in template.labels and template.annotations",
    "spec": "the template is flat: pod fields go directly under template (template.volumes, not template.spec.volumes)",
    "volumeClaimTemplates": "claims are not made per replica: create a PersistentVolumeClaim and list it in "
                            "template.volumes",
}

# Labels and annotations the operator sets and selects pods by.
RESERVED_LABELS = frozenset({"app.kubernetes.io/managed-by"})
RESERVED_PREFIX = "garfield.dev"

# Template fields only a pod has: `garfield run` starts processes and ignores them.
CLUSTER_ONLY_FIELDS = ("volumes", "volumeMounts", "envFrom", "serviceAccountName", "imagePullSecrets", "affinity",
                       "priorityClassName", "schedulerName", "labels", "annotations", "podSecurityContext",
                       "securityContext", "imagePullPolicy")

_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def owned_field_message(path: str, key: str) -> str | None:
    """The message for template key `key` at `path` (…template) when Garfield owns it or the flat
    template spells it differently; None for any other key. The schema declares these keys (the
    apiserver would prune them silently otherwise), so this is what refuses them."""
    if key in OWNED_FIELDS:
        return f"{path}.{key}: Garfield owns {OWNED_FIELDS[key]}; a template cannot set it"
    if key in FLAT_HINTS:
        return f"{path}.{key}: {FLAT_HINTS[key]}"
    return None


def _reserved(key: str) -> bool:
    prefix = key.split("/", 1)[0] if "/" in key else ""
    return key in RESERVED_LABELS or prefix == RESERVED_PREFIX or prefix.endswith("." + RESERVED_PREFIX)


def _key_problem(key: str) -> str | None:
    """Why `key` is not a Kubernetes label or annotation key (an optional DNS-subdomain prefix and a name)."""
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.match(prefix)):
        return "its prefix must be a DNS subdomain (lower-case letters, digits, '-' and '.')"
    if not name or len(name) > 63 or not _LABEL_NAME.match(name):
        return "its name must be 1 to 63 letters, digits, '-', '_' or '.', beginning and ending with a letter or digit"
    return None


def _metadata_rules(path: str, kind: str, values: dict[str, str], errors: list[str]) -> None:
    for key, value in values.items():
        where = f"{path}[{key}]"
        problem = _key_problem(key)
        if problem:
            errors.append(f"{where}: {key!r} is not a valid {kind} key: {problem}")
        elif _reserved(key):
            errors.append(f"{where}: Garfield sets the {RESERVED_PREFIX}/ {kind}s (and app.kubernetes.io/managed-by) "
                          "on every replica and selects its pods by them; a template cannot set them")
        if kind == "label" and (len(value) > 63 or (value and not _LABEL_NAME.match(value))):
            errors.append(f"{where}: {value!r} is not a valid label value (at most 63 letters, digits, '-', '_' or '.', "
                          "beginning and ending with a letter or digit)")


def _inside(path: str, folder: str) -> bool:
    path, folder = path.rstrip("/"), folder.rstrip("/")
    return path == folder or path.startswith(folder + "/")


def _volume_rules(path: str, template: dict[str, Any], errors: list[str]) -> None:
    names: set[str] = set()
    for i, volume in enumerate(template.get("volumes", [])):
        name = volume.get("name", "")
        where = f"{path}.volumes[{i}].name"
        if name == TLS_VOLUME:
            errors.append(f"{where}: {name} is the volume Garfield mounts the replica's own TLS key from; "
                          "choose another name")
        elif not _DNS_LABEL.match(name) or len(name) > 63:
            errors.append(f"{where}: {name!r} must be a DNS label (lower-case letters, digits and '-', at most 63)")
        elif name in names:
            errors.append(f"{where}: {name} is listed twice")
        names.add(name)
    paths: set[str] = set()
    for i, mount in enumerate(template.get("volumeMounts", [])):
        name, mount_path = mount.get("name", ""), mount.get("mountPath", "")
        where = f"{path}.volumeMounts[{i}]"
        if name == TLS_VOLUME:
            errors.append(f"{where}.name: {name} is the volume of the replica's own TLS key, which only Garfield mounts")
        elif name not in names:
            errors.append(f"{where}.name: {name!r} names no volume of {path}.volumes")
        if _inside(mount_path, TLS_MOUNT_PATH):
            errors.append(f"{where}.mountPath: {TLS_MOUNT_PATH} is where Garfield mounts the replica's own key; "
                          "mount elsewhere")
        elif not mount_path.startswith("/"):
            errors.append(f"{where}.mountPath: {mount_path!r} must be an absolute path")
        elif mount_path.rstrip("/") in paths:
            errors.append(f"{where}.mountPath: {mount_path} is mounted twice")
        paths.add(mount_path.rstrip("/"))


def weakenings(template: dict[str, Any]) -> list[tuple[str, Any]]:
    """(field under the template, value) of every security setting that gives a replica more than
    Garfield's defaults or the image's non-root user: a privileged container, privilege escalation,
    added capabilities, no seccomp profile, an unmasked /proc, running as root (runAsUser: 0 or
    runAsNonRoot: false, in either context), and a hostPath volume (the node's own files)."""
    out: list[tuple[str, Any]] = []
    container = template.get("securityContext") or {}
    pod = template.get("podSecurityContext") or {}
    if container.get("privileged") is True:
        out.append(("securityContext.privileged", True))
    if container.get("allowPrivilegeEscalation") is True:
        out.append(("securityContext.allowPrivilegeEscalation", True))
    added = (container.get("capabilities") or {}).get("add") or []
    if added:
        out.append(("securityContext.capabilities.add", added))
    if (container.get("seccompProfile") or {}).get("type") == "Unconfined":
        out.append(("securityContext.seccompProfile.type", "Unconfined"))
    if container.get("procMount") == "Unmasked":
        out.append(("securityContext.procMount", "Unmasked"))
    for name, context in (("podSecurityContext", pod), ("securityContext", container)):
        if context.get("runAsUser") == 0:
            out.append((f"{name}.runAsUser", 0))
        if context.get("runAsNonRoot") is False:
            out.append((f"{name}.runAsNonRoot", False))
    for i, volume in enumerate(template.get("volumes") or []):
        if "hostPath" in volume:  # the node's own files: what Pod Security's baseline forbids
            out.append((f"volumes[{i}].hostPath", (volume.get("hostPath") or {}).get("path", "")))
    return out


def weakening_messages(path: str, template: dict[str, Any]) -> list[str]:
    """One message per weakening of template `path`: errors unless it sets allowWeakerSecurityContext,
    else the warnings validation returns and the operator posts as events."""
    allowed = template.get("allowWeakerSecurityContext") is True
    out = []
    for field, value in weakenings(template):
        shown = str(value).lower() if isinstance(value, bool) else value
        if allowed:
            out.append(f"{path}.{field}: {shown} weakens Garfield's default security context "
                       f"(asked for by {path}.allowWeakerSecurityContext)")
        else:
            out.append(f"{path}.{field}: {shown} weakens Garfield's default security context (a replica needs no "
                       f"privilege); set {path}.allowWeakerSecurityContext: true to ask for it")
    return out


def _security_rules(path: str, template: dict[str, Any], errors: list[str], warnings: list[str]) -> None:
    messages = weakening_messages(path, template)
    (warnings if template.get("allowWeakerSecurityContext") is True else errors).extend(messages)


def template_rules(path: str, template: dict[str, Any], errors: list[str], warnings: list[str]) -> None:
    """Every rule on one role's (structurally valid) template at `path` (spec.workers.template)."""
    errors += [message for key in template if (message := owned_field_message(path, key))]
    _metadata_rules(f"{path}.labels", "label", template.get("labels", {}), errors)
    _metadata_rules(f"{path}.annotations", "annotation", template.get("annotations", {}), errors)
    _volume_rules(path, template, errors)
    _security_rules(path, template, errors, warnings)


def container_security_context(user: dict[str, Any]) -> dict[str, Any]:
    """Garfield's defaults with the user's container securityContext on top. `capabilities.drop`
    always keeps ALL (a user who needs a capability adds it); a privileged container (which the
    user asked for) loses the default allowPrivilegeEscalation: false, which Kubernetes refuses
    beside privileged: true, unless the user set it."""
    out = copy.deepcopy(CONTAINER_SECURITY_DEFAULTS)
    for key, value in user.items():
        if key == "capabilities" and isinstance(value, dict):
            drop = list(out["capabilities"]["drop"])
            drop += [c for c in value.get("drop") or [] if c not in drop]
            caps: dict[str, Any] = {"drop": drop}
            if value.get("add"):
                caps["add"] = list(value["add"])
            out["capabilities"] = caps
        else:
            out[key] = copy.deepcopy(value)
    if out.get("privileged") is True and "allowPrivilegeEscalation" not in user:
        del out["allowPrivilegeEscalation"]
    return out


def cluster_only(template: dict[str, Any]) -> list[str]:
    """The template's fields that only a pod has (what `garfield run` ignores)."""
    return [key for key in CLUSTER_ONLY_FIELDS if template.get(key)]
