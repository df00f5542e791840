"""TensorFlow vs PyTorch on the same job, measured so that other work on the machine cancels out.

`bench/throughput.py` reports each job's steps/s, which on a shared 2-core machine moves with
whatever else runs. This benchmark runs the PyTorch example and its Keras twin (same Byzantine
setup, same model size) alternately, several times, through the real local launcher, and samples
every replica's CPU time (user + system) as the correct server passes step marks: CPU seconds
per training step, start-up excluded, summed over all replicas. On a CPU-bound machine that is
the cost that sets steps/s, and it does not change when other processes slow the run down.
It also records the steps/s the servers reported. Results: bench/results/frameworks.md (+ .json).
Target (issue 3): TensorFlow >= 0.7x PyTorch steps/s, i.e. a CPU-per-step ratio PyTorch/TensorFlow
>= 0.7.

    python bench/frameworks.py [--steps 300] [--repeats 2] [--plain]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "runtime"))
sys.path.insert(0, str(ROOT / "bench"))

from garfield.launcher.local import launch  # noqa: E402
from garfield.spec.validation import Job, load_job  # noqa: E402

from throughput import plain_twin  # noqa: E402

JOBS = {"pytorch": "examples/mnist-msmw.yaml", "tensorflow": "examples/mnist-msmw-keras.yaml"}
TARGET = 0.7
WARMUP_STEPS = 30  # first mark: past start-up, tracing and the first evaluation's compilation


def _replica_cpu() -> dict[str, float]:
    """CPU seconds so far of every node process under this one, by replica name."""
    out: dict[str, float] = {}
    for child in psutil.Process().children(recursive=True):
        try:
            if "node" not in child.cmdline():
                continue
            env = child.environ()
            times = child.cpu_times()
            out[f"{env.get('GARFIELD_ROLE', '?')}-{env.get('GARFIELD_INDEX', '?')}"] = times.user + times.system
        except (psutil.Error, OSError):
            continue
    return out


def measure(job: Job, steps: int, out: Path) -> dict[str, Any]:
    """One run: CPU milliseconds per step (total and per role) between the warm-up mark and the
    last status read of the first correct server, and the servers' reported steps/s."""
    marks: list[tuple[int, float, dict[str, float]]] = []
    watched: list[str] = []

    def on_status(name: str, status: dict[str, Any]) -> None:
        if not watched:
            watched.append(name)
        if name == watched[0] and int(status.get("step") or 0) >= WARMUP_STEPS:
            marks.append((int(status["step"]), time.monotonic(), _replica_cpu()))

    result = launch(job, out / job.name, steps=steps, progress="none", timeout=1800, on_status=on_status)
    if result.outcome != "succeeded" or len(marks) < 2:
        return {"job": job.name, "outcome": result.outcome, "message": result.message}
    (s0, t0, c0), (s1, t1, c1) = marks[0], marks[-1]
    done = s1 - s0
    per_replica = {k: (c1[k] - c0[k]) / done * 1e3 for k in c1 if k in c0}
    roles: dict[str, list[float]] = {}
    for name, ms in per_replica.items():
        roles.setdefault(name.split("-")[0], []).append(ms)
    speeds = [float(s["steps_per_second"]) for s in result.servers.values()
              if s and isinstance(s.get("steps_per_second"), (int, float))]
    return {"job": job.name, "outcome": result.outcome, "steps_measured": done,
            "cpu_ms_per_step": sum(per_replica.values()),
            "cpu_ms_per_step_by_role": {r: statistics.mean(v) for r, v in roles.items()},
            "steps_per_second": statistics.median(speeds) if speeds else None,
            "wall_steps_per_second": done / (t1 - t0) if t1 > t0 else None,
            "accuracy": (result.accuracy_stats() or {}).get("median")}


def render(runs: dict[str, list[dict[str, Any]]], env: dict[str, Any]) -> str:
    def med(framework: str, key: str) -> float | None:
        values = [r[key] for r in runs[framework] if isinstance(r.get(key), (int, float))]
        return statistics.median(values) if values else None

    lines = ["# TensorFlow vs PyTorch: the same Byzantine job", "",
             f"Measured {env['date']} on {env['machine']} ({env['cpus']} CPUs, load average {env['load_before']:.1f} "
             f"before, {env['load_after']:.1f} after), {env['steps']} steps per run, {env['repeats']} runs per framework, "
             f"alternating. Jobs: {', '.join(f'`{p}`' for p in env['jobs'].values())}.",
             "CPU ms/step: CPU time of all replicas per training step after step "
             f"{WARMUP_STEPS} (start-up excluded), the cost that sets steps/s on a CPU-bound machine whatever "
             "else runs on it. steps/s: the correct servers' own report (moves with the machine's load).", "",
             "| framework | CPU ms/step (all replicas) | server | worker | steps/s (reported) | accuracy | runs |",
             "|---|---|---|---|---|---|---|"]
    for framework in runs:
        roles = [r["cpu_ms_per_step_by_role"] for r in runs[framework] if "cpu_ms_per_step_by_role" in r]
        role = {k: statistics.median([x[k] for x in roles if k in x]) for k in ("server", "worker")} if roles else {}
        lines.append(f"| {framework} | {med(framework, 'cpu_ms_per_step') or float('nan'):.1f} | "
                     f"{role.get('server', float('nan')):.2f} | {role.get('worker', float('nan')):.2f} | "
                     f"{med(framework, 'steps_per_second') or float('nan'):.2f} | "
                     f"{(med(framework, 'accuracy') or float('nan')):.1%} | "
                     f"{', '.join(r['outcome'] for r in runs[framework])} |")
    torch_cpu, tf_cpu = med("pytorch", "cpu_ms_per_step"), med("tensorflow", "cpu_ms_per_step")
    if torch_cpu and tf_cpu:
        ratio = torch_cpu / tf_cpu
        verdict = "met" if ratio >= TARGET else "MISSED"
        lines += ["", f"TensorFlow throughput relative to PyTorch (CPU per step, PyTorch / TensorFlow): **{ratio:.2f}** "
                      f"(target >= {TARGET}: {verdict})."]
        torch_sps, tf_sps = med("pytorch", "steps_per_second"), med("tensorflow", "steps_per_second")
        if torch_sps and tf_sps:
            lines.append(f"Reported steps/s ratio: {tf_sps / torch_sps:.2f} (medians; noisy on a shared machine).")
    lines += ["", f"Reproduce: `python bench/frameworks.py --steps {env['steps']} --repeats {env['repeats']}"
                  f"{' --plain' if env['plain'] else ''}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--plain", action="store_true", help="measure the plain single-server twins instead")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "frameworks.md")
    args = parser.parse_args(argv)

    jobs = {fw: load_job(ROOT / path) for fw, path in JOBS.items()}
    if args.plain:
        jobs = {fw: plain_twin(job) for fw, job in jobs.items()}
    runs: dict[str, list[dict[str, Any]]] = {fw: [] for fw in jobs}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="garfield-frameworks-") as tmp:
        for repeat in range(args.repeats):
            for framework, job in jobs.items():
                print(f"run {repeat + 1}/{args.repeats}: {job.name} ({framework}) ...", flush=True)
                row = measure(job, args.steps, Path(tmp) / str(repeat))
                print(f"  {row}", flush=True)
                runs[framework].append(row)
    env = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.machine(),
           "cpus": os.cpu_count(), "steps": args.steps, "repeats": args.repeats, "plain": args.plain,
           "jobs": JOBS, "load_before": load_before, "load_after": os.getloadavg()[0]}
    text = render(runs, env)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    args.output.with_suffix(".json").write_text(json.dumps({"env": env, "runs": runs}, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
