"""Supervising a local run: start the replicas, wake on exits and signals, decide, stop everyone.

The outcome is decided by `garfield.lifecycle.decide`, the operator's rule too; this module only
turns the decision into the launcher's outcome and message (quoting the crashed node's log).
What the replicas report is read by `garfield.launcher.watching`.
* success: n - f correct servers (peers, when decentralized) finished; a correct one still training
  gets one RPC deadline to finish as well (`finish_stragglers`), then whatever else runs (workers,
  Byzantine replicas) is stopped;
* failure: a role has more faulty replicas than its f, faulty meaning simulated Byzantine or
  crashed. Attackers alone never fail a run, nor do crashes while attackers plus crashes stay within f;
* restarts: while the job can go on, a replica that crashed is started again, as the operator
  recreates a failed pod, by the same rule (`garfield.lifecycle.restart_decision`: runPolicy
  restartPolicy and backoffLimit); a restart that would exceed backoffLimit fails the job. A
  restarted server resumes from its checkpoint (spec.checkpoint); its earlier log is kept as
  `<name>.<n>.log`;
* interruption (SIGINT, SIGTERM, SIGHUP) / timeout: everyone is stopped.
Stopping is SIGTERM to every process group, a grace period, then SIGKILL (`garfield.launcher.children`).
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from garfield.launcher import children as proc
from garfield.launcher import forkserver as fs
from garfield.launcher.display import Display, progress_of
from garfield.launcher.summary import FAILED, INTERRUPTED, SUCCEEDED, TIMED_OUT
from garfield.launcher.watching import FINISH_INTERVAL, Watcher, crashed
from garfield.lifecycle import Phase, Restart, decide, restart_decision
from garfield.plan import Plan, Replica
from garfield.spec.validation import Job

SETTLE_SECONDS = 1.0  # after success, how long replicas may take to exit by themselves before SIGTERM
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


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


@dataclass
class Signals:
    """Wakes the supervisor on child exits (SIGCHLD, or `wake` for forked ones) and records a stop signal.

    Waiting on a wake-up socket rather than a timer: an exit or Ctrl-C is handled at once. Restores the
    old handlers afterwards, so `launch` can be called again in the same process (tests, benchmarks).
    """

    stop_reason: str | None = None
    _read: socket.socket | None = None
    _write: socket.socket | None = None
    _saved: dict[int, Any] = field(default_factory=dict)
    _saved_fd: int = -1

    def __enter__(self) -> "Signals":
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



class Supervisor:
    """One run: starts the children, watches them, decides the outcome, stops them."""

    def __init__(self, job: Job, plan: Plan, output_dir: Path, timeout: float | None, grace: float,
                 display: Display, command: Callable[[Replica], Sequence[str]],
                 on_status: Callable[[str, dict[str, Any]], None] | None = None,
                 forkserver: fs.ForkServer | None = None) -> None:
        self.job, self.plan, self.output_dir = job, plan, output_dir
        self.forkserver = forkserver
        self.timeout, self.grace, self.display, self.command = timeout, grace, display, command
        self.children: list[proc.Child] = []
        self.replicas = {r.name: r for r in plan.replicas}
        self.watcher = Watcher(plan, self.children, on_status)
        self.restarts = 0  # restarts so far, all replicas together (against runPolicy.backoffLimit)
        self.restarted: dict[str, int] = {}  # per replica

    # -- start -------------------------------------------------------------------------------------
    def start(self, watch: Signals) -> None:
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
        table = {c.name: {"pid": c.pid, "role": c.role, "index": c.index, "byzantine": c.byzantine,
                          "address": self.replicas[c.name].address, "ports": self.replicas[c.name].ports,
                          "log": str(c.log_path)} for c in self.children}
        # Atomic: a reader (a test, a user's script) never sees a half-written table.
        partial = self.output_dir / "replicas.json.partial"
        partial.write_text(json.dumps(table, indent=2) + "\n")
        partial.replace(self.output_dir / "replicas.json")

    # -- decide ------------------------------------------------------------------------------------
    def verdict(self) -> tuple[str, str] | None:
        """(outcome, message) once the job's fate is known (garfield.lifecycle.decide), else None."""
        decided = decide(self.job.spec, self.watcher.states())
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

    def run(self, watch: Signals) -> tuple[str, str]:
        started = time.monotonic()
        next_status = 0.0
        while True:
            if watch.stop_reason:
                return INTERRUPTED, f"interrupted by {watch.stop_reason}; stopped every replica"
            decided = self.verdict()
            if decided:
                return decided
            refused = self.restart_crashed()
            if refused:
                return FAILED, refused
            now = time.monotonic()
            if self.timeout is not None and now - started >= self.timeout:
                return TIMED_OUT, f"timed out after {self.timeout:g}s; stopped every replica"
            if now >= next_status:
                fresh = self.watcher.poll_statuses()
                self.display.update(progress_of(fresh or list(self.watcher.last_status.values()), self.total_steps),
                                    now - started)
                next_status = now + self.watcher.status_interval(self.total_steps)
                continue  # a status may have said "done": decide before sleeping
            deadline = next_status if self.timeout is None else min(next_status, started + self.timeout)
            watch.wait(deadline - now)

    def restart_crashed(self) -> str | None:
        """Start crashed replicas again when runPolicy allows (garfield.lifecycle.restart_decision,
        the operator's rule); the failure message when a restart would exceed backoffLimit."""
        down = [c for c in self.children if crashed(c)]
        decision = restart_decision(self.job.spec, self.restarts, [f"{c.name} ({c.describe_exit()})" for c in down])
        if decision.action is Restart.BACKOFF_LIMIT:
            return decision.message
        if decision.action is not Restart.RESTART:
            return None
        threads = threads_per_replica(self.plan)
        for child in down:
            replica = self.replicas[child.name]
            self.restarts += 1
            count = self.restarted[child.name] = self.restarted.get(child.name, 0) + 1
            kept = child.log_path.with_name(f"{child.name}.{count}.log")
            try:
                os.replace(child.log_path, kept)
            except OSError:
                pass
            self.children[self.children.index(child)] = self._spawn(replica, child_env(replica, threads), child.log_path)
            self.display.message(f"{child.name} {child.describe_exit()}; restarting it (restart {self.restarts} of "
                                 f"runPolicy.backoffLimit={self.job.spec.run_policy.backoff_limit}; earlier log: {kept})")
        self._write_replicas()
        return None

    @property
    def total_steps(self) -> int:
        return self.job.spec.training.steps

    def finish_stragglers(self, watch: Signals) -> None:
        """After success (n - f correct primaries finished), let any other correct primary still
        training finish too, within one RPC deadline: summary.json then holds every correct model.
        Wakes on each exit and reads statuses at the end-of-run tick; the bound only caps a
        primary that can no longer finish (its peers gone)."""
        deadline = time.monotonic() + self.job.spec.training.timeouts.rpc_seconds
        while not watch.stop_reason:
            training = self.watcher.still_training()
            remaining = deadline - time.monotonic()
            if not training or remaining <= 0:
                return
            watch.wait(min(FINISH_INTERVAL, remaining))
            self.watcher.poll_statuses()

    def settle(self, watch: Signals, seconds: float) -> None:
        """Give finished replicas a moment to leave on their own (serving their peers' last requests)."""
        deadline = time.monotonic() + seconds
        while not watch.stop_reason and any(c.reap() is None for c in self.children):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            watch.wait(remaining)

    # -- stop --------------------------------------------------------------------------------------
    def stop(self) -> None:
        proc.stop(self.children, grace=self.grace)

    def replica_table(self) -> dict[str, dict[str, Any]]:
        table = {}
        for child in self.children:
            replica = self.replicas[child.name]
            table[child.name] = {
                "role": child.role, "index": child.index, "byzantine": child.byzantine,
                "attack": replica.attack.to_dict() if replica.attack else None,
                "pid": child.pid, "returncode": child.popen.returncode,
                "exit": child.describe_exit(), "stopped_by_launcher": child.stopped_by_launcher,
                "crashed": crashed(child), "log": str(child.log_path),
                "seconds": round((child.ended or time.monotonic()) - child.started, 2),
                "restarts": self.restarted.get(child.name, 0),
            }
        return table
