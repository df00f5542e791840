"""`garfield node`: one replica of a job, configured only by the GARFIELD_* environment contract.

Reads the variables listed in docs/design.md, builds the user's task and the framework adapter,
gives a Byzantine replica its attack (GARFIELD_ATTACK), serves /metrics and /status, runs its role
until spec.training.steps and exits 0 (1 when it fails, 2 when its configuration is unusable).

First thing, the node ties its life to its launcher's (GARFIELD_PARENT_PID: the kernel SIGKILLs it
when that parent dies, see garfield.launcher.lifeline); launchers therefore start nodes with no
pre-exec hook. Its "startup" and "first step" log lines time its start-up phases, so the seconds
between launch and the first step can be read from the logs (bench/startup.py does).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

from garfield.plan.replicas import NodeConfig, SimulatedAttack
from garfield.security.identity import ReplicaIdentity
from garfield.spec.contract import (
    ENV_ATTACK,
    ENV_INDEX,
    ENV_JOB_NAME,
    ENV_LISTEN,
    ENV_METRICS_PORT,
    ENV_OUTPUT_DIR,
    ENV_ROLE,
    ENV_SERVERS,
    ENV_SPEC,
    ENV_TLS_DIR,
    ENV_WORKERS,
)
from garfield.spec.kinds import Role
from garfield.spec.model import from_dict

if TYPE_CHECKING:  # build_node imports them, with the rest of the node, only when it runs
    from garfield.adapters.base import FrameworkAdapter
    from garfield.observability.state import NodeState
    from garfield.protocol.base import ProtocolNode
    from garfield.security.files import TlsMaterial

log = logging.getLogger("garfield.node")


class NodeConfigError(ValueError):
    """The environment does not describe a runnable replica."""


@dataclass
class StartupClock:
    """Wall-clock marks of this replica's start-up, logged as one "startup" line (and "first step"),
    so that where the seconds between launch and the first step go can be read from the logs."""

    process_start: float | None = None  # exec (fresh process) or fork (fork server) time
    forked: bool = False
    marks: dict[str, float] = field(default_factory=dict)
    cpu: float = 0.0

    @classmethod
    def begin(cls, env: Mapping[str, str]) -> "StartupClock":
        clock = cls()
        forked_at = env.get("GARFIELD_FORKED_AT", "")
        try:
            clock.process_start, clock.forked = float(forked_at), True
        except ValueError:
            clock.process_start = _process_start_time()
        clock.mark("main")
        return clock

    def mark(self, name: str) -> None:
        self.marks[name] = time.time()
        self.cpu = time.process_time()  # this process's CPU seconds so far (a fork starts at 0)

    def fields(self) -> dict[str, Any]:
        """Seconds of each phase (from the previous mark), the absolute times, and CPU seconds used."""
        out: dict[str, Any] = {"forked": self.forked, "process_start": self.process_start, "cpu_seconds": round(self.cpu, 3)}
        previous = self.process_start
        for name, at in self.marks.items():
            out[f"{name}_at"] = round(at, 3)
            if previous is not None:
                out[f"{name}_seconds"] = round(at - previous, 3)
            previous = at
        return out


def _process_start_time() -> float | None:
    """When the kernel started this process (exec'd interpreters: before any import ran)."""
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:  # pragma: no cover - psutil is a dependency; never fail a node over a log field
        return None


def _split(value: str) -> list[str]:
    return [a.strip() for a in value.split(",") if a.strip()]


def read_env(env: Mapping[str, str] | None = None) -> NodeConfig:
    """Parse the replica contract; raises NodeConfigError naming the variable at fault."""
    env = os.environ if env is None else env

    def need(name: str) -> str:
        value = env.get(name)
        if value is None or value == "":
            raise NodeConfigError(f"{name} is not set (garfield node is started by `garfield run` or the operator)")
        return value

    given_role, given_index, given_spec = need(ENV_ROLE), need(ENV_INDEX), need(ENV_SPEC)
    try:
        role = Role(given_role)
    except ValueError:
        raise NodeConfigError(f"{ENV_ROLE}={given_role!r}; expected one of {', '.join(Role)}") from None
    try:
        index = int(given_index)
    except ValueError:
        raise NodeConfigError(f"{ENV_INDEX}={given_index!r} is not an integer") from None
    try:
        spec = json.loads(given_spec)
    except json.JSONDecodeError as exc:
        raise NodeConfigError(f"{ENV_SPEC} is not JSON: {exc}") from None
    attack = None
    if env.get(ENV_ATTACK):
        try:
            attack = SimulatedAttack.from_env(env[ENV_ATTACK])
        except ValueError as exc:
            raise NodeConfigError(f"{ENV_ATTACK} {exc}") from None
    metrics = env.get(ENV_METRICS_PORT)
    try:
        metrics_port = int(metrics) if metrics else None
    except ValueError:
        raise NodeConfigError(f"{ENV_METRICS_PORT}={metrics!r} is not a port number") from None
    job, listen = need(ENV_JOB_NAME), need(ENV_LISTEN)
    servers, workers = _split(env.get(ENV_SERVERS, "")), _split(env.get(ENV_WORKERS, ""))
    own = servers if role is Role.SERVER else workers
    if not 0 <= index < len(own):
        raise NodeConfigError(f"{ENV_INDEX}={index} but {len(own)} {role} addresses are listed")
    try:  # the plan sends the normalised spec (structurally valid, defaults filled)
        job_spec = from_dict(spec)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise NodeConfigError(f"{ENV_SPEC} is not a normalised job spec: {type(exc).__name__}: {exc}") from None
    tls, identity = _read_tls(env.get(ENV_TLS_DIR) or None, job, role, index)
    return NodeConfig(job=job, role=role, index=index, spec=job_spec, listen=listen,
                      servers=servers, workers=workers, metrics_port=metrics_port, attack=attack,
                      output_dir=env.get(ENV_OUTPUT_DIR) or None, tls=tls, identity=identity)


def _read_tls(folder: str | None, job: str, role: Role, index: int) -> tuple[TlsMaterial | None, ReplicaIdentity | None]:
    """The replica's TLS material and the identity its certificate names, which must be this
    replica's: a node handed another replica's Secret stops here, before it speaks in a wrong name."""
    if folder is None:
        return None, None
    from garfield.security import files
    from garfield.security.certificates import uri_of

    try:
        material = files.load(folder)
    except files.TlsConfigError as exc:
        raise NodeConfigError(f"{ENV_TLS_DIR}: {exc}") from None
    uri = uri_of(material.certificate)
    identity = ReplicaIdentity.parse(uri) if uri else None
    if identity is None:
        raise NodeConfigError(f"{ENV_TLS_DIR}: {folder}/{files.CERT_FILE} names no replica (URI SAN {uri!r})")
    if (identity.job, identity.role, identity.index) != (job, role, index):
        raise NodeConfigError(f"{ENV_TLS_DIR}: {folder}/{files.CERT_FILE} is {identity.uri}, not {job}'s {role}-{index}")
    return material, identity


def protocol_node(config: NodeConfig, adapter: FrameworkAdapter, state: NodeState) -> ProtocolNode:
    """The protocol node of `config.role`, simulating the attack `config.attack` names, if any.

    The wiring of attack and adapter happens here, once, before training: a worker attack's
    label transform is handed to the adapter (`set_label_transform`), so the protocol nodes only
    see the attack's `corrupt` and never reach into the adapter."""
    from garfield import attacks
    from garfield.protocol import PeerNode, ServerNode, WorkerNode

    bad = config.attack
    if config.role is Role.SERVER:
        return ServerNode(config, adapter, state, attack=attacks.make_server_attack(bad.name, bad.params) if bad else None)
    # The adaptive attacks aim at the rule their vectors meet: the one the worker side's replies
    # are aggregated with (by the servers, or by the other peers).
    gar = config.spec.workers.gar
    defence = attacks.Defence(gar.name, gar.params, gar.pre)
    attack = attacks.make_worker_attack(bad.name, bad.params, defence) if bad else None
    if attack is not None and attack.label_transform is not None:
        adapter.set_label_transform(attack.label_transform)
    node_class = PeerNode if config.role is Role.PEER else WorkerNode
    return node_class(config, adapter, state, attack=attack)


def _first_step_state(clock: StartupClock | None) -> type:
    """NodeState that logs the first completed step once (the end of start-up, for the breakdown)."""
    from garfield.observability.state import NodeState

    class StartupState(NodeState):
        _first_logged = False

        def set_step(self, step: int) -> None:
            super().set_step(step)
            if step > 0 and not self._first_logged:
                self._first_logged = True
                if clock is not None:
                    clock.mark("first_step")
                log.info("first step", extra={"fields": {"step": step, **(clock.fields() if clock else {})}})

    return StartupState


def build_node(config: NodeConfig, clock: StartupClock | None = None) -> ProtocolNode:
    """Task, adapter, state and protocol node for this replica (nothing started yet)."""
    from garfield.adapters import configure_threads, create, seed_everything
    from garfield.task import load_task

    if clock is not None:
        clock.mark("imports")
    spec = config.spec
    configure_threads(spec.framework)
    seed_everything(spec.framework, spec.training.seed)
    task = load_task(spec.task.entrypoint, spec.task.args)
    if clock is not None:
        clock.mark("task")
    adapter = create(spec.framework, task, spec, config.role, config.index)
    state = _first_step_state(clock)(config.job, config.role, config.index, spec.training.steps,
                                     byzantine=config.attack is not None)
    return protocol_node(config, adapter, state)


async def _run(config: NodeConfig, clock: StartupClock | None = None) -> int:
    from garfield.observability.http import MetricsServer

    node = build_node(config, clock)
    if clock is not None:
        clock.mark("built")
        log.info("startup", extra={"fields": clock.fields()})
    metrics = None
    if config.metrics_port is not None:
        host = config.listen.rsplit(":", 1)[0].strip("[]")
        host = host if host in ("127.0.0.1", "localhost", "::1") else "0.0.0.0"
        metrics = MetricsServer(node.state, host, config.metrics_port).start()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None  # main() runs as a task (asyncio.run)
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, task.cancel)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-main thread / platform
            pass
    try:
        node.on_trained = lambda: export_model(config, node)
        return await node.run()
    except asyncio.CancelledError:
        log.warning("stopped by signal")
        return 143
    finally:
        if metrics is not None:
            metrics.stop()


def export_model(config: NodeConfig, node: ProtocolNode) -> dict[str, Any]:
    """A correct server's (peer's) final model into its output folder, once training is done (the
    node's `on_trained`, before it lingers); a simulated Byzantine replica or a worker writes none.
    Returns what the final status says of it (`{"model": {...}}`, or nothing). A model that cannot
    be written fails the replica (the OSError propagates: the node exits 1), since the job's result
    would otherwise be lost without a word."""
    if config.output_dir is None or config.attack is not None or config.role is Role.WORKER:
        return {}
    from pathlib import Path

    from garfield.observability import termination
    from garfield.observability.models import write_model

    folder = Path(config.output_dir) / config.name
    try:
        manifest = write_model(node.adapter, folder, job=config.job, replica=config.name,
                               framework=config.spec.framework, step=node.state.step, accuracy=node.state.accuracy,
                               resumed_from=node.resumed_from)
    except OSError as exc:
        log.error("cannot write the final model", extra={"fields": {"folder": str(folder), "error": str(exc)}})
        raise
    log.info("model written", extra={"fields": {"path": manifest["path"], "sha256": manifest["sha256"]}})
    # The container's last word names the model too: the operator puts it in the job's status.models.
    return {"model": termination.model_of(manifest)}


def main(env: Mapping[str, str] | None = None) -> int:
    """Run this replica; the exit status is the contract (0 done, 1 failed, 2 unusable configuration)."""
    from garfield.launcher import lifeline

    lifeline.arm(env)  # first: die with the launcher (GARFIELD_PARENT_PID), whoever started us
    clock = StartupClock.begin(os.environ if env is None else env)
    from garfield.observability.logs import configure

    try:
        config = read_env(env)
    except NodeConfigError as exc:
        print(f"garfield node: {exc}", file=sys.stderr)
        return 2
    configure({"job": config.job, "role": str(config.role), "index": config.index,
               "byzantine": config.attack is not None})
    try:
        return asyncio.run(_run(config, clock))
    except KeyboardInterrupt:  # pragma: no cover
        return 130
    except Exception:
        log.exception("node failed before training")
        return 1


if __name__ == "__main__":
    sys.exit(main())
