"""The replica contract round trip: the plan writes each replica's environment, `garfield node`
reads it back (`read_env`) into the same NodeConfig, and a damaged variable is a clear error
naming it, before any training starts."""

from __future__ import annotations

import pytest

from garfield.node import NodeConfigError, read_env
from garfield.plan import ClusterDNS, make_plan
from garfield.plan.replicas import SimulatedAttack
from garfield.spec.contract import ENV_ATTACK
from garfield.spec.kinds import Role
from garfield.spec.validation import validate_manifest

from support import manifests

JOB = validate_manifest(manifests.job("envs", workers=5, worker_f=1,
                                      attack={"workers": {"count": 1, "name": "signflip", "params": {"scale": 4}}}))
PLAN = make_plan(JOB, ClusterDNS(namespace="ml"))


def test_every_replica_reads_back_what_the_plan_wrote() -> None:
    for replica in PLAN.replicas:
        config = read_env(replica.env)
        assert (config.job, config.role, config.index) == ("envs", replica.role, replica.index)
        assert config.attack == replica.attack
        assert config.spec == JOB.spec
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
    env = {**PLAN.replicas[-1].env, ENV_ATTACK: value}
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
    env = {**PLAN.replicas[-1].env, variable: value}
    with pytest.raises(NodeConfigError) as info:
        read_env(env)
    assert str(info.value).startswith(says), str(info.value)
