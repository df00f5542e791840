"""The environment contract between a job's plan and `garfield node`: the variables the plan sets
on every replica and the node reads (exactly these). They live with the job model, not the plan,
because validation must refuse a job whose `template.env` tries to set them, and the plan imports
the spec, not the other way round."""

from __future__ import annotations

ENV_JOB_NAME = "GARFIELD_JOB_NAME"
ENV_ROLE = "GARFIELD_ROLE"
ENV_INDEX = "GARFIELD_INDEX"
ENV_SPEC = "GARFIELD_SPEC"  # JSON of the normalised spec
ENV_LISTEN = "GARFIELD_LISTEN"  # host:port the node's gRPC server binds
ENV_METRICS_PORT = "GARFIELD_METRICS_PORT"
ENV_SERVERS = "GARFIELD_SERVERS"  # comma-separated host:port of every server (index order)
ENV_WORKERS = "GARFIELD_WORKERS"  # comma-separated host:port of every worker / peer (index order)
ENV_ATTACK = "GARFIELD_ATTACK"  # JSON {"name", "params"}; set only on replicas that simulate Byzantine behaviour
ENV_OUTPUT_DIR = "GARFIELD_OUTPUT_DIR"  # where correct servers (peers) write the final model (spec.output.path)
# The folder holding the replica's own TLS key and certificate and its job's CA (tls.key, tls.crt,
# ca.crt: a Kubernetes TLS Secret's keys); set when spec.security.mutualTLS is on.
ENV_TLS_DIR = "GARFIELD_TLS_DIR"

# What a user's template.env may not set: a replica told another role, index, spec or peer list
# by its own job would be a Byzantine node the job was not sized for.
REPLICA_CONTRACT: frozenset[str] = frozenset({
    ENV_JOB_NAME, ENV_ROLE, ENV_INDEX, ENV_SPEC, ENV_LISTEN, ENV_METRICS_PORT, ENV_SERVERS, ENV_WORKERS, ENV_ATTACK,
    ENV_OUTPUT_DIR, ENV_TLS_DIR,
})

# Where a pod finds its own TLS key, certificate and job CA (its Secret, mounted read-only), and the
# name of that volume: Garfield's, so a role template may neither mount something there nor reuse
# the name (garfield.spec.podtemplate). The local launcher points each process at its own folder.
TLS_MOUNT_PATH = "/var/run/secrets/garfield.dev/tls"
TLS_VOLUME = "garfield-tls"
