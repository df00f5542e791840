"""`garfield-operator` flags."""

from __future__ import annotations

import pytest

from garfield_operator.main import parse_args
from garfield_operator.settings import DEFAULT_IMAGE


def test_scope_is_required() -> None:
    with pytest.raises(SystemExit):
        parse_args([])
    with pytest.raises(SystemExit):
        parse_args(["--namespace", "a", "--all-namespaces"])


def test_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GARFIELD_RUNTIME_IMAGE", raising=False)
    c = parse_args(["-n", "a", "--namespace", "ml-*", "--standalone"])
    assert c.namespaces == ["a", "ml-*"] and c.standalone and not c.all_namespaces
    assert (c.liveness_port, c.metrics_port, c.runtime_image) == (8080, 9100, DEFAULT_IMAGE)
    monkeypatch.setenv("GARFIELD_RUNTIME_IMAGE", "env/image:1")
    assert parse_args(["-A"]).runtime_image == "env/image:1"
    c = parse_args(["-A", "--peering", "garfield", "--runtime-image", "flag/image:2", "--metrics-port", "0"])
    assert c.peering == "garfield" and c.runtime_image == "flag/image:2" and c.metrics_port == 0
    with pytest.raises(SystemExit):
        parse_args(["-A", "--standalone", "--peering", "x"])


def test_webhook_needs_certificate_and_key() -> None:
    with pytest.raises(SystemExit):
        parse_args(["-A", "--webhook-port", "9443"])
    c = parse_args(["-A", "--webhook-port", "9443", "--webhook-cert", "c.pem", "--webhook-key", "k.pem"])
    assert (c.webhook_port, c.webhook_cert, c.webhook_key) == (9443, "c.pem", "k.pem")


def test_network_policy_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert not parse_args(["-A"]).network_policies
    c = parse_args(["-A", "--network-policy", "--operator-pod-labels", "app=garfield, tier=operator",
                    "--metrics-from", '[{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]'])
    assert c.network_policies and c.operator_pod_labels == {"app": "garfield", "tier": "operator"}
    assert c.metrics_from == [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]
    for argv, says in [
        (["--network-policy"], "--network-policy needs --operator-pod-labels"),
        (["--operator-pod-labels", "app"], "--operator-pod-labels: 'app' is not KEY=VALUE"),
        (["--metrics-from", "{"], "--metrics-from is not JSON"),
        (["--metrics-from", '{"a": 1}'], "--metrics-from must be a JSON list of NetworkPolicyPeer objects"),
    ]:
        with pytest.raises(SystemExit):
            parse_args(["-A", *argv])
        assert says in capsys.readouterr().err
