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

from garfield.plan.replicas import (
    ENV_ATTACK,
    ENV_INDEX,
    ENV_JOB_NAME,
    ENV_LISTEN,
    ENV_METRICS_PORT,
    ENV_ROLE,
    ENV_SERVERS,
    ENV_SPEC,
    ENV_WORKERS,
)

if TYPE_CHECKING:  # build_node imports it, with the rest of the node, only when it runs
    from garfield.protocol.base import ProtocolNode

log = logging.getLogger("garfield.node")

ROLES = ("server", "worker", "peer")


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


@dataclass
class NodeEnv:
    job: str
    role: str
    index: int
    spec: dict[str, Any]
    listen: str
    metrics_port: int | None
    servers: list[str]
    workers: list[str]
    attack: dict[str, Any] | None


def _split(value: str) -> list[str]:
    return [a.strip() for a in value.split(",") if a.strip()]


def read_env(env: Mapping[str, str] | None = None) -> NodeEnv:
    """Parse the replica contract; raises NodeConfigError naming the variable at fault."""
    env = os.environ if env is None else env

    def need(name: str) -> str:
        value = env.get(name)
        if value is None or value == "":
            raise NodeConfigError(f"{name} is not set (garfield node is started by `garfield run` or the operator)")
        return value

    role = need(ENV_ROLE)
    if role not in ROLES:
        raise NodeConfigError(f"{ENV_ROLE}={role!r}; expected one of {', '.join(ROLES)}")
    try:
        index = int(need(ENV_INDEX))
    except ValueError:
        raise NodeConfigError(f"{ENV_INDEX}={env.get(ENV_INDEX)!r} is not an integer") from None
    try:
        spec = json.loads(need(ENV_SPEC))
    except json.JSONDecodeError as exc:
        raise NodeConfigError(f"{ENV_SPEC} is not JSON: {exc}") from None
    attack = None
    if env.get(ENV_ATTACK):
        try:
            attack = json.loads(env[ENV_ATTACK])
        except json.JSONDecodeError as exc:
            raise NodeConfigError(f"{ENV_ATTACK} is not JSON: {exc}") from None
        if not isinstance(attack, dict) or "name" not in attack:
            raise NodeConfigError(f"{ENV_ATTACK} must be {{\"name\": ..., \"params\": {{...}}}}")
    metrics = env.get(ENV_METRICS_PORT)
    try:
        metrics_port = int(metrics) if metrics else None
    except ValueError:
        raise NodeConfigError(f"{ENV_METRICS_PORT}={metrics!r} is not a port number") from None
    node = NodeEnv(job=need(ENV_JOB_NAME), role=role, index=index, spec=spec, listen=need(ENV_LISTEN),
                   metrics_port=metrics_port, servers=_split(env.get(ENV_SERVERS, "")),
                   workers=_split(env.get(ENV_WORKERS, "")), attack=attack)
    own = node.servers if role == "server" else node.workers
    if not 0 <= index < len(own):
        raise NodeConfigError(f"{ENV_INDEX}={index} but {len(own)} {role} addresses are listed")
    return node


def make_attack(role: str, attack: dict[str, Any] | None) -> Any | None:
    """The attack object of a Byzantine replica (the attack library's constructors)."""
    if attack is None:
        return None
    from garfield import attacks

    params = dict(attack.get("params") or {})
    if role == "server":
        return attacks.make_server_attack(attack["name"], params)
    return attacks.make_worker_attack(attack["name"], params)


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


def build_node(node_env: NodeEnv, clock: StartupClock | None = None) -> ProtocolNode:
    """Task, adapter, state and protocol node for this replica (nothing started yet)."""
    from garfield.adapters import configure_threads, create, seed_everything
    from garfield.protocol import ROLES as NODE_CLASSES
    from garfield.protocol.base import NodeConfig
    from garfield.spec.model import from_dict
    from garfield.task import load_task

    if clock is not None:
        clock.mark("imports")
    spec = from_dict(node_env.spec)
    configure_threads(spec.framework)
    seed_everything(spec.framework, spec.training.seed)
    task = load_task(spec.task.entrypoint, spec.task.args)
    if clock is not None:
        clock.mark("task")
    adapter = create(spec.framework, task, spec, node_env.role, node_env.index)
    attack = make_attack(node_env.role, node_env.attack)
    state = _first_step_state(clock)(node_env.job, node_env.role, node_env.index, spec.training.steps,
                                     byzantine=attack is not None)
    config = NodeConfig(job=node_env.job, role=node_env.role, index=node_env.index, spec=spec, listen=node_env.listen,
                        servers=node_env.servers, workers=node_env.workers, attack=node_env.attack)
    return NODE_CLASSES[node_env.role](config, adapter, state, attack=attack)


async def _run(node_env: NodeEnv, clock: StartupClock | None = None) -> int:
    from garfield.observability.http import MetricsServer

    node = build_node(node_env, clock)
    if clock is not None:
        clock.mark("built")
        log.info("startup", extra={"fields": clock.fields()})
    metrics = None
    if node_env.metrics_port is not None:
        host = node_env.listen.rsplit(":", 1)[0].strip("[]")
        host = host if host in ("127.0.0.1", "localhost", "::1") else "0.0.0.0"
        metrics = MetricsServer(node.state, host, node_env.metrics_port).start()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None  # main() runs as a task (asyncio.run)
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, task.cancel)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-main thread / platform
            pass
    try:
        return await node.run()
    except asyncio.CancelledError:
        log.warning("stopped by signal")
        return 143
    finally:
        if metrics is not None:
            metrics.stop()


def main(env: Mapping[str, str] | None = None) -> int:
    """Run this replica; the exit status is the contract (0 done, 1 failed, 2 unusable configuration)."""
    from garfield.launcher import lifeline

    lifeline.arm(env)  # first: die with the launcher (GARFIELD_PARENT_PID), whoever started us
    clock = StartupClock.begin(os.environ if env is None else env)
    from garfield.observability.logs import configure

    try:
        node_env = read_env(env)
    except NodeConfigError as exc:
        print(f"garfield node: {exc}", file=sys.stderr)
        return 2
    configure({"job": node_env.job, "role": node_env.role, "index": node_env.index,
               "byzantine": node_env.attack is not None})
    try:
        return asyncio.run(_run(node_env, clock))
    except KeyboardInterrupt:  # pragma: no cover
        return 130
    except Exception:
        log.exception("node failed before training")
        return 1


if __name__ == "__main__":
    sys.exit(main())
