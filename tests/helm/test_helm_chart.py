"""The chart without a cluster: lint, render, values schema, security and least-privilege RBAC.

Each test reads rendered manifests (helm template), so a template edit that drops a security
setting, widens a permission or breaks a value path fails here in about a second.
"""

from __future__ import annotations

import tarfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from helm_support import CHART, CI_VALUES, RELEASE_NAMESPACE, REPO, Helm, find

CI = {path.stem: path for path in CI_VALUES}
FULLNAME = "garfield"  # release "garfield" + chart "garfield" collapse to one name

# Everything the operator may touch. Anything else in a rendered (Cluster)Role fails the test.
ALLOWED_RULES: dict[tuple[str, str], set[str]] = {
    ("garfield.dev", "byzantinetrainingjobs"): {"get", "list", "watch", "delete"},
    ("garfield.dev", "byzantinetrainingjobs/status"): {"patch"},
    ("garfield.dev", "byzantinetrainingjobs/finalizers"): {"update"},
    ("", "pods"): {"list", "watch", "create", "delete"},
    ("", "services"): {"get", "list", "watch", "create"},
    ("", "events"): {"create"},
    ("", "secrets"): {"get", "create", "update"},  # mutual TLS: by name only, never list or watch
    ("networking.k8s.io", "networkpolicies"): {"get", "create"},
    ("kopf.dev", "kopfpeerings"): {"list", "watch", "patch"},
    ("kopf.dev", "clusterkopfpeerings"): {"list", "watch", "patch"},
}

# values.yaml leaves the ci/ files deliberately leave at their defaults, with the reason.
NOT_OVERRIDDEN = {
    "securityContext": "the hardened container defaults; a weaker setting would only test a worse pod",
    "podSecurityContext.runAsNonRoot": "hardened default (true); false is never a configuration to ship",
    "podSecurityContext.seccompProfile": "hardened default (RuntimeDefault)",
}


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted path -> value for every leaf of a values tree (lists and empty maps are leaves)."""
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_leaves(value, f"{prefix}.{key}" if prefix else key))
        return out
    return {prefix: tree}


def _deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = find(docs, "Deployment")
    return deployment


def _container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = _deployment(docs)["spec"]["template"]["spec"]["containers"]
    return container


def _rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for doc in docs if doc["kind"] in ("Role", "ClusterRole") for rule in doc["rules"]]


# ------------------------------------------------------------------------------- lint and render
@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=["defaults", *CI])
def test_lint_strict(helm: Helm, values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART), "--namespace", RELEASE_NAMESPACE]
    if values:
        args += ["--values", str(values)]
    out = helm.run(*args).stdout
    assert "1 chart(s) linted, 0 chart(s) failed" in out, out


def test_package_ships_crds_and_schema_but_not_ci_values(helm: Helm, tmp_path: Path) -> None:
    helm.run("package", str(CHART), "--destination", str(tmp_path))
    (archive,) = tmp_path.glob("garfield-*.tgz")
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
    assert {"garfield/crds/byzantinetrainingjobs.yaml", "garfield/crds/kopf-peerings.yaml",
            "garfield/values.schema.json", "garfield/templates/NOTES.txt"} <= names
    assert not [n for n in names if n.startswith("garfield/ci/")]


def test_default_render_is_minimal(render) -> None:
    kinds = sorted(doc["kind"] for doc in render())
    assert kinds == ["Deployment", "Role", "RoleBinding", "ServiceAccount"]
    for doc in render():
        assert doc["metadata"]["namespace"] == RELEASE_NAMESPACE, doc["metadata"]


def test_ci_render_has_every_optional_part(render) -> None:
    docs = render(CI["ci-values"])
    assert {d["metadata"]["namespace"] for d in find(docs, "Role")} == {"team-a", "team-b"}
    assert {d["metadata"]["namespace"] for d in find(docs, "KopfPeering", "garfield-peering")} == {"team-a", "team-b"}
    (service,) = find(docs, "Service", f"{FULLNAME}-metrics")
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 9300, "targetPort": "metrics", "protocol": "TCP"}]
    (monitor,) = find(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert {d["metadata"]["name"] for d in find(docs, "NetworkPolicy")} == {f"{FULLNAME}-job-pods", f"{FULLNAME}-operator"}


def test_ci_values_override_every_default() -> None:
    """Each leaf of values.yaml differs in at least one ci/ file, so every branch gets rendered."""
    defaults = _leaves(yaml.safe_load((CHART / "values.yaml").read_text()))
    overridden: set[str] = set()
    for path in CI_VALUES:
        for key, value in _leaves(yaml.safe_load(path.read_text())).items():
            if key not in defaults and not any(key.startswith(d + ".") for d in defaults):
                pytest.fail(f"{path.name}: {key} is not a value of the chart")
            overridden.update(d for d in defaults if (d == key or key.startswith(d + ".")) and defaults[d] != value)
    exempt = {d for d in defaults if any(d == e or d.startswith(e + ".") for e in NOT_OVERRIDDEN)}
    missing = sorted(set(defaults) - overridden - exempt)
    assert not missing, f"values never set to a non-default value in helm/garfield/ci/: {missing}"


def test_chart_requires_kubernetes_1_20(helm: Helm) -> None:
    helm.run("template", "garfield", str(CHART), "--kube-version", "1.20.0")
    too_old = helm.run("template", "garfield", str(CHART), "--kube-version", "1.19.16", check=False)
    assert too_old.returncode != 0 and "kubeVersion" in too_old.stderr, too_old.stderr


def test_chart_versions_match_the_project() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart["appVersion"] == project["version"]
    assert chart["kubeVersion"] == ">=1.20.0-0"


# ------------------------------------------------------------------------------- the operator pod
@pytest.mark.parametrize("name", ["defaults", *CI])
def test_operator_pod_is_hardened(render, name: str) -> None:
    docs = render(*([CI[name]] if name in CI else []))
    pod = _deployment(docs)["spec"]["template"]["spec"]
    container = _container(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] >= 10000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert set(container["resources"]["requests"]) == {"cpu", "memory"} == set(container["resources"]["limits"])
    health = next(p["containerPort"] for p in container["ports"] if p["name"] == "health")
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert f"--liveness-port={health}" in container["args"]
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], "read-only root fs needs a writable /tmp"
    assert _deployment(docs)["spec"]["replicas"] == 1 and _deployment(docs)["spec"]["strategy"] == {"type": "Recreate"}


def test_operator_arguments_follow_values(render) -> None:
    default = _container(render())
    assert default["command"] == ["garfield-operator"]
    assert default["image"] == "ghcr.io/garfield-dev/garfield:0.1.0"
    assert default["args"] == [
        f"--namespace={RELEASE_NAMESPACE}", "--standalone", "--liveness-port=8080", "--metrics-port=9100",
        "--runtime-image=ghcr.io/garfield-dev/garfield:0.1.0", "--network-policy",
        f"--operator-pod-labels=app.kubernetes.io/component=operator,app.kubernetes.io/instance={FULLNAME},"
        "app.kubernetes.io/name=garfield",
        "--metrics-from=[]",
    ]
    ci = _container(render(CI["ci-values"]))
    assert ci["image"].startswith("registry.example.com/ml/garfield@sha256:"), "digest wins over tag"
    assert ci["args"] == [
        "--namespace=team-a", "--namespace=team-b", "--peering=garfield-peering", "--liveness-port=8081",
        "--metrics-port=9200", "--runtime-image=registry.example.com/ml/garfield-tasks:1.2.3", "--verbose",
    ]
    cluster = _container(render(CI["all-namespaces-values"]))
    assert cluster["args"][:2] == ["--all-namespaces", f"--peering={FULLNAME}"]
    assert not any(a.startswith("--namespace") for a in cluster["args"])


# ------------------------------------------------------------------------------- RBAC
@pytest.mark.parametrize("name", ["defaults", *CI])
def test_rbac_is_least_privilege(render, name: str) -> None:
    docs = render(*([CI[name]] if name in CI else []))
    for rule in _rules(docs):
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                allowed = ALLOWED_RULES.get((group, resource))
                assert allowed is not None, f"{name}: the operator never touches {group or 'core'}/{resource}"
                assert set(rule["verbs"]) <= allowed, f"{name}: {resource}: {sorted(set(rule['verbs']) - allowed)} not needed"
        assert "nonResourceURLs" not in rule


def test_rbac_scope_follows_watch_mode(render) -> None:
    default = render()
    assert not find(default, "ClusterRole") and not find(default, "ClusterRoleBinding")
    (binding,) = find(default, "RoleBinding", namespace=RELEASE_NAMESPACE)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": RELEASE_NAMESPACE}]

    cluster = render(CI["all-namespaces-values"])
    assert not find(cluster, "Role") and not find(cluster, "RoleBinding")
    (role,) = find(cluster, "ClusterRole")
    (crb,) = find(cluster, "ClusterRoleBinding")
    assert crb["roleRef"]["name"] == role["metadata"]["name"]
    peering = [r for r in role["rules"] if r["apiGroups"] == ["kopf.dev"]]
    assert {res for r in peering for res in r["resources"]} == {"clusterkopfpeerings"}
    assert [d["metadata"]["name"] for d in find(cluster, "ClusterKopfPeering")] == [FULLNAME]

    external = render(CI["external-account-values"])
    assert not find(external, "ServiceAccount") and not _rules(external)
    assert _deployment(external)["spec"]["template"]["spec"]["serviceAccountName"] == "platform-garfield"


def test_peering_permissions_are_limited_to_the_own_peering(render) -> None:
    role = find(render(CI["ci-values"]), "Role", namespace="team-a")[0]
    writes = [r for r in role["rules"] if r["apiGroups"] == ["kopf.dev"] and "patch" in r["verbs"]]
    assert writes and all(r["resourceNames"] == ["garfield-peering"] for r in writes)


# ------------------------------------------------------------------------------- NetworkPolicy
def test_network_policies_isolate_job_pods(render) -> None:
    docs = render(CI["ci-values"])
    (jobs,) = find(docs, "NetworkPolicy", f"{FULLNAME}-job-pods")
    assert jobs["metadata"]["namespace"] == "team-a", "networkPolicy.namespaces overrides the watched list"
    job_pods = {"matchExpressions": [{"key": "garfield.dev/job-name", "operator": "Exists"}]}
    assert jobs["spec"]["podSelector"] == job_pods
    assert jobs["spec"]["policyTypes"] == ["Ingress", "Egress"]
    grpc, metrics = jobs["spec"]["ingress"]
    assert grpc == {"from": [{"podSelector": job_pods}], "ports": [{"protocol": "TCP", "port": 50052}]}
    operator_peer = metrics["from"][0]
    assert operator_peer["namespaceSelector"] == {"matchLabels": {"name": RELEASE_NAMESPACE}}
    assert operator_peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    assert metrics["ports"] == [{"protocol": "TCP", "port": 9091}]
    egress_ports = [p["port"] for rule in jobs["spec"]["egress"] for p in rule.get("ports", [])]
    assert egress_ports == [50052, 53, 53, 9000]

    (operator,) = find(docs, "NetworkPolicy", f"{FULLNAME}-operator")
    to_api, _dns, to_jobs = operator["spec"]["egress"]
    assert to_api == {"to": [{"ipBlock": {"cidr": "10.0.0.1/32"}}], "ports": [{"protocol": "TCP", "port": 443}]}
    assert [peer["namespaceSelector"]["matchLabels"]["name"] for peer in to_jobs["to"]] == ["team-a", "team-b"]
    assert operator["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 9200}]


def test_with_per_job_policies_the_namespace_policy_admits_no_grpc_between_jobs(render) -> None:
    """NetworkPolicies only add what they allow: the per-job policy admits gRPC from the same job,
    so the namespace-wide one must not admit it from every job pod."""
    docs = render(CI["all-namespaces-values"])
    for jobs in find(docs, "NetworkPolicy"):
        if jobs["metadata"]["name"] != f"{FULLNAME}-job-pods":
            continue
        (metrics,) = jobs["spec"]["ingress"]
        assert [p["port"] for p in metrics["ports"]] == [9090]
    role_rules = _rules(docs)
    assert {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"], "verbs": ["get", "create"]} in role_rules
    metrics_from = '[{"namespaceSelector":{"matchLabels":{"name":"monitoring"}}}]'
    args = _container(render(sets=["networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring"]))["args"]
    assert f"--metrics-from={metrics_from}" in args
    off = render(sets=["networkPolicy.perJob=false"])
    assert not any(a.startswith("--network-policy") for a in _container(off)["args"])
    assert not any("networkpolicies" in r["resources"] for r in _rules(off))


def test_network_policy_without_metrics_peers_denies_all_ingress_to_the_operator(render) -> None:
    docs = render(sets=["networkPolicy.enabled=true"])
    (operator,) = find(docs, "NetworkPolicy", f"{FULLNAME}-operator")
    assert operator["spec"]["ingress"] == []
    (jobs,) = find(docs, "NetworkPolicy", f"{FULLNAME}-job-pods")
    assert jobs["metadata"]["namespace"] == RELEASE_NAMESPACE


# ------------------------------------------------------------------------------- bad values
@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("image.pullPolicy=Sometimes", "image.pullPolicy"),
        ("metrics.port=70000", "metrics.port"),
        ("watch.namespaces[0]=Team_A", "watch.namespaces.0"),
        ("replicaCount=2", "replicaCount"),
        ("networkPolicy.apiServer.cidrs[0]=everywhere", "networkPolicy.apiServer.cidrs.0"),
        ("extraArgs[0]=verbose", "extraArgs.0"),
        ("image.digest=latest", "image.digest"),
        ("liveness.periodSeconds=0", "liveness.periodSeconds"),
    ],
)
def test_values_schema_rejects_bad_values(helm: Helm, setting: str, message: str) -> None:
    proc = helm.template(sets=[setting], check=False)
    assert proc.returncode != 0, f"--set {setting} rendered:\n{proc.stdout[:400]}"
    assert message in proc.stderr, proc.stderr


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["watch.allNamespaces=true", "watch.namespaces[0]=team-a"], "either watch.allNamespaces=true or watch.namespaces"),
        (["metrics.serviceMonitor.enabled=true"], "needs metrics.service.enabled=true"),
        (["watch.allNamespaces=true", "networkPolicy.enabled=true"], "networkPolicy.namespaces must list"),
        (["serviceAccount.create=false"], "serviceAccount.name must name an existing ServiceAccount"),
    ],
)
def test_inconsistent_values_fail_with_a_message(helm: Helm, sets: list[str], message: str) -> None:
    proc = helm.template(sets=sets, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr
