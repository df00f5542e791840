"""`garfield node`: one replica of a job, configured only by the GARFIELD_* environment contract.

Reads the variables listed in docs/design.md, builds the user's task and the framework adapter,
gives a Byzantine replica its attack (GARFIELD_ATTACK), serves /metrics and /status, runs its role
until spec.training.steps and exits 0 (1 when it fails, 2 when its configuration is unusable).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any, Mapping

from garfield.plan.replicas import (ENV_ATTACK, ENV_INDEX, ENV_JOB_NAME, ENV_LISTEN, ENV_METRICS_PORT, ENV_ROLE,
                                    ENV_SERVERS, ENV_SPEC, ENV_WORKERS)

log = logging.getLogger("garfield.node")

ROLES = ("server", "worker", "peer")


class NodeConfigError(ValueError):
    """The environment does not describe a runnable replica."""


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


def build_node(node_env: NodeEnv) -> Any:
    """Task, adapter, state and protocol node for this replica (nothing started yet)."""
    from garfield.adapters import configure_threads, create, seed_everything
    from garfield.observability.state import NodeState
    from garfield.protocol import ROLES as NODE_CLASSES
    from garfield.protocol.base import NodeConfig
    from garfield.spec.model import from_dict
    from garfield.task import load_task

    spec = from_dict(node_env.spec)
    configure_threads(spec.framework)
    seed_everything(spec.framework, spec.training.seed)
    task = load_task(spec.task.entrypoint, spec.task.args)
    adapter = create(spec.framework, task, spec, node_env.role, node_env.index)
    attack = make_attack(node_env.role, node_env.attack)
    state = NodeState(node_env.job, node_env.role, node_env.index, spec.training.steps, byzantine=attack is not None)
    config = NodeConfig(job=node_env.job, role=node_env.role, index=node_env.index, spec=spec, listen=node_env.listen,
                        servers=node_env.servers, workers=node_env.workers, attack=node_env.attack)
    return NODE_CLASSES[node_env.role](config, adapter, state, attack=attack)


async def _run(node_env: NodeEnv) -> int:
    from garfield.observability.http import MetricsServer

    node = build_node(node_env)
    metrics = None
    if node_env.metrics_port is not None:
        host = node_env.listen.rsplit(":", 1)[0].strip("[]")
        host = host if host in ("127.0.0.1", "localhost", "::1") else "0.0.0.0"
        metrics = MetricsServer(node.state, host, node_env.metrics_port).start()
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
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
    from garfield.observability.logs import configure

    try:
        node_env = read_env(env)
    except NodeConfigError as exc:
        print(f"garfield node: {exc}", file=sys.stderr)
        return 2
    configure({"job": node_env.job, "role": node_env.role, "index": node_env.index,
               "byzantine": node_env.attack is not None})
    try:
        return asyncio.run(_run(node_env))
    except KeyboardInterrupt:  # pragma: no cover
        return 130
    except Exception:
        log.exception("node failed before training")
        return 1


if __name__ == "__main__":
    sys.exit(main())
