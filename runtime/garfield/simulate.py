"""`garfield simulate FILE`: the job's real protocol nodes in one process, with no gRPC.

Every replica of the plan becomes the same protocol node `garfield node` builds (its task, its
framework adapter, its attack, its seed), and all of them run in one event loop over an
in-process network (`garfield.transport.inprocess`): a fetch is a call of the peer's `serve()`
whose chunk bytes go through the same validation as on the wire. So the aggregation rules and
pre-aggregation, the attacks, the quorum sizes, worker momentum and the asynchronous adversary's
worst-case ordering (attackers asked first and put first in every quorum, `PeerOrder`) are those
of a real run; what is left out is processes, sockets and TLS. The job's fate is decided by
`garfield.lifecycle.decide` as for `garfield run` and the operator, the progress bar and
summary.json are `garfield run`'s, and correct servers (peers) export their final models the
same way.

Replicas take turns on one CPU instead of running in parallel, so wall time measures nothing
about a deployment; a simulation is for accuracy under faults, in seconds per job.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import functools
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from garfield.launcher.display import Display, progress_of
from garfield.launcher.local import default_output_dir, job_from_args, report, with_steps
from garfield.launcher.summary import FAILED, SUCCEEDED, TIMED_OUT, ModelOwner, RunResult, collect_models
from garfield.lifecycle import Health, Phase, ReplicaState, decide
from garfield.node import build_node, export_model, read_env
from garfield.observability.logs import NODE_IDENTITY
from garfield.plan import make_plan
from garfield.plan.addressing import InProcess
from garfield.spec import contract
from garfield.spec.validation import Job
from garfield.transport.inprocess import InProcessNetwork

if TYPE_CHECKING:
    from garfield.protocol.base import ProtocolNode

log = logging.getLogger("garfield.simulate")

# How often the bar is redrawn (the loop also wakes whenever a replica ends).
REFRESH_SECONDS = 0.25
# After success, how long replicas still finishing (lingering for late peers) may take.
SETTLE_SECONDS = 10.0


def _state(node: ProtocolNode, task: asyncio.Task[int], job: str) -> ReplicaState:
    """A node as the lifecycle sees a replica: running, finished (exit 0), or lost."""
    name = f"{job}-{node.config.role}-{node.config.index}"
    byzantine = node.config.attack is not None
    if not task.done():
        return ReplicaState(name, node.config.role, byzantine, Health.RUNNING)
    code = None if task.cancelled() or task.exception() is not None else task.result()
    if code == 0:
        return ReplicaState(name, node.config.role, byzantine, Health.FINISHED)
    detail = "cancelled" if task.cancelled() else (repr(task.exception()) if task.exception() else f"exit {code}")
    return ReplicaState(name, node.config.role, byzantine, Health.LOST, detail)


def _context(node: ProtocolNode) -> contextvars.Context:
    """A context in which the node's log lines carry its identity, as its own process's would."""
    context = contextvars.copy_context()
    context.run(NODE_IDENTITY.set, {"job": node.config.job, "role": str(node.config.role), "index": node.config.index,
                                    "byzantine": node.config.attack is not None})
    return context


def _configure_logs(path: Path) -> None:
    """Every node's log lines in one file (the nodes share this process), as JSON."""
    from garfield.observability.logs import JsonFormatter

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(JsonFormatter({"mode": "simulation"}))
    root = logging.getLogger("garfield")
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    root.propagate = False


def build_nodes(job: Job, models_dir: Path | None) -> list[ProtocolNode]:
    """One protocol node per replica of the job's plan, configured from the replica's own
    environment (the contract `garfield node` reads), on one in-process network."""
    network = InProcessNetwork()
    plan = make_plan(job, InProcess())
    nodes = []
    for replica in plan.replicas:
        env = {k: v for k, v in replica.env.items()
               if k not in (contract.ENV_TLS_DIR, contract.ENV_METRICS_PORT)}  # no TLS, no HTTP: nothing travels
        if models_dir is not None:
            env[contract.ENV_OUTPUT_DIR] = str(models_dir)
        node = build_node(read_env(env))
        node.network = network
        node.on_trained = functools.partial(export_model, node.config, node)  # as `garfield node` does
        nodes.append(node)
    return nodes


async def _run(job: Job, nodes: list[ProtocolNode], display: Display, started: float,
               timeout: float | None) -> tuple[str, str, dict[str, asyncio.Task[int]]]:
    spec = job.spec
    primary = spec.topology.primary_role
    correct = [n for n in nodes if n.config.role == primary and n.config.attack is None]
    for node in nodes:  # everyone listens before anyone asks, as replicas that start together
        await asyncio.create_task(node.start(), context=_context(node))
    tasks = {node.name: asyncio.create_task(node.run(), name=node.name, context=_context(node)) for node in nodes}
    outcome, message = FAILED, "the simulation ended without a verdict"
    try:
        while True:
            await asyncio.wait(tasks.values(), timeout=REFRESH_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            display.update(progress_of([n.state.status() for n in correct], spec.training.steps), time.monotonic() - started)
            verdict = decide(spec, [_state(n, tasks[n.name], job.name) for n in nodes])
            if verdict is not None:
                outcome = SUCCEEDED if verdict.phase is Phase.SUCCEEDED else FAILED
                message = verdict.message
                break
            if all(t.done() for t in tasks.values()):
                message = "every replica ended, and the job neither succeeded nor failed"
                break
            if timeout is not None and time.monotonic() - started > timeout:
                outcome, message = TIMED_OUT, f"the simulation ran longer than {timeout:g} s"
                break
        if outcome == SUCCEEDED:  # the others finish their last step or linger for late peers
            await asyncio.wait(tasks.values(), timeout=SETTLE_SECONDS)
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    return outcome, message, tasks


def simulate(job: Job, output_dir: Path | None = None, *, steps: int | None = None, timeout: float | None = None,
             progress: str = "auto", stream: TextIO | None = None) -> RunResult:
    """Simulate `job` to its end; the outcome, also written to `<output_dir>/summary.json`
    (the shape `garfield run` writes; replicas carry "simulated": true and no pid or log)."""
    if steps is not None:
        job = with_steps(job, steps)
    output_dir = Path(output_dir) if output_dir is not None else default_output_dir(job.name + "-sim")
    output_dir.mkdir(parents=True, exist_ok=True)
    stream = stream if stream is not None else sys.stdout
    live = progress == "bar" or (progress == "auto" and stream.isatty())
    display = Display(None if progress == "none" else stream, live)
    models_dir = Path(job.spec.output_path) if job.spec.output_path else (output_dir / "models").resolve()
    _configure_logs(output_dir / "logs" / "simulation.log")
    started = time.monotonic()
    nodes = build_nodes(job, models_dir)
    display.message(f"{job.name}: {len(nodes)} replicas ({job.spec.topology}) simulated in one process, "
                    f"log in {output_dir}/logs/simulation.log")
    outcome, message, tasks = asyncio.run(_run(job, nodes, display, started, timeout))
    primary = job.spec.topology.primary_role
    correct = [n for n in nodes if n.config.role == primary and n.config.attack is None]
    wall = time.monotonic() - started
    result = RunResult(
        job=job.name, topology=str(job.spec.topology), outcome=outcome, message=message,
        total_steps=job.spec.training.steps, wall_time=wall, output_dir=output_dir,
        servers={f"{job.name}-{n.name}": n.state.status() for n in correct},
        replicas={f"{job.name}-{n.name}": _replica_entry(n, tasks[n.name], job.name) for n in nodes},
        models=collect_models(models_dir, [ModelOwner(f"{job.name}-{n.name}", str(n.config.role), n.config.index)
                                           for n in correct]),
    )
    result.write()
    display.update(progress_of(list(result.servers.values()), result.total_steps), wall, force=True)
    if outcome == SUCCEEDED:
        display.message(result.headline().replace(f"{job.name}: ", f"{job.name} (simulated): ", 1))
    return result


def _replica_entry(node: ProtocolNode, task: asyncio.Task[int], job: str) -> dict[str, Any]:
    state = _state(node, task, job)
    return {"role": str(node.config.role), "index": node.config.index, "byzantine": node.config.attack is not None,
            "attack": node.config.attack.to_dict() if node.config.attack else None, "simulated": True,
            "exit": "finished" if state.health is Health.FINISHED else (state.detail or str(state.health)),
            "crashed": state.health is Health.LOST}


def simulate_cli(args: argparse.Namespace) -> int:
    """Entry point of `garfield simulate FILE [--output-dir D] [--steps N] [--no-progress] [--timeout S]`."""
    job = job_from_args(args, "simulate", "garfield simulate runs the replicas in one process")
    if job is None:
        return 2
    result = simulate(job, Path(args.output_dir) if args.output_dir else None, timeout=args.timeout,
                      progress="lines" if args.no_progress else "auto")
    return report(result, "simulate")
