"""The job's CA and the replicas' certificates (garfield.security): what each certificate says,
who it verifies against, and the files a replica gets."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from garfield.proto import GRADIENT, MODEL, PROPOSAL
from garfield.protocol.authorization import may_request
from garfield.security import files
from garfield.security.certificates import KeyPair, issue, new_ca, uri_of
from garfield.security.identity import ReplicaIdentity
from garfield.spec.kinds import Role, Topology

WORKER3 = ReplicaIdentity("ml", "mnist", Role.WORKER, 3)


@pytest.fixture(scope="module")
def ca() -> KeyPair:
    return new_ca("mnist", "ml")


def test_a_replica_certificate_names_the_replica_and_is_signed_by_its_jobs_ca(ca) -> None:
    pair = issue(ca, WORKER3, ["mnist-worker-3", "mnist-worker-3.mnist.ml.svc", "mnist-worker-3"])
    cert = x509.load_pem_x509_certificate(pair.certificate)
    authority = x509.load_pem_x509_certificate(ca.certificate)
    cert.verify_directly_issued_by(authority)  # raises if not signed by the job's CA
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["mnist-worker-3", "mnist-worker-3.mnist.ml.svc"]  # once each
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["garfield://ml/mnist/worker/3"]
    assert uri_of(pair.certificate) == WORKER3.uri
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)


def test_every_certificate_has_its_own_key_and_another_jobs_ca_does_not_sign_it(ca) -> None:
    a, b = issue(ca, WORKER3, ["mnist-worker-3"]), issue(ca, WORKER3, ["mnist-worker-3"])
    assert a.key != b.key and a.certificate != b.certificate  # a recreated replica gets a fresh key
    other = x509.load_pem_x509_certificate(new_ca("mnist", "ml").certificate)
    with pytest.raises((ValueError, InvalidSignature)):
        x509.load_pem_x509_certificate(a.certificate).verify_directly_issued_by(other)
    authority = x509.load_pem_x509_certificate(ca.certificate)
    assert authority.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


@pytest.mark.parametrize("uri, identity", [
    ("garfield://ml/mnist/worker/3", WORKER3),
    ("garfield://default/j/server/0", ReplicaIdentity("default", "j", Role.SERVER, 0)),
    ("garfield://default/j/peer/12", ReplicaIdentity("default", "j", Role.PEER, 12)),
    ("garfield://default/j/leader/0", None),
    ("garfield://default/j/worker/-1", None),
    ("garfield://default/j/worker/3/extra", None),
    ("spiffe://default/j/worker/3", None),
    ("garfield://Default/j/worker/3", None),
    ("", None),
])
def test_identities_parse_only_from_their_exact_form(uri: str, identity: ReplicaIdentity | None) -> None:
    assert ReplicaIdentity.parse(uri) == identity
    if identity is not None:
        assert identity.uri == uri


def test_a_certificate_without_an_identity_has_no_uri(ca) -> None:
    assert uri_of(ca.certificate) is None
    assert uri_of(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n") is None


def test_a_replicas_folder_holds_its_own_key_privately_and_only_the_cas_certificate(ca, tmp_path: Path) -> None:
    folder = tmp_path / "worker-3"
    own = issue(ca, WORKER3, ["mnist-worker-3"])
    files.write(folder, ca, own)
    assert sorted(p.name for p in folder.iterdir()) == ["ca.crt", "tls.crt", "tls.key"]  # no partial left
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "tls.key").stat().st_mode) == 0o600
    assert (folder / "ca.crt").read_bytes() == ca.certificate and b"PRIVATE KEY" not in (folder / "ca.crt").read_bytes()
    material = files.load(folder)
    assert (material.ca, material.certificate, material.key) == (ca.certificate, own.certificate, own.key)


# (topology, role, kind) -> may ask: gradients and proposals only for the role that aggregates them
@pytest.mark.parametrize("topology, role, kind, allowed", [
    (Topology.SSMW, Role.SERVER, GRADIENT, True),
    (Topology.SSMW, Role.WORKER, GRADIENT, False),
    (Topology.MSMW, Role.SERVER, PROPOSAL, True),
    (Topology.MSMW, Role.WORKER, PROPOSAL, False),
    (Topology.MSMW, Role.WORKER, MODEL, True),
    (Topology.MSMW, Role.SERVER, MODEL, True),
    (Topology.DECENTRALIZED, Role.PEER, GRADIENT, True),
    (Topology.DECENTRALIZED, Role.PEER, PROPOSAL, True),
    (Topology.DECENTRALIZED, Role.PEER, MODEL, True),
    (Topology.MSMW, Role.SERVER, 99, False),  # an unknown kind: nobody
])
def test_who_may_ask_for_what(topology: Topology, role: Role, kind: int, allowed: bool) -> None:
    assert may_request(topology, role, kind) is allowed
