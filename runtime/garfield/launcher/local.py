"""`garfield run`: a job's plan as local processes on loopback, supervised until the job ends.

The launcher validates the job (the same `load_job` as every other entry point), picks free ports,
builds the plan with `make_plan(job, Loopback(...))` and starts one `python -m garfield node` per
replica with exactly the replica's environment. This module is the entry point and the run's
wiring; each concern has its own module:
* `garfield.launcher.supervision`: starting the replicas, waking on exits and Ctrl-C / SIGTERM /
  SIGHUP rather than on a timer, the outcome (decided by `garfield.lifecycle.decide`, the operator's
  rule too), stopping everyone (SIGTERM to every process group, a grace period, then SIGKILL);
* `garfield.launcher.watching`: the correct servers' `/status` and the processes' exits;
* `garfield.launcher.display`: the live bar or plain progress lines.
summary.json is written in every case; children also die with the launcher through PR_SET_PDEATHSIG
(`garfield.launcher.children`).

Replicas are forked from a preloaded fork server (`garfield.launcher.forkserver`: torch, the
compiled rules and the task's data imported once per run instead of once per replica); set
GARFIELD_FORK_SERVER=0 (or pass fork_server=False) to start each one as a fresh process instead.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

from garfield.launcher import children as proc
from garfield.launcher import credentials, lifeline
from garfield.launcher import forkserver as fs
from garfield.launcher.display import Display, progress_of
from garfield.launcher.ports import loopback_table
from garfield.launcher.summary import FAILED, SUCCEEDED, ModelOwner, RunResult, collect_models
from garfield.launcher.supervision import SETTLE_SECONDS, Signals, Supervisor, threads_per_replica
from garfield.plan import Loopback, Plan, Replica, make_plan
from garfield.spec.contract import ENV_OUTPUT_DIR
from garfield.spec.podtemplate import cluster_only
from garfield.spec.validation import InvalidJob, Job, load_job, validate_manifest


def with_steps(job: Job, steps: int, source: str = "") -> Job:
    """The same job with `spec.training.steps` replaced, validated again."""
    manifest = copy.deepcopy(job.manifest)
    manifest.setdefault("spec", {}).setdefault("training", {})["steps"] = steps
    return validate_manifest(manifest, source=source)


def default_output_dir(job_name: str, root: Path = Path("runs")) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    candidate = root / f"{job_name}-{stamp}"
    suffix = 1
    while candidate.exists():
        suffix += 1
        candidate = root / f"{job_name}-{stamp}-{suffix}"
    return candidate


def loopback_for(job: Job) -> Loopback:
    spec = job.spec
    return Loopback(loopback_table({role: spec.role_spec(role).replicas for role in spec.topology.roles}))


def preload_for(job: Job, plan: Plan, command: Callable[[Replica], Sequence[str]]) -> fs.Preload:
    """What the fork server should import and warm: the node's stack for garfield nodes (plus the
    task and the rules of a PyTorch job; a TensorFlow task is not imported before the fork, as
    TensorFlow starts threads at import), nothing for other commands (stand-ins in tests)."""
    threads = threads_per_replica(plan)
    if not plan.replicas or any(not proc.arms_itself(command(r)) for r in plan.replicas):
        return fs.Preload(threads=threads)
    from garfield.adapters.plugins import plugin

    spec = dict(job.spec.to_dict())
    if not plugin(job.spec.framework).warm_task_before_fork:
        spec.pop("task", None)
    return fs.Preload(modules=fs.TORCH_PRELOAD, spec=spec, threads=threads)


def start_fork_server(job: Job, plan: Plan, command: Callable[[Replica], Sequence[str]],
                      log_path: Path) -> fs.ForkServer | None:
    """A fork server for this run when every replica's command can be forked, else None."""
    if not all(lifeline.runnable(command(r)) for r in plan.replicas):
        return None
    try:
        return fs.ForkServer(preload_for(job, plan, command), log_path=log_path)
    except OSError:  # cannot start a process here: each replica will say so more precisely
        return None


def node_command(replica: Replica) -> list[str]:
    """The plan's command with "python" replaced by this interpreter (the one garfield is installed in)."""
    command = list(replica.command)
    if command and command[0] == "python":
        command[0] = sys.executable
    return command


def launch(job: Job, output_dir: Path | None = None, *, steps: int | None = None, timeout: float | None = None,
           progress: str = "auto", stream: TextIO | None = None, grace: float = 5.0,
           command: Callable[[Replica], Sequence[str]] = node_command,
           on_status: Callable[[str, dict[str, Any]], None] | None = None,
           fork_server: bool | None = None) -> RunResult:
    """Run `job` locally to its end and return the outcome (also written to `<output_dir>/summary.json`).

    progress: "bar" (live line), "lines" (a line every few seconds), "none", or "auto" (bar when
    `stream` is a terminal). `command` maps a replica to its argv; tests substitute stand-in nodes.
    `on_status(name, status)` sees every fresh `/status` of a correct server (peer): benchmarks and
    tests record histories or act mid-run with it. `fork_server`: fork replicas from a preloaded server (default: on,
    unless GARFIELD_FORK_SERVER=0).
    """
    if steps is not None:
        job = with_steps(job, steps)
    output_dir = Path(output_dir) if output_dir is not None else default_output_dir(job.name)
    output_dir.mkdir(parents=True, exist_ok=True)
    stream = stream if stream is not None else sys.stdout
    live = progress == "bar" or (progress == "auto" and stream.isatty())
    display = Display(None if progress == "none" else stream, live)
    plan = make_plan(job, loopback_for(job))
    # Final models: spec.output.path when the job names one, else the run folder's models/.
    models_dir = Path(job.spec.output_path) if job.spec.output_path else (output_dir / "models").resolve()
    for replica in plan.replicas:
        replica.env[ENV_OUTPUT_DIR] = str(models_dir)
    tls_dir = credentials.issue_run(plan, output_dir)  # spec.security.mutualTLS: a temporary CA for this run
    started = time.monotonic()
    use_server = fs.enabled() if fork_server is None else fork_server
    server = start_fork_server(job, plan, command, output_dir / "logs" / "forkserver.log") if use_server else None
    supervisor = Supervisor(job, plan, output_dir, timeout, grace, display, command, on_status, server)
    outcome, message = FAILED, "the launcher failed before the job ended"
    with Signals() as watch:
        if server is not None:
            server.on_exit.append(watch.wake)
        try:
            supervisor.start(watch)
            display.message(f"{job.name}: {len(plan.replicas)} replicas ({plan.topology}), logs in {output_dir}/logs")
            outcome, message = supervisor.run(watch)
            if outcome == SUCCEEDED:
                supervisor.finish_stragglers(watch)
                supervisor.settle(watch, SETTLE_SECONDS)
        except BaseException as exc:  # stop everyone on any launcher error, then let it propagate
            message = f"launcher error: {exc!r}"
            raise
        finally:
            supervisor.watcher.poll_statuses()
            supervisor.stop()
            if supervisor.forkserver is not None:
                supervisor.forkserver.close()
            supervisor.watcher.merge_final_logs()
            credentials.remove_run(tls_dir)
            wall = time.monotonic() - started
            result = RunResult(
                job=job.name, topology=plan.topology, outcome=outcome, message=message,
                total_steps=job.spec.training.steps, wall_time=wall, output_dir=output_dir,
                servers={c.name: supervisor.watcher.last_status.get(c.name, {}) for c in supervisor.watcher.correct_primaries()},
                replicas=supervisor.replica_table(),
                models=collect_models(models_dir, [ModelOwner(r.name, str(r.role), r.index)
                                                  for r in supervisor.watcher.correct_primaries()]),
            )
            result.write()
    if supervisor.watcher.last_status:
        display.update(progress_of(list(supervisor.watcher.last_status.values()), result.total_steps), wall, force=True)
    if outcome == SUCCEEDED:
        display.message(result.headline())
    return result


def local_warnings(job: Job, runs: str = "garfield run starts processes") -> list[str]:
    """What a run without pods (`garfield run`, `garfield simulate`: `runs` says how it runs the
    replicas) leaves out of the job: the templates' pod-only fields."""
    out = []
    for key in ("servers", "workers"):
        fields = cluster_only((job.manifest["spec"].get(key) or {}).get("template") or {})
        if fields:
            out.append(f"spec.{key}.template: {runs}, not pods, and ignores {', '.join(fields)}")
    return out


def job_from_args(args: argparse.Namespace, command: str, runs: str) -> Job | None:
    """The job of `garfield run|simulate FILE [--steps N]`, validated with --steps applied and its
    warnings printed (`runs`: how the command runs the replicas, for `local_warnings`); None once
    the reason it cannot be used has been printed (exit status 2)."""
    try:
        job = load_job(args.file)
        if args.steps is not None:
            job = with_steps(job, args.steps, source=args.file)
    except InvalidJob as exc:
        print(str(exc), file=sys.stderr)
        return None
    except OSError as exc:
        print(f"garfield {command}: cannot read {args.file}: {exc}", file=sys.stderr)
        return None
    for warning in job.warnings + local_warnings(job, runs):
        print(f"{args.file}: warning: {warning}", file=sys.stderr)
    return job


def report(result: RunResult, command: str) -> int:
    """Say how a run or simulation ended (why, when it did not succeed) and where its summary is;
    the command's exit status."""
    if result.outcome != SUCCEEDED:
        print(f"garfield {command}: {result.job} {result.outcome}: {result.message}", file=sys.stderr)
    print(f"summary: {result.output_dir / 'summary.json'}")
    return result.exit_code


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of `garfield run FILE [--output-dir D] [--steps N] [--no-progress] [--timeout S]`."""
    job = job_from_args(args, "run", "garfield run starts processes")
    if job is None:
        return 2
    output_dir = Path(args.output_dir) if args.output_dir else None
    return report(launch(job, output_dir, timeout=args.timeout, progress="lines" if args.no_progress else "auto"), "run")
