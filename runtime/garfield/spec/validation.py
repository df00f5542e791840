"""The one place that decides whether a job is valid.

The CLI, the local launcher and the operator all call :func:`load_job` / :func:`validate_manifest`.
First the CRD's own schema (field types and bounds, what `kubectl apply` enforces), then the
cross-field rules a Kubernetes 1.20 schema cannot express: each aggregation rule's resilience
condition on the replies it actually aggregates (n - f, because in an asynchronous network a node
can wait for no more), rule and attack parameters against their catalog declarations (the very
check `aggregate()` and the attack constructors make), attack counts within the declared f,
topology consistency. Every message names the field, the value and the rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from garfield.aggregators.catalog import RULES
from garfield.aggregators.preaggregation import check_chain, describe
from garfield.attacks.catalog import BY_SIDE, AttackSide
from garfield.spec import podtemplate, schema
from garfield.spec.contract import REPLICA_CONTRACT
from garfield.spec.documents import DocumentError, non_finite_errors, parse, read_text, walk
from garfield.spec.kinds import Role, Topology
from garfield.spec.model import JobSpec, RoleSpec, derive_topology, from_dict
from garfield.spec.structural import check

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# Pod names are '<job>-<role>-<index>' and must fit a DNS label (63); 'server-1023' is 11 + dash.
MAX_JOB_NAME = 63 - len("-server-1023")


class InvalidJob(ValueError):
    """A manifest that must not run; `errors` holds one message per violated rule."""

    def __init__(self, errors: list[str], source: str = "") -> None:
        self.errors = errors
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__(head + "invalid ByzantineTrainingJob:\n  " + "\n  ".join(errors))


@dataclass
class Job:
    """A validated job: its name, namespace and typed spec, plus non-fatal warnings."""

    name: str
    namespace: str
    spec: JobSpec
    manifest: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def _role_rules(path: str, role: RoleSpec, what: Role, errors: list[str], warnings: list[str]) -> None:
    n, f = role.replicas, role.byzantine
    if f >= n:
        errors.append(f"{path}.byzantine: f={f} leaves no correct {what}; it must be below replicas={n}")
        return
    q = role.quorum
    name = role.gar.name
    if name not in RULES:
        return  # the structural check already reported the unknown name
    rule = RULES[name]
    cond = rule.condition
    rows, rule_f, inputs = q, f, f"the {q} replies it aggregates"
    if role.gar.pre:
        chain = check_chain(role.gar.pre, q, f, f"{path}.gar.preAggregation")
        if chain.errors:
            errors.extend(chain.errors)
            return
        rows, rule_f = chain.n, chain.f
        inputs = f"the {rows} vectors {describe(chain.stages)} makes of the {q} replies"
    if not cond.holds(rows, rule_f):
        least = f"at least {cond.min_n(f) + f} {what}s" if rows == q else f"more {what}s or smaller buckets"
        errors.append(
            f"{path}: {name} needs {cond.text()} on {inputs} (n={n}, f={f}); with f={f} that takes {least}"
        )
    if not rule.robust and f > 0:
        warnings.append(f"{path}.gar: {name} is not Byzantine-resilient; one bad reply among f={f} can move it anywhere")
    # The same check aggregate() makes on every call, so a bad value fails here, not on the nodes.
    values, problems = rule.check(role.gar.params, f"{path}.gar.params")
    if not problems:
        problems = rule.check_sizes(values, rows, rule_f, f"on {inputs}, f={rule_f}", f"{path}.gar.params")
    errors.extend(problems)


def _cross_field(spec: JobSpec, errors: list[str], warnings: list[str]) -> None:
    topo = spec.topology
    _role_rules("spec.workers", spec.workers, topo.worker_role, errors, warnings)
    servers = spec.servers
    if topo is Topology.DECENTRALIZED:
        if servers is not None:
            errors.append("spec.servers: a decentralized job has no servers; every worker is also a server")
        if spec.server_attack is not None:
            errors.append("spec.attack.servers: a decentralized job has no servers to attack with")
    elif servers is None:
        errors.append(f"spec.servers: required for topology {topo}")
    else:
        if topo is Topology.SSMW and servers.replicas != 1:
            errors.append(f"spec.servers.replicas: ssmw has exactly one server, not {servers.replicas} (use msmw)")
        elif topo is Topology.SSMW and servers.byzantine:
            errors.append(f"spec.servers.byzantine: ssmw has one server, which must be correct (f=0, not {servers.byzantine}); "
                          "use msmw to tolerate Byzantine servers")
        elif topo is Topology.MSMW and servers.replicas < 2:
            errors.append("spec.servers.replicas: msmw replicates the server; it needs at least 2 (use ssmw for one)")
        else:
            _role_rules("spec.servers", servers, Role.SERVER, errors, warnings)
    for side, attack, role, what in (
        (AttackSide.WORKER, spec.worker_attack, spec.workers, f"{topo.worker_role}s"),
        (AttackSide.SERVER, spec.server_attack, servers, "servers"),
    ):
        if attack is None:
            continue
        path = side.spec_path
        declared = BY_SIDE[side].get(attack.name)
        if declared is not None:  # else the structural check already reported the unknown name
            errors.extend(declared.check(attack.params, path=f"{path}.params")[1])
        if role is None:
            continue
        if attack.count > role.byzantine:
            errors.append(
                f"{path}.count: {attack.count} Byzantine {what} exceed the f={role.byzantine} the job tolerates "
                f"(spec.{side}s.byzantine)"
            )


def _checkpoint_rules(spec: JobSpec, errors: list[str], warnings: list[str]) -> None:
    """spec.checkpoint against the topology, the run's length and where results go."""
    every = spec.checkpoint.every_steps
    if every <= 0:
        return
    if spec.topology is Topology.DECENTRALIZED:
        errors.append(f"spec.checkpoint.everySteps: {every}, but a decentralized job has no servers to checkpoint "
                      "(peers are not checkpointed); set it to 0 or remove spec.checkpoint")
        return
    if every >= spec.training.steps:
        warnings.append(f"spec.checkpoint.everySteps: {every} >= spec.training.steps={spec.training.steps}; no "
                        "checkpoint is written before the end (the final model is exported anyway)")
    if spec.output_path is None:
        warnings.append("spec.checkpoint: without spec.output.path, checkpoints go to garfield run's run folder only; "
                        "on a cluster the servers write none (set spec.output.path to a folder on a volume)")


def _contract_rules(spec: JobSpec, errors: list[str]) -> None:
    """A template may add variables, never set the replica contract's (garfield.spec.contract)."""
    for path, role in (("spec.servers", spec.servers), ("spec.workers", spec.workers)):
        for i, var in enumerate(role.template.env if role is not None else []):
            if var.get("name") in REPLICA_CONTRACT:
                errors.append(f"{path}.template.env[{i}].name: {var['name']} is set by Garfield on every replica "
                              "(the replica contract: role, index, spec, peers); a template cannot set it")


def _template_rules(normalised: dict[str, Any], errors: list[str], warnings: list[str]) -> None:
    """The pod-template rules (garfield.spec.podtemplate): the fields, labels, TLS volume and mount
    path that are Garfield's, and the security context's defaults."""
    for key in ("servers", "workers"):
        template = (normalised.get(key) or {}).get("template")
        if template:
            podtemplate.template_rules(f"spec.{key}.template", template, errors, warnings)


def validate_manifest(manifest: Any, source: str = "") -> Job:
    """Validate a parsed manifest; return the normalised job or raise InvalidJob with every error."""
    errors: list[str] = []
    warnings: list[str] = []
    if not isinstance(manifest, dict):
        raise InvalidJob([f"the document must be a mapping (a Kubernetes object), not {type(manifest).__name__}"], source)
    unsafe, non_finite = walk(manifest)  # before anything else walks it: a bomb stops here
    if unsafe:
        raise InvalidJob(unsafe, source)
    api, kind = manifest.get("apiVersion"), manifest.get("kind")
    if api != schema.API_VERSION:
        errors.append(f"apiVersion: {api!r} must be {schema.API_VERSION}")
    if kind != schema.KIND:
        errors.append(f"kind: {kind!r} must be {schema.KIND}")
    metadata = manifest.get("metadata") or {}
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        errors.append("metadata.name: required field is missing")
    elif len(name) > MAX_JOB_NAME or not _NAME.match(name):
        errors.append(
            f"metadata.name: {name!r} must be a DNS label of lower-case letters, digits and '-', "
            f"at most {MAX_JOB_NAME} characters (pod names add '-server-<index>')"
        )
    body = {k: v for k, v in manifest.items() if k != "status"}
    normalised = check(body, schema.job_schema(), "", errors)
    errors = [e[1:] if e.startswith(".") else e for e in errors]
    if errors:
        raise InvalidJob(errors + non_finite_errors(non_finite, errors), source)
    spec = from_dict(normalised["spec"])
    _cross_field(spec, errors, warnings)
    _contract_rules(spec, errors)
    _template_rules(normalised["spec"], errors, warnings)
    _checkpoint_rules(spec, errors, warnings)
    errors += non_finite_errors(non_finite, errors)
    if errors:
        raise InvalidJob(errors, source)
    normalised["spec"] = spec.to_dict()
    namespace = metadata.get("namespace", "default")
    assert isinstance(name, str)  # else metadata.name's error was raised above
    return Job(name=name, namespace=namespace, spec=spec, manifest=normalised, warnings=warnings)


def load_job(path: str | Path) -> Job:
    """Read one manifest file (YAML or JSON) and validate it."""
    source = str(path)
    try:
        docs = parse(read_text(path))
    except OSError as exc:
        raise InvalidJob([f"cannot read the file: {exc.strerror or exc}"], source) from None
    except DocumentError as exc:
        raise InvalidJob([str(exc)], source) from None
    if len(docs) != 1:
        raise InvalidJob([f"expected one ByzantineTrainingJob document, found {len(docs)}"], source)
    return validate_manifest(docs[0], source)


__all__ = ["InvalidJob", "Job", "load_job", "validate_manifest", "derive_topology"]
