"""The fuller pod template, job-model side: the schema takes every new field, validation refuses
each override of what Garfield owns with a message naming the field, security contexts that
weaken the defaults need allowWeakerSecurityContext, and the plan hands the fields to every replica
of the role (the operator renders them: tests/operator/test_pod_template_rendering.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from garfield.launcher.local import local_warnings
from garfield.plan import ClusterDNS, make_plan
from garfield.spec.contract import TLS_MOUNT_PATH, TLS_VOLUME
from garfield.spec.podtemplate import container_security_context, weakenings
from garfield.spec.validation import InvalidJob, validate_manifest

from support.manifests import full_template, job


def _with(template: dict[str, Any], role: str = "workers") -> dict[str, Any]:
    body = job()
    body["spec"][role]["template"] = template
    return body


def _errors(template: dict[str, Any], role: str = "workers") -> list[str]:
    with pytest.raises(InvalidJob) as info:
        validate_manifest(_with(template, role))
    return info.value.errors


def test_every_new_field_is_accepted_and_reaches_every_replica_of_its_role() -> None:
    template = full_template()
    valid = validate_manifest(_with(copy.deepcopy(template)))
    assert valid.warnings == []
    # Unknown fields inside a volume (its source) are kept, as the apiserver keeps them.
    assert valid.manifest["spec"]["workers"]["template"] == template
    pod = valid.spec.workers.template.pod
    assert pod.volumes == template["volumes"] and pod.volume_mounts == template["volumeMounts"]
    assert pod.env_from == template["envFrom"] and pod.service_account_name == "trainer"
    assert pod.image_pull_secrets == [{"name": "registry"}] and pod.image_pull_policy == "IfNotPresent"
    assert pod.affinity == template["affinity"] and pod.priority_class_name == "garfield-test"
    assert pod.scheduler_name == "volcano" and pod.labels == template["labels"]
    assert pod.annotations == template["annotations"]
    assert pod.pod_security_context == template["podSecurityContext"]
    assert pod.security_context == template["securityContext"]
    plan = make_plan(valid, ClusterDNS("default"))
    for replica in plan.replicas:
        if str(replica.role) == "worker":
            assert replica.pod == pod and replica.to_dict()["pod"] == {
                k: v for k, v in template.items() if k != "resources"}
        else:
            assert "pod" not in replica.to_dict()  # the server's template sets none of them


def test_a_job_without_the_new_fields_plans_as_before() -> None:
    plan = make_plan(validate_manifest(job()), ClusterDNS("default"))
    assert all("pod" not in r.to_dict() for r in plan.replicas)
    assert "template" not in validate_manifest(job()).manifest["spec"]["workers"]  # nothing defaulted in


@pytest.mark.parametrize("key, value, says", [
    ("command", ["sh"], "Garfield owns the container command"),
    ("args", ["--x"], "Garfield owns the container command"),
    ("ports", [{"containerPort": 80}], "Garfield owns the container ports"),
    ("restartPolicy", "Always", "Garfield owns the pod restart policy"),
    ("hostname", "h", "Garfield owns the pod hostname and subdomain"),
    ("subdomain", "s", "Garfield owns the pod hostname and subdomain"),
    ("ownerReferences", [], "Garfield owns the owner references"),
    ("containers", [], "Garfield owns the replica's container"),
    ("image", "x", "set it with spec.image"),
    ("name", "x", "Garfield owns the pod and container names"),
    ("readinessProbe", {}, "Garfield owns the readiness probe"),
    ("metadata", {"labels": {}}, "pod labels and annotations go in template.labels"),
    ("spec", {"volumes": []}, "template.volumes, not template.spec.volumes"),
])
@pytest.mark.parametrize("role", ["workers", "servers"])
def test_an_operator_owned_field_is_refused_naming_it(key: str, value: Any, says: str, role: str) -> None:
    (error,) = _errors({key: value}, role)
    assert error.startswith(f"spec.{role}.template.{key}: ") and says in error, error
    assert "unknown field" not in error


def test_other_unknown_template_fields_stay_unknown() -> None:
    (error,) = _errors({"hostNetwork": True})
    assert error.startswith("spec.workers.template.hostNetwork: unknown field (known fields: affinity,")


@pytest.mark.parametrize("template, field, says", [
    ({"labels": {"garfield.dev/role": "server"}}, "labels[garfield.dev/role]", "Garfield sets the garfield.dev/ labels"),
    ({"labels": {"garfield.dev/job-name": "x"}}, "labels[garfield.dev/job-name]", "selects its pods by them"),
    ({"labels": {"app.kubernetes.io/managed-by": "me"}}, "labels[app.kubernetes.io/managed-by]", "Garfield sets"),
    ({"labels": {"x.garfield.dev/a": "b"}}, "labels[x.garfield.dev/a]", "Garfield sets"),
    ({"annotations": {"garfield.dev/spec-hash": "0"}}, "annotations[garfield.dev/spec-hash]", "Garfield sets"),
    ({"labels": {"team": "not valid!"}}, "labels[team]", "is not a valid label value"),
    ({"labels": {"Bad_Prefix/x": "y"}}, "labels[Bad_Prefix/x]", "prefix must be a DNS subdomain"),
    ({"annotations": {"-x": "y"}}, "annotations[-x]", "is not a valid annotation key"),
    ({"volumes": [{"name": TLS_VOLUME, "emptyDir": {}}]}, "volumes[0].name",
     "garfield-tls is the volume Garfield mounts the replica's own TLS key from"),
    ({"volumes": [{"name": "Data", "emptyDir": {}}]}, "volumes[0].name", "must be a DNS label"),
    ({"volumes": [{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}]}, "volumes[1].name", "listed twice"),
    ({"volumes": [{"name": "a", "emptyDir": {}}], "volumeMounts": [{"name": "a", "mountPath": TLS_MOUNT_PATH}]},
     "volumeMounts[0].mountPath", f"{TLS_MOUNT_PATH} is where Garfield mounts the replica's own key"),
    ({"volumes": [{"name": "a", "emptyDir": {}}], "volumeMounts": [{"name": "a", "mountPath": TLS_MOUNT_PATH + "/x/"}]},
     "volumeMounts[0].mountPath", "is where Garfield mounts the replica's own key"),
    ({"volumeMounts": [{"name": TLS_VOLUME, "mountPath": "/keys"}]}, "volumeMounts[0].name", "which only Garfield mounts"),
    ({"volumeMounts": [{"name": "nope", "mountPath": "/data"}]}, "volumeMounts[0].name", "names no volume of"),
    ({"volumes": [{"name": "a", "emptyDir": {}}], "volumeMounts": [{"name": "a", "mountPath": "data"}]},
     "volumeMounts[0].mountPath", "must be an absolute path"),
    ({"volumes": [{"name": "a", "emptyDir": {}}],
      "volumeMounts": [{"name": "a", "mountPath": "/d"}, {"name": "a", "mountPath": "/d/"}]},
     "volumeMounts[1].mountPath", "mounted twice"),
])
def test_a_collision_with_what_garfield_sets_is_refused_naming_the_field(template: dict[str, Any], field: str,
                                                                         says: str) -> None:
    (error,) = _errors(template)
    assert error.startswith(f"spec.workers.template.{field}: ") and says in error, error


@pytest.mark.parametrize("template, field, message", [
    ({"volumes": [{"emptyDir": {}}]}, "volumes[0].name", "required field is missing"),
    ({"volumeMounts": [{"name": "a"}]}, "volumeMounts[0].mountPath", "required field is missing"),
    ({"volumeMounts": [{"name": "a", "mountPath": "/a", "recursiveReadOnly": "x"}]}, "volumeMounts[0].recursiveReadOnly",
     "unknown field"),
    ({"imagePullPolicy": "Sometimes"}, "imagePullPolicy", "is not one of Always, IfNotPresent, Never"),
    ({"serviceAccountName": "Not_A_Name"}, "serviceAccountName", "does not match"),
    ({"envFrom": [{"secretRef": {}}]}, "envFrom[0].secretRef.name", "required field is missing"),
    ({"imagePullSecrets": ["registry"]}, "imagePullSecrets[0]", "must be an object"),
    ({"affinity": []}, "affinity", "must be an object"),
    ({"labels": {"a": 1}}, "labels.a", "must be a string"),
    ({"allowWeakerSecurityContext": "yes"}, "allowWeakerSecurityContext", "must be true or false"),
])
def test_the_schema_checks_the_new_fields(template: dict[str, Any], field: str, message: str) -> None:
    errors = _errors(template)
    assert any(e.startswith(f"spec.workers.template.{field}: ") and message in e for e in errors), errors


WEAKER = [
    ({"securityContext": {"privileged": True}}, "securityContext.privileged: true"),
    ({"securityContext": {"allowPrivilegeEscalation": True}}, "securityContext.allowPrivilegeEscalation: true"),
    ({"securityContext": {"capabilities": {"add": ["NET_ADMIN"]}}}, "securityContext.capabilities.add: ['NET_ADMIN']"),
    ({"securityContext": {"seccompProfile": {"type": "Unconfined"}}}, "securityContext.seccompProfile.type: Unconfined"),
    ({"securityContext": {"procMount": "Unmasked"}}, "securityContext.procMount: Unmasked"),
    ({"securityContext": {"runAsUser": 0}}, "securityContext.runAsUser: 0"),
    ({"securityContext": {"runAsNonRoot": False}}, "securityContext.runAsNonRoot: false"),
    ({"podSecurityContext": {"runAsUser": 0}}, "podSecurityContext.runAsUser: 0"),
    ({"podSecurityContext": {"runAsNonRoot": False}}, "podSecurityContext.runAsNonRoot: false"),
    ({"volumes": [{"name": "host", "hostPath": {"path": "/var/lib"}}]}, "volumes[0].hostPath: /var/lib"),
]


@pytest.mark.parametrize("template, says", WEAKER)
def test_weakening_the_security_context_needs_asking_for_it(template: dict[str, Any], says: str) -> None:
    (error,) = _errors(template)
    assert error.startswith(f"spec.workers.template.{says} weakens Garfield's default security context"), error
    assert "set spec.workers.template.allowWeakerSecurityContext: true" in error
    asked = validate_manifest(_with(dict(template, allowWeakerSecurityContext=True)))
    (warning,) = asked.warnings
    assert warning.startswith(f"spec.workers.template.{says} weakens") and "asked for by" in warning


@pytest.mark.parametrize("context", [
    {"readOnlyRootFilesystem": True}, {"runAsUser": 1000, "runAsNonRoot": True}, {"privileged": False},
    {"allowPrivilegeEscalation": False}, {"capabilities": {"drop": ["NET_RAW"]}},
    {"seccompProfile": {"type": "Localhost", "localhostProfile": "train.json"}}, {"seLinuxOptions": {"level": "s0:c1"}},
])
def test_values_that_keep_or_strengthen_the_defaults_need_nothing(context: dict[str, Any]) -> None:
    assert weakenings({"securityContext": context}) == []
    assert validate_manifest(_with({"securityContext": context, "podSecurityContext": {"fsGroup": 5}})).warnings == []


@pytest.mark.parametrize("user, merged", [
    ({}, {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}),
    ({"readOnlyRootFilesystem": True, "runAsUser": 1000},
     {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
      "readOnlyRootFilesystem": True, "runAsUser": 1000}),
    ({"capabilities": {"drop": ["NET_RAW", "ALL"], "add": ["NET_BIND_SERVICE"]}},
     {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL", "NET_RAW"], "add": ["NET_BIND_SERVICE"]},
      "seccompProfile": {"type": "RuntimeDefault"}}),
    ({"seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}},
     {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
      "seccompProfile": {"type": "Localhost", "localhostProfile": "p.json"}}),
    # Kubernetes refuses privileged: true beside allowPrivilegeEscalation: false: the default goes.
    ({"privileged": True}, {"capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
                            "privileged": True}),
    ({"allowPrivilegeEscalation": True},
     {"allowPrivilegeEscalation": True, "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}),
])
def test_the_container_security_context_merges_over_the_defaults(user: dict[str, Any], merged: dict[str, Any]) -> None:
    assert container_security_context(user) == merged


def test_garfield_run_says_which_pod_fields_it_ignores() -> None:
    valid = validate_manifest(_with(full_template()))
    (warning,) = local_warnings(valid)
    assert warning.startswith("spec.workers.template: garfield run starts processes, not pods, and ignores volumes, "
                              "volumeMounts, envFrom, serviceAccountName,")
    assert local_warnings(validate_manifest(job())) == []
    (simulated,) = local_warnings(valid, "garfield simulate runs the replicas in one process")
    assert simulated.startswith("spec.workers.template: garfield simulate runs the replicas in one process, not pods, "
                                "and ignores volumes, ")
