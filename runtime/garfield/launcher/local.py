"""`garfield run`: a job's plan as local processes on loopback, supervised until the job ends.

The launcher validates the job (the same `load_job` as every other entry point), picks free ports,
builds the plan with `make_plan(job, Loopback(...))` and starts one `python -m garfield node` per
replica with exactly the replica's environment. It then watches three things at once, waking on
child exits and signals rather than on a timer: process exits (SIGCHLD), Ctrl-C / SIGTERM / SIGHUP,
and the correct servers' `/status` (a refresh tick for the progress display).

When the job ends (decided by `garfield.lifecycle.decide`, the operator's rule too):
* success: n - f correct servers (peers, when decentralized) finished; a correct one still training
  gets one RPC deadline to finish as well, then whatever else runs (workers, Byzantine replicas)
  is stopped;
* failure: a role has more faulty replicas than its f, faulty meaning simulated Byzantine or
  crashed, so the protocol can no longer promise progress; the message quotes the crashed node's
  log. Attackers alone never fail a run, nor do crashes while attackers plus crashes stay within f;
* interruption / timeout: everyone is stopped.
Stopping is SIGTERM to every process group, a grace period, then SIGKILL; children also die with the
launcher through PR_SET_PDEATHSIG (`garfield.launcher.children`). summary.json is written in every case.

Replicas are forked from a preloaded fork server (`garfield.launcher.forkserver`: torch, the
compiled rules and the task's data imported once per run instead of once per replica); set
GARFIELD_FORK_SERVER=0 (or pass fork_server=False) to start each one as a fresh process instead.
"""

from __future__ import annotations

import argparse
import copy
import os
import select
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

from garfield.launcher import children as proc
from garfield.launcher import forkserver as fs
from garfield.launcher import lifeline
from garfield.launcher.ports import loopback_table
from garfield.launcher.status import Progress, fetch_status, final_from_log, format_line, summarize
from garfield.launcher.summary import FAILED, INTERRUPTED, SUCCEEDED, TIMED_OUT, RunResult
from garfield.lifecycle import Health, Phase, ReplicaState, decide
from garfield.plan import Loopback, Plan, Replica, make_plan
from garfield.spec.kinds import Role
from garfield.spec.validation import InvalidJob, Job, load_job, validate_manifest

STATUS_INTERVAL = 1.0  # seconds between /status reads (the display's refresh, not a synchronisation)
FINISH_INTERVAL = 0.1  # the same once a correct server reached the last step: "done" is seen at once
LINE_INTERVAL = 5.0  # seconds between plain progress lines
SETTLE_SECONDS = 1.0  # after success, how long replicas may take to exit by themselves before SIGTERM
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


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


def replica_state(child: proc.Child, reported_done: bool) -> ReplicaState:
    """A child process in the lifecycle's terms (garfield.lifecycle, shared with the operator).

    A crash is a non-zero exit the launcher did not cause; exit 0 or a "done" status is finished.
    """
    code = child.reap()
    if code is None or child.stopped_by_launcher:
        health = Health.FINISHED if reported_done else Health.RUNNING
    else:
        health = Health.FINISHED if code == 0 else Health.LOST
    return ReplicaState(child.name, Role(child.role), child.byzantine, health,
                        child.describe_exit() if health is Health.LOST else "")


def child_env(replica: Replica, threads: int) -> dict[str, str]:
    """The launcher's environment, one math thread per share of the cores, then the replica's own contract."""
    env = dict(os.environ)
    for var in THREAD_VARS:
        env.setdefault(var, str(threads))
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(replica.env)
    return env


def threads_per_replica(plan: Plan) -> int:
    """Math threads per replica: the cores shared out (1 when 11 replicas share 2 cores)."""
    return max(1, (os.cpu_count() or 1) // max(1, len(plan.replicas)))


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


@dataclass
class _Watch:
    """Wakes the supervisor on child exits and stop signals; restores the old handlers afterwards."""

    stop_reason: str | None = None
    _read: socket.socket | None = None
    _write: socket.socket | None = None
    _saved: dict[int, Any] = field(default_factory=dict)
    _saved_fd: int = -1

    def __enter__(self) -> "_Watch":
        if threading.current_thread() is not threading.main_thread():
            return self  # signals cannot be handled off the main thread: fall back to the refresh tick
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        self._saved_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)

        def on_stop(signum: int, _frame: Any) -> None:
            self.stop_reason = self.stop_reason or signal.Signals(signum).name

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._saved[sig] = signal.signal(sig, on_stop)
        self._saved[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda *_: None)
        return self

    def wake(self, *_: Any) -> None:
        """End the current wait now (from any thread): a forked child's exit, which sends no SIGCHLD here."""
        if self._write is not None:
            try:
                self._write.send(b"\0")
            except OSError:
                pass

    def wait(self, seconds: float) -> None:
        """Sleep up to `seconds`, returning early when a child exits or a stop signal arrives."""
        if self._read is None:
            time.sleep(seconds)
            return
        ready, _, _ = select.select([self._read], [], [], max(0.0, seconds))
        if ready:
            try:
                while self._read.recv(4096):
                    pass
            except BlockingIOError:
                pass

    def __exit__(self, *exc: Any) -> None:
        if self._read is None:
            return
        signal.set_wakeup_fd(self._saved_fd)
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._read.close()
        assert self._write is not None
        self._write.close()


class _Display:
    """A live bar on a terminal, plain lines otherwise (logs, CI, --no-progress), nothing when quiet."""

    def __init__(self, stream: TextIO | None, live: bool) -> None:
        self.stream = stream
        self.live = live
        self._last_line = 0.0
        self._last_step = -1
        self._shown = False

    def update(self, progress: Progress, elapsed: float, force: bool = False) -> None:
        if self.stream is None:
            return
        line = format_line(progress, elapsed)
        if self.live:
            self.stream.write("\r\x1b[2K" + line)
            self.stream.flush()
            self._shown = True
        elif force or (progress.step != self._last_step and time.monotonic() - self._last_line >= LINE_INTERVAL):
            self.stream.write(line + "\n")
            self.stream.flush()
            self._last_line = time.monotonic()
            self._last_step = progress.step

    def message(self, text: str) -> None:
        if self.stream is None:
            return
        if self.live and self._shown:
            self.stream.write("\n")
            self._shown = False
        self.stream.write(text + "\n")
        self.stream.flush()


class _Supervisor:
    """One run: starts the children, watches them, decides the outcome, stops them."""

    def __init__(self, job: Job, plan: Plan, output_dir: Path, timeout: float | None, grace: float,
                 display: _Display, command: Callable[[Replica], Sequence[str]],
                 on_status: Callable[[str, dict[str, Any]], None] | None = None,
                 forkserver: fs.ForkServer | None = None) -> None:
        self.job, self.plan, self.output_dir = job, plan, output_dir
        self.on_status = on_status
        self.forkserver = forkserver
        self.timeout, self.grace, self.display, self.command = timeout, grace, display, command
        self.primary = plan.primary_role
        self.children: list[proc.Child] = []
        self.replicas = {r.name: r for r in plan.replicas}
        self.last_status: dict[str, dict[str, Any]] = {}
        self.finished: set[str] = set()

    # -- start -------------------------------------------------------------------------------------
    def start(self, watch: _Watch) -> None:
        """Spawn every replica. No ordering is needed: in evaluation runs the nodes themselves put
        the simulated attackers first in their quorums (docs/protocol.md, the worst-case schedule)."""
        threads = threads_per_replica(self.plan)
        logs = self.output_dir / "logs"
        for replica in self.plan.replicas:
            if watch.stop_reason:  # interrupted while the fork server was still warming up
                break
            self.children.append(self._spawn(replica, child_env(replica, threads), logs / f"{replica.name}.log"))
        self._write_replicas()

    def _spawn(self, replica: Replica, env: dict[str, str], log_path: Path) -> proc.Child:
        """Fork the replica from the fork server; a fresh process when there is none or it failed."""
        kwargs = dict(name=replica.name, role=replica.role, index=replica.index, byzantine=replica.byzantine,
                      command=self.command(replica), env=env, log_path=log_path)
        if self.forkserver is not None:
            try:
                return proc.spawn(**kwargs, forkserver=self.forkserver,  # type: ignore[arg-type]
                                  startup_seconds=self.job.spec.training.timeouts.startup_seconds)
            except fs.ForkServerError as exc:
                self.display.message(f"fork server unusable ({exc}); starting replicas as fresh processes")
                self.forkserver.close()
                self.forkserver = None
        return proc.spawn(**kwargs)  # type: ignore[arg-type]

    def _write_replicas(self) -> None:
        import json

        table = {c.name: {"pid": c.pid, "role": c.role, "index": c.index, "byzantine": c.byzantine,
                          "address": self.replicas[c.name].address, "ports": self.replicas[c.name].ports,
                          "log": str(c.log_path)} for c in self.children}
        # Atomic: a reader (a test, a user's script) never sees a half-written table.
        partial = self.output_dir / "replicas.json.partial"
        partial.write_text(json.dumps(table, indent=2) + "\n")
        partial.replace(self.output_dir / "replicas.json")

    # -- watch -------------------------------------------------------------------------------------
    def correct_primaries(self) -> list[proc.Child]:
        return [c for c in self.children if c.role == self.primary and not c.byzantine]

    def poll_statuses(self) -> list[dict[str, Any]]:
        fresh = []
        for child in self.correct_primaries():
            if child.reap() is not None:
                continue
            status = fetch_status(self.replicas[child.name].ports["metrics"])
            if status is None:
                continue
            self.last_status[child.name] = status
            fresh.append(status)
            if self.on_status is not None:
                self.on_status(child.name, status)
            if status.get("phase") == "done":
                self.finished.add(child.name)
        return fresh

    def crashed(self, child: proc.Child) -> bool:
        code = child.reap()
        return code is not None and code != 0 and not child.stopped_by_launcher

    def states(self) -> list[ReplicaState]:
        return [replica_state(c, c.name in self.finished) for c in self.children]

    def verdict(self) -> tuple[str, str] | None:
        """(outcome, message) once the job's fate is known (garfield.lifecycle.decide), else None."""
        decided = decide(self.job.spec, self.states())
        if decided is None:
            return None
        if decided.phase is Phase.SUCCEEDED:
            return SUCCEEDED, decided.message
        assert decided.fault is not None
        worst = next(c for c in self.children if c.name == decided.fault.lost[0].name)
        reason = worst.failure_reason()
        detail = f": {reason} (log: {worst.log_path})" if reason else \
            f"; last lines of {worst.log_path}:\n{worst.log_tail()}"
        return FAILED, f"{decided.message}. {worst.name} {worst.describe_exit()}{detail}"

    def run(self, watch: _Watch) -> tuple[str, str]:
        started = time.monotonic()
        next_status = 0.0
        while True:
            if watch.stop_reason:
                return INTERRUPTED, f"interrupted by {watch.stop_reason}; stopped every replica"
            decided = self.verdict()
            if decided:
                return decided
            now = time.monotonic()
            if self.timeout is not None and now - started >= self.timeout:
                return TIMED_OUT, f"timed out after {self.timeout:g}s; stopped every replica"
            if now >= next_status:
                fresh = self.poll_statuses()
                self.display.update(summarize(fresh or list(self.last_status.values()), self.total_steps), now - started)
                next_status = now + self._status_interval()
                continue  # a status may have said "done": decide before sleeping
            deadline = next_status if self.timeout is None else min(next_status, started + self.timeout)
            watch.wait(deadline - now)

    def _status_interval(self) -> float:
        """The refresh tick, shorter at the end so that the last "done" is not seen up to a tick late."""
        last = max((int(s.get("step") or 0) for s in self.last_status.values()), default=0)
        return FINISH_INTERVAL if last >= self.total_steps - 1 else STATUS_INTERVAL

    @property
    def total_steps(self) -> int:
        return self.job.spec.training.steps

    def finish_stragglers(self, watch: _Watch) -> None:
        """After success (n - f correct primaries finished), let any other correct primary still
        training finish too, within one RPC deadline: summary.json then holds every correct model.
        Wakes on each exit and reads statuses at the end-of-run tick; the bound only caps a
        primary that can no longer finish (its peers gone)."""
        deadline = time.monotonic() + self.job.spec.training.timeouts.rpc_seconds
        while not watch.stop_reason:
            training = [c for c in self.correct_primaries() if c.reap() is None and c.name not in self.finished]
            remaining = deadline - time.monotonic()
            if not training or remaining <= 0:
                return
            watch.wait(min(FINISH_INTERVAL, remaining))
            self.poll_statuses()

    def settle(self, watch: _Watch, seconds: float) -> None:
        """Give finished replicas a moment to leave on their own (serving their peers' last requests)."""
        deadline = time.monotonic() + seconds
        while not watch.stop_reason and any(c.reap() is None for c in self.children):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            watch.wait(remaining)

    def merge_final_logs(self) -> None:
        """Complete each correct server's last status with the "done" line of its log (see final_from_log)."""
        for child in self.correct_primaries():
            final = final_from_log(child.log_path)
            if final is not None:
                merged = {**self.last_status.get(child.name, {}), **final, "phase": "done"}
                self.last_status[child.name] = merged

    # -- stop --------------------------------------------------------------------------------------
    def stop(self) -> None:
        proc.stop(self.children, grace=self.grace)

    def replica_table(self) -> dict[str, dict[str, Any]]:
        table = {}
        for child in self.children:
            replica = self.replicas[child.name]
            table[child.name] = {
                "role": child.role, "index": child.index, "byzantine": child.byzantine,
                "attack": replica.attack, "pid": child.pid, "returncode": child.popen.returncode,
                "exit": child.describe_exit(), "stopped_by_launcher": child.stopped_by_launcher,
                "crashed": self.crashed(child), "log": str(child.log_path),
                "seconds": round((child.ended or time.monotonic()) - child.started, 2),
            }
        return table


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
    display = _Display(None if progress == "none" else stream, live)
    plan = make_plan(job, loopback_for(job))
    started = time.monotonic()
    use_server = fs.enabled() if fork_server is None else fork_server
    server = start_fork_server(job, plan, command, output_dir / "logs" / "forkserver.log") if use_server else None
    supervisor = _Supervisor(job, plan, output_dir, timeout, grace, display, command, on_status, server)
    outcome, message = FAILED, "the launcher failed before the job ended"
    with _Watch() as watch:
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
            supervisor.poll_statuses()
            supervisor.stop()
            if supervisor.forkserver is not None:
                supervisor.forkserver.close()
            supervisor.merge_final_logs()
            wall = time.monotonic() - started
            result = RunResult(
                job=job.name, topology=plan.topology, outcome=outcome, message=message,
                total_steps=job.spec.training.steps, wall_time=wall, output_dir=output_dir,
                servers={name: supervisor.last_status.get(name, {}) for name in
                         (c.name for c in supervisor.correct_primaries())},
                replicas=supervisor.replica_table(),
            )
            result.write()
    if supervisor.last_status:
        display.update(summarize(list(supervisor.last_status.values()), result.total_steps), wall, force=True)
    if outcome == SUCCEEDED:
        display.message(result.headline())
    return result


def run_cli(args: argparse.Namespace) -> int:
    """Entry point of `garfield run FILE [--output-dir D] [--steps N] [--no-progress] [--timeout S]`."""
    try:
        job = load_job(args.file)
        if args.steps is not None:
            job = with_steps(job, args.steps, source=args.file)
    except InvalidJob as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"garfield run: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    for warning in job.warnings:
        print(f"{args.file}: warning: {warning}", file=sys.stderr)
    output_dir = Path(args.output_dir) if args.output_dir else None
    result = launch(job, output_dir, timeout=args.timeout, progress="lines" if args.no_progress else "auto")
    if result.outcome != SUCCEEDED:
        print(f"garfield run: {job.name} {result.outcome}: {result.message}", file=sys.stderr)
    print(f"summary: {result.output_dir / 'summary.json'}")
    return result.exit_code
