"""The validation module: every example passes, and each kind of bad manifest fails with its own message."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from garfield.spec.kinds import Role, Topology
from garfield.spec.validation import InvalidJob, load_job, validate_manifest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def base() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "examples" / "mnist-msmw.yaml").read_text())


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def mutate(m: dict) -> None:
        *parents, leaf = path.split(".")
        node = m
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return mutate


def _delete(path: str) -> Callable[[dict], None]:
    def mutate(m: dict) -> None:
        *parents, leaf = path.split(".")
        node = m
        for key in parents:
            node = node[key]
        del node[leaf]
    return mutate


def _all(*mutations: Callable[[dict], None]) -> Callable[[dict], None]:
    def mutate(m: dict) -> None:
        for f in mutations:
            f(m)
    return mutate


# (id, mutation, exact substring the error must contain)
BAD: list[tuple[str, Callable[[dict], None], str]] = [
    ("missing-task", _delete("spec.task"), "spec.task: required field is missing"),
    ("missing-workers", _delete("spec.workers"), "spec.workers: required field is missing"),
    ("missing-entrypoint", _delete("spec.task.entrypoint"), "spec.task.entrypoint: required field is missing"),
    ("replicas-string", _set("spec.workers.replicas", "seven"), "spec.workers.replicas: 'seven' must be an integer"),
    ("negative-replicas", _set("spec.workers.replicas", -1), "spec.workers.replicas: -1 is below the minimum 1"),
    ("negative-byzantine", _set("spec.servers.byzantine", -2), "spec.servers.byzantine: -2 is below the minimum 0"),
    ("unknown-gar", _set("spec.workers.gar.name", "mediane"), "spec.workers.gar.name: 'mediane' is not one of"),
    ("unknown-field", _set("spec.workers.replica", 3), "spec.workers.replica: unknown field"),
    ("bad-framework", _set("spec.framework", "jax"), "spec.framework: 'jax' is not one of pytorch, tensorflow"),
    ("bad-entrypoint", _set("spec.task.entrypoint", "garfield.tasks.mnist"),
     "spec.task.entrypoint: 'garfield.tasks.mnist' does not match"),
    ("krum-too-few", _set("spec.workers.gar.name", "krum"),
     "spec.workers: krum needs n >= 2f+3 on the 5 replies it aggregates (n=7, f=2)"),
    ("bulyan-too-few", _all(_set("spec.workers.gar.name", "bulyan"), _set("spec.workers.replicas", 10)),
     "spec.workers: bulyan needs n >= 4f+3 on the 8 replies it aggregates (n=10, f=2)"),
    ("median-servers-too-few", _set("spec.servers.replicas", 2),
     "spec.servers: median needs n >= 2f+1 on the 1 replies it aggregates (n=2, f=1)"),
    ("f-equals-n", _set("spec.workers.byzantine", 7), "spec.workers.byzantine: f=7 leaves no correct worker"),
    ("attack-exceeds-f", _set("spec.attack.workers.count", 3),
     "spec.attack.workers.count: 3 Byzantine workers exceed the f=2 the job tolerates"),
    ("server-attack-exceeds-f", _set("spec.attack.servers.count", 2),
     "spec.attack.servers.count: 2 Byzantine servers exceed the f=1 the job tolerates"),
    ("unknown-attack", _set("spec.attack.workers.name", "ddos"), "spec.attack.workers.name: 'ddos' is not one of"),
    ("ssmw-byzantine-server", _all(_set("spec.topology", "ssmw"), _set("spec.servers.replicas", 1)),
     "spec.servers.byzantine: ssmw has one server, which must be correct (f=0, not 1)"),
    ("ssmw-many-servers", _set("spec.topology", "ssmw"), "spec.servers.replicas: ssmw has exactly one server, not 4"),
    ("msmw-one-server", _all(_set("spec.topology", "msmw"), _set("spec.servers.replicas", 1), _set("spec.servers.byzantine", 0),
                             _delete("spec.attack.servers")),
     "spec.servers.replicas: msmw replicates the server; it needs at least 2"),
    ("decentralized-with-servers", _set("spec.topology", "decentralized"),
     "spec.servers: a decentralized job has no servers"),
    ("bad-api-version", _set("apiVersion", "garfield.dev/v1"), "apiVersion: 'garfield.dev/v1' must be garfield.dev/v1alpha1"),
    ("bad-kind", _set("kind", "TrainingJob"), "kind: 'TrainingJob' must be ByzantineTrainingJob"),
    ("missing-name", _delete("metadata.name"), "metadata.name: required field is missing"),
    ("bad-name", _set("metadata.name", "MNIST_job"), "metadata.name: 'MNIST_job' must be a DNS label"),
    ("steps-zero", _set("spec.training.steps", 0), "spec.training.steps: 0 is below the minimum 1"),
    ("momentum-one", _set("spec.training.workerMomentum", 1.0), "spec.training.workerMomentum: 1.0 is above the maximum 0.999"),
    ("bad-quantity", _set("spec.workers.template", {"resources": {"limits": {"memory": "lots"}}}),
     "spec.workers.template.resources.limits.memory: 'lots' is not a valid quantity"),
    ("unknown-gar-param", _set("spec.workers.gar.params", {"tolerance": 1}),
     "spec.workers.gar.params.tolerance: mda has no parameter 'tolerance'"),
    ("unknown-attack-param", _set("spec.attack.workers.params", {"scael": 10}),
     "spec.attack.workers.params.scael: signflip has no parameter 'scael' (parameters: scale)"),
    ("bad-clean-policy", _set("spec.runPolicy", {"cleanPodPolicy": "Some"}),
     "spec.runPolicy.cleanPodPolicy: 'Some' is not one of"),
    ("env-without-name", _set("spec.workers.template", {"env": [{"value": "1"}]}),
     "spec.workers.template.env[0].name: required field is missing"),
    ("smea-too-many-subsets", _all(_set("spec.workers.gar.name", "smea"), _set("spec.workers.replicas", 40),
                                   _set("spec.workers.byzantine", 12)),
     "spec.workers.gar: smea searches all C(n, f) = 30,421,755 subsets, more than 50,000: use fewer replies or a "
     "smaller f (on the 28 replies it aggregates, f=12)"),
    # pre-aggregation: the stage's own condition, then the rule's on what the chain hands on
    ("unknown-stage", _set("spec.workers.gar.preAggregation", [{"name": "mixing"}]),
     "spec.workers.gar.preAggregation[0].name: 'mixing' is not one of arc, bucketing, clipping, nnm"),
    ("stage-without-name", _set("spec.workers.gar.preAggregation", [{"params": {}}]),
     "spec.workers.gar.preAggregation[0].name: required field is missing"),
    ("too-many-stages", _set("spec.workers.gar.preAggregation", [{"name": "arc"}] * 9),
     "spec.workers.gar.preAggregation: 9 items, more than the maximum 8"),
    ("stage-condition", _all(_set("spec.workers.byzantine", 2), _set("spec.workers.replicas", 5),
                             _set("spec.attack.workers.count", 1), _set("spec.workers.gar.name", "average"),
                             _set("spec.workers.gar.preAggregation", [{"name": "nnm"}])),
     "spec.workers.gar.preAggregation[0]: nnm needs n >= 2f+1 on the 3 vectors it gets (f=2)"),
    ("rule-after-bucketing", _set("spec.workers.gar.preAggregation", [{"name": "bucketing"}]),
     "spec.workers: mda needs n >= 2f+1 on the 3 vectors bucketing(s=2) makes of the 5 replies (n=7, f=2); "
     "with f=2 that takes more workers or smaller buckets"),
    ("stage-param", _set("spec.workers.gar.preAggregation", [{"name": "clipping", "params": {"threshold": 0}}]),
     "spec.workers.gar.preAggregation[0].params.threshold: clipping needs threshold > 0, got 0"),
    # spec.checkpoint
    ("checkpoint-negative", _set("spec.checkpoint", {"everySteps": -1}),
     "spec.checkpoint.everySteps: -1 is below the minimum 0"),
    ("checkpoint-keep-zero", _set("spec.checkpoint", {"everySteps": 10, "keep": 0}),
     "spec.checkpoint.keep: 0 is below the minimum 1"),
    ("checkpoint-unknown", _set("spec.checkpoint", {"every": 10}), "spec.checkpoint.every: unknown field"),
    ("checkpoint-decentralized", _all(_delete("spec.servers"), _delete("spec.attack.servers"),
                                      _set("spec.checkpoint", {"everySteps": 10})),
     "spec.checkpoint.everySteps: 10, but a decentralized job has no servers to checkpoint (peers are not "
     "checkpointed); set it to 0 or remove spec.checkpoint"),
]


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_is_valid(path: Path) -> None:
    job = load_job(path)
    assert job.name == yaml.safe_load(path.read_text())["metadata"]["name"]


@pytest.mark.parametrize("mutate,message", [(m, msg) for _, m, msg in BAD], ids=[i for i, _, _ in BAD])
def test_bad_manifest_is_rejected_with_its_message(mutate: Callable[[dict], None], message: str) -> None:
    manifest = base()
    mutate(manifest)
    with pytest.raises(InvalidJob) as info:
        validate_manifest(manifest, "bad.yaml")
    assert any(message in e for e in info.value.errors), info.value.errors


def test_messages_are_distinct() -> None:
    """Each bad manifest is reported for its own reason, not a generic one."""
    seen = set()
    for _, mutate, _ in BAD:
        manifest = base()
        mutate(manifest)
        with pytest.raises(InvalidJob) as info:
            validate_manifest(manifest)
        seen.add(tuple(info.value.errors))
    assert len(seen) == len(BAD)


def test_all_errors_reported_at_once() -> None:
    manifest = base()
    manifest["spec"]["workers"]["replicas"] = -1
    manifest["spec"]["framework"] = "jax"
    with pytest.raises(InvalidJob) as info:
        validate_manifest(manifest)
    assert len(info.value.errors) == 2


def test_defaults_are_filled_and_topology_derived() -> None:
    manifest = base()
    del manifest["spec"]["training"]
    job = validate_manifest(manifest)
    assert job.spec.topology == "msmw"
    assert job.spec.training.steps == 1000 and job.spec.training.worker_momentum == 0.9
    assert job.spec.run_policy.clean_pod_policy == "Running"
    assert job.spec.to_dict()["topology"] == "msmw"
    assert job.spec.workers.quorum == 5 and job.spec.servers is not None and job.spec.servers.quorum == 3


def test_a_pre_aggregation_chain_is_read_into_the_spec() -> None:
    m = base()
    m["spec"]["workers"]["gar"] = {"name": "median", "preAggregation": [{"name": "nnm"}, {"name": "bucketing",
                                                                                      "params": {"s": 1}}]}
    job = validate_manifest(m)
    gar = job.spec.workers.gar
    assert [s.name for s in gar.pre] == ["nnm", "bucketing"] and gar.pre[1].params == {"s": 1}
    assert gar.label == "nnm -> bucketing(s=1) -> median"
    assert job.spec.to_dict()["workers"]["gar"]["preAggregation"][0] == {"name": "nnm"}


def test_checkpoints_are_off_by_default_and_read_into_the_spec() -> None:
    job = validate_manifest(base())
    assert not job.spec.checkpoint.enabled and job.spec.checkpoint.keep == 3
    assert job.spec.to_dict()["checkpoint"] == {"everySteps": 0, "keep": 3}
    m = base()
    m["spec"]["checkpoint"] = {"everySteps": 50}
    m["spec"]["output"] = {"path": "/results"}
    job = validate_manifest(m)
    assert job.spec.checkpoint.every_steps == 50 and job.spec.checkpoint.keep == 3 and job.warnings == []


def test_checkpoint_warnings_name_what_is_missing() -> None:
    m = base()
    m["spec"]["checkpoint"] = {"everySteps": 600}
    warnings = validate_manifest(m).warnings
    assert ("spec.checkpoint.everySteps: 600 >= spec.training.steps=600; no checkpoint is written before the end "
            "(the final model is exported anyway)") in warnings
    assert ("spec.checkpoint: without spec.output.path, checkpoints go to garfield run's run folder only; on a "
            "cluster the servers write none (set spec.output.path to a folder on a volume)") in warnings


def test_averaging_is_allowed_with_a_warning() -> None:
    manifest = base()
    manifest["spec"]["workers"]["gar"]["name"] = "average"
    job = validate_manifest(manifest)
    assert any("average is not Byzantine-resilient" in w for w in job.warnings)


def test_unreadable_and_non_yaml_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidJob, match="cannot read the file"):
        load_job(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec: [unclosed")
    with pytest.raises(InvalidJob, match="not valid YAML"):
        load_job(bad)
    two = tmp_path / "two.yaml"
    two.write_text(yaml.safe_dump(base()) + "---\n" + yaml.safe_dump(base()))
    with pytest.raises(InvalidJob, match="expected one ByzantineTrainingJob document, found 2"):
        load_job(two)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(InvalidJob, match="must be a mapping"):
        load_job(scalar)


def test_input_manifest_is_not_modified() -> None:
    manifest = base()
    before = copy.deepcopy(manifest)
    validate_manifest(manifest)
    assert manifest == before


def test_the_worker_side_role_of_each_topology_is_the_role_spec_workers_sizes() -> None:
    assert {t: t.worker_role for t in Topology} == {Topology.SSMW: Role.WORKER, Topology.MSMW: Role.WORKER,
                                                    Topology.DECENTRALIZED: Role.PEER}
    assert all(t.worker_role in t.roles and t.worker_role.spec_key == "workers" for t in Topology)
