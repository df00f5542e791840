"""The replica contract round trip: the plan writes each replica's environment, `garfield node`
reads it back (`read_env`) into the same NodeConfig, and a damaged variable is a clear error
naming it, before any training starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from garfield.node import NodeConfigError, read_env
from garfield.plan import ClusterDNS, make_plan
from garfield.plan.replicas import SimulatedAttack
from garfield.security import files
from garfield.security.certificates import issue, new_ca
from garfield.spec.contract import ENV_ATTACK, ENV_TLS_DIR
from garfield.spec.kinds import Role
from garfield.spec.validation import validate_manifest

from support import manifests

JOB = validate_manifest(manifests.job("envs", workers=5, worker_f=1,
                                      attack={"workers": {"count": 1, "name": "signflip", "params": {"scale": 4}}}))
PLAN = make_plan(JOB, ClusterDNS(namespace="ml"))


@pytest.fixture(scope="module")
def tls_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each replica's TLS folder, as its Secret mounts it: issued by one CA for the job."""
    root = tmp_path_factory.mktemp("tls")
    ca = new_ca(JOB.name, JOB.namespace)
    dirs = {}
    for replica in PLAN.replicas:
        assert replica.identity is not None
        dirs[replica.name] = root / replica.name
        files.write(dirs[replica.name], ca, issue(ca, replica.identity, replica.dns_names))
    return dirs


def test_every_replica_reads_back_what_the_plan_wrote(tls_dirs: dict[str, Path]) -> None:
    for replica in PLAN.replicas:
        assert replica.env[ENV_TLS_DIR] == "/var/run/secrets/garfield.dev/tls"  # where its Secret is mounted
        config = read_env({**replica.env, ENV_TLS_DIR: str(tls_dirs[replica.name])})
        assert (config.job, config.role, config.index) == ("envs", replica.role, replica.index)
        assert config.attack == replica.attack
        assert config.spec == JOB.spec
        assert config.identity == replica.identity and config.tls is not None
    attackers = [r for r in PLAN.replicas if r.attack is not None]
    assert [(r.role, r.index) for r in attackers] == [(Role.WORKER, 4)]
    assert attackers[0].attack == SimulatedAttack("signflip", {"scale": 4})


@pytest.mark.parametrize("value, says", [
    ("{not json", "GARFIELD_ATTACK not JSON"),
    ('["signflip"]', 'GARFIELD_ATTACK must be {"name": "<attack>", "params": {...}}'),
    ('{"params": {}}', 'GARFIELD_ATTACK must be'),
    ('{"name": 3}', 'GARFIELD_ATTACK must be'),
    ('{"name": "signflip", "params": [1]}', 'GARFIELD_ATTACK must be'),
    ('{"name": "signflip", "count": 2}', 'GARFIELD_ATTACK must be'),
])
def test_a_damaged_attack_variable_is_refused_naming_it(value: str, says: str) -> None:
    env = {**PLAN.replicas[-1].env, ENV_ATTACK: value, ENV_TLS_DIR: ""}
    with pytest.raises(NodeConfigError) as info:
        read_env(env)
    assert str(info.value).startswith(says), str(info.value)


def test_params_may_be_left_out() -> None:
    assert SimulatedAttack.from_env('{"name": "crash"}') == SimulatedAttack("crash", {})
    assert SimulatedAttack.from_env(SimulatedAttack("drop", {"p": 0.5}).to_env()) == SimulatedAttack("drop", {"p": 0.5})


@pytest.mark.parametrize("variable, value, says", [
    ("GARFIELD_ROLE", "leader", "GARFIELD_ROLE='leader'; expected one of server, worker, peer"),
    ("GARFIELD_INDEX", "two", "GARFIELD_INDEX='two' is not an integer"),
    ("GARFIELD_INDEX", "9", "GARFIELD_INDEX=9 but 5 worker addresses are listed"),
    ("GARFIELD_SPEC", "{", "GARFIELD_SPEC is not JSON"),
    ("GARFIELD_METRICS_PORT", "http", "GARFIELD_METRICS_PORT='http' is not a port number"),
    ("GARFIELD_LISTEN", "", "GARFIELD_LISTEN is not set"),
])
def test_every_other_variable_names_itself_when_wrong(variable: str, value: str, says: str) -> None:
    env = {**PLAN.replicas[-1].env, ENV_TLS_DIR: "", variable: value}
    with pytest.raises(NodeConfigError) as info:
        read_env(env)
    assert str(info.value).startswith(says), str(info.value)


def test_a_replica_handed_another_replicas_certificate_does_not_start(tls_dirs: dict[str, Path]) -> None:
    worker0, worker1 = PLAN.by_role(Role.WORKER)[:2]
    with pytest.raises(NodeConfigError) as info:
        read_env({**worker0.env, ENV_TLS_DIR: str(tls_dirs[worker1.name])})
    assert str(info.value) == (f"GARFIELD_TLS_DIR: {tls_dirs[worker1.name]}/tls.crt is garfield://default/envs/worker/1, "
                               "not envs's worker-0")


@pytest.mark.parametrize("damage, says", [
    (lambda d: (d / "tls.key").unlink(), "cannot read {d}/tls.key: No such file or directory"),
    (lambda d: (d / "tls.crt").write_bytes((d / "tls.crt").read_bytes()[:40]), "{d}/tls.crt is not a PEM CERTIFICATE"),
    (lambda d: (d / "ca.crt").write_bytes(b""), "{d}/ca.crt is not a PEM CERTIFICATE"),
    (lambda d: (d / "tls.key").write_bytes(b"x" * 70_000), "{d}/tls.key is over 65536 bytes"),
])
def test_a_damaged_tls_folder_is_refused_naming_the_file(tls_dirs: dict[str, Path], tmp_path: Path, damage, says) -> None:
    replica = PLAN.replicas[0]
    folder = tmp_path / "tls"
    folder.mkdir()
    for name in ("ca.crt", "tls.crt", "tls.key"):
        (folder / name).write_bytes((tls_dirs[replica.name] / name).read_bytes())
    damage(folder)
    with pytest.raises(NodeConfigError) as info:
        read_env({**replica.env, ENV_TLS_DIR: str(folder)})
    assert str(info.value).startswith("GARFIELD_TLS_DIR: " + says.format(d=folder)), str(info.value)
