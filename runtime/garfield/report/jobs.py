"""Running the report's jobs: simulations in a pool of processes, real runs one at a time.

A job is its manifest; its key is a hash of the manifest, so a configuration that several
sections ask for (the rules' no-attack runs, say) runs once. Invalid configurations (a rule's
resilience condition fails on the sizes) are recorded with validation's message instead of run.
Simulations run `jobs` at a time, each process on one torch thread; real runs (`garfield run`,
the replicas as local processes over gRPC) run alone, after every simulation, so their timings
share the cores with nothing the report started. With a kept work folder (--work-dir), each
result is also saved there, and a rerun resumes from what is saved.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import multiprocessing
import shutil
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import psutil
import yaml

from garfield.report.grid import Knobs, manifest
from garfield.spec.validation import InvalidJob, load_job

Result = dict[str, Any]


@dataclass(frozen=True)
class JobRequest:
    knobs: Knobs
    real: bool = False  # garfield run (processes, gRPC) instead of garfield simulate

    @property
    def key(self) -> str:
        document = manifest("job", self.knobs)
        text = json.dumps({"real": self.real, "manifest": document}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _evaluations(log: Path, primary: str) -> list[list[float]]:
    """[step, median accuracy over the correct primaries, seconds since the first step] per evaluation."""
    by_step: dict[int, list[float]] = {}
    at: dict[int, float] = {}
    first: float | None = None
    for line in log.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("msg") == "first step" and first is None:
            first = float(entry["ts"])
        if entry.get("msg") == "evaluation" and entry.get("role") == primary and not entry.get("byzantine"):
            step = int(entry["step"])
            by_step.setdefault(step, []).append(float(entry["accuracy"]))
            at[step] = float(entry["ts"])
    start = first if first is not None else min(at.values(), default=0.0)
    return [[step, statistics.median(accs), round(at[step] - start, 3)] for step, accs in sorted(by_step.items())]


def _summarise(summary: dict[str, Any], wall: float) -> Result:
    servers = summary.get("servers") or {}
    speeds = [s["steps_per_second"] for s in servers.values() if isinstance(s.get("steps_per_second"), (int, float))]
    timings = [s["timing"] for s in servers.values() if isinstance(s.get("timing"), dict) and s["timing"].get("steps")]
    timing = None
    if timings:
        timing = {k: statistics.mean(t[k] for t in timings) for k in ("communication", "aggregation", "computation")}
    accuracy = (summary.get("accuracy") or {}).get("median")
    return {"outcome": summary.get("outcome"), "message": summary.get("message"), "accuracy": accuracy,
            "steps": summary.get("steps"), "wall": round(wall, 3),
            "steps_per_second": statistics.median(speeds) if speeds else None, "timing": timing}


def _pool_init() -> None:
    import torch

    torch.set_num_threads(1)  # the pool's processes share the cores: one thread each


def simulate_one(path: str, out: str) -> Result:
    """One simulation (in a pool process): its summary, and its evaluations from the log."""
    from garfield.simulate import simulate

    job = load_job(path)
    started = time.monotonic()
    result = simulate(job, Path(out), progress="none")
    out_dir = Path(out)
    summary = json.loads((out_dir / "summary.json").read_text())
    record = _summarise(summary, time.monotonic() - started)
    record["history"] = _evaluations(out_dir / "logs" / "simulation.log", str(job.spec.topology.primary_role))
    record["outcome"] = result.outcome
    shutil.rmtree(out_dir / "models", ignore_errors=True)
    return record


class CpuSampler:
    """Every replica's CPU seconds (user + system) of a real run, sampled in a thread from the pids
    the launcher writes to <run>/replicas.json; an exited replica keeps its last reading."""

    def __init__(self, run_dir: Path, interval: float = 0.2) -> None:
        self.table = run_dir / "replicas.json"
        self.interval = interval
        self.last: dict[str, float] = {}
        self._processes: dict[str, psutil.Process] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="report-cpu", daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def total(self) -> float:
        self.sample()
        with self._lock:
            return sum(self.last.values())

    def sample(self) -> None:
        with self._lock:
            for name, process in list(self._processes.items()):
                try:
                    times = process.cpu_times()
                    if process.status() == psutil.STATUS_ZOMBIE:
                        del self._processes[name]
                except psutil.Error:
                    del self._processes[name]
                    continue
                self.last[name] = times.user + times.system

    def _attach(self) -> None:
        try:
            table = json.loads(self.table.read_text())
        except (OSError, ValueError):
            return
        with self._lock:
            for name, info in table.items():
                try:
                    self._processes[name] = psutil.Process(int(info["pid"]))
                except (psutil.Error, KeyError, TypeError, ValueError):
                    continue

    def _loop(self) -> None:
        while not self._processes and not self._stop.is_set():
            self._attach()
            if not self._processes:
                self._stop.wait(0.05)
        while self._processes and not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)


def log_facts(logs: Path, primary: str) -> dict[str, Any]:
    """What the nodes' logs of a real run say: per role, the correct replicas' mean seconds per
    step in each activity (the "done" line carries the whole run's timing); the correct
    primaries' median steps/s from their "first step" to their "done" line; each replica's CPU
    seconds at its first step. A primary's communication is its step time (first step to done)
    less its aggregation and computation, so the start-up wait of step 1 is left out."""
    by_role: dict[str, list[dict[str, Any]]] = {}
    speeds: list[float] = []
    first_cpu: dict[str, float] = {}
    for path in sorted(logs.glob("*.log")):
        first: dict[str, Any] | None = None
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("msg") == "first step" and first is None:
                first = entry
                if isinstance(entry.get("cpu_seconds"), (int, float)):
                    first_cpu[path.stem] = float(entry["cpu_seconds"])
            timing = entry.get("timing")
            if entry.get("msg") != "done" or entry.get("byzantine") or not isinstance(timing, dict) or not timing.get("steps"):
                continue
            if entry.get("role") == primary and first is not None and float(entry["ts"]) > float(first["ts"]):
                per_step = (float(entry["ts"]) - float(first["ts"])) / max(1, int(entry["step"]) - int(first["step"]))
                speeds.append(1 / per_step)
                # The first step's wait for peers still starting sits in its communication: on the primary's
                # clock, communication is the step time less its aggregation and computation.
                timing = dict(timing, communication=max(0.0, per_step - float(timing["aggregation"])
                                                        - float(timing["computation"])))
            by_role.setdefault(str(entry.get("role")), []).append(timing)
    return {"roles": {role: {k: statistics.mean(float(t[k]) for t in ts) for k in ("communication", "aggregation", "computation")}
                      for role, ts in by_role.items()},
            "steps_per_second": statistics.median(speeds) if speeds else None, "first_cpu": first_cpu}


def run_real(path: Path, out: Path) -> Result:
    """One `garfield run` (in this process's main thread: the launcher handles signals), with the
    CPU of all its replicas from their first step on, per step (psutil readings less the CPU each
    replica's "first step" log line reports)."""
    from garfield.launcher.local import launch

    job = load_job(path)
    with CpuSampler(out) as sampler:
        started = time.monotonic()
        result = launch(job, out, progress="none")
        wall = time.monotonic() - started
        sampler.sample()
        last = dict(sampler.last)
    summary = json.loads((out / "summary.json").read_text())
    primary = str(job.spec.topology.primary_role)
    facts = log_facts(out / "logs", primary)
    record = _summarise(summary, wall)
    record["outcome"] = result.outcome
    record["roles"] = facts["roles"]
    if primary in facts["roles"]:
        record["timing"] = facts["roles"][primary]
    if facts["steps_per_second"] is not None:
        record["steps_per_second"] = facts["steps_per_second"]
    steps = float(summary.get("steps") or 0)
    first_cpu: dict[str, float] = facts["first_cpu"]
    if last and steps > 1 and all(name in first_cpu for name in last):
        record["cpu_ms_per_step"] = 1000 * sum(last[n] - first_cpu[n] for n in last) / (steps - 1)
    shutil.rmtree(out / "models", ignore_errors=True)
    return record


@dataclass
class Runner:
    """Runs the requests it is given (each key once), keeping every result by key."""

    work_dir: Path
    jobs: int = 2
    log: Callable[[str], None] = print
    saved_only: bool = False  # render from the results saved in work_dir; run nothing
    results: dict[str, Result] = field(default_factory=dict)
    timings: dict[str, list[float]] = field(default_factory=lambda: {"simulate": [], "run": []})

    def _prepare(self, request: JobRequest) -> Path | None:
        """The manifest on disk, or None (and an 'invalid' result) when validation refuses it."""
        key = request.key
        path = self.work_dir / "manifests" / f"{key}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(manifest(f"r-{key}", request.knobs), sort_keys=False))
        try:
            load_job(path)
        except InvalidJob as exc:
            self.results[key] = {"outcome": "invalid", "message": str(exc).splitlines()[-1].strip(), "accuracy": None}
            return None
        return path

    def _saved(self, key: str) -> Path:
        return self.work_dir / "results" / f"{key}.json"

    def _keep(self, key: str, result: Result) -> None:
        """Record a result, also on disk: a report rerun on the same --work-dir resumes from there."""
        self.results[key] = result
        path = self._saved(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result))

    def run(self, requests: list[JobRequest]) -> None:
        for request in requests:
            saved = self._saved(request.key)
            if request.key not in self.results and saved.exists():
                self.results[request.key] = json.loads(saved.read_text())
        todo: dict[str, JobRequest] = {}
        for request in requests:
            if request.key not in self.results and request.key not in todo:
                todo[request.key] = request
        if self.saved_only:
            # Validation runs nothing: a configuration it refuses reads "not valid" with the reason, not "not run".
            for request in todo.values():
                self._prepare(request)
            return
        sims = [(k, p) for k, r in todo.items() if not r.real and (p := self._prepare(r)) is not None]
        reals = [(k, p) for k, r in todo.items() if r.real and (p := self._prepare(r)) is not None]
        if sims:
            self._simulate(sims)
        for i, (key, path) in enumerate(reals, 1):
            out = self.work_dir / "runs" / key
            try:
                self._keep(key, run_real(path, out))
            except Exception as exc:  # a failed run is a result the report shows, not the report's end
                self._keep(key, {"outcome": "error", "message": repr(exc), "accuracy": None})
            self.timings["run"].append(float(self.results[key].get("wall") or 0.0))
            self.log(f"  real run {i}/{len(reals)} {key}: {self.results[key].get('outcome')} "
                     f"({self.results[key].get('wall', 0):.1f} s)")

    def _simulate(self, sims: list[tuple[str, Path]]) -> None:
        context = multiprocessing.get_context("spawn")
        started = time.monotonic()
        with concurrent.futures.ProcessPoolExecutor(max_workers=self.jobs, mp_context=context, initializer=_pool_init) as pool:
            futures = {pool.submit(simulate_one, str(path), str(self.work_dir / "sims" / key)): key for key, path in sims}
            for done, future in enumerate(concurrent.futures.as_completed(futures), 1):
                key = futures[future]
                try:
                    self._keep(key, future.result())
                except Exception as exc:
                    self._keep(key, {"outcome": "error", "message": repr(exc), "accuracy": None})
                self.timings["simulate"].append(float(self.results[key].get("wall") or 0.0))
                if done % 10 == 0 or done == len(sims):
                    self.log(f"  simulations {done}/{len(sims)} ({time.monotonic() - started:.0f} s)")

    def get(self, request: JobRequest) -> Result:
        return self.results.get(request.key, {"outcome": "missing", "accuracy": None})
