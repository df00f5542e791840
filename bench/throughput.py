"""Throughput of Byzantine resilience: each attacked job against a plain single-server averaging job.

For every manifest in JOBS this runs, side by side in one invocation and on the same machine:
  * the job as written (e.g. MSMW: 4 servers with a Byzantine one, 7 workers with 2 Byzantine ones,
    robust rules), through the real local launcher (`garfield run`'s code path);
  * its plain twin: the same task, framework, workers, batch and transport, but one server,
    plain averaging, no Byzantine replica, no attack.
It reads steps/s and the communication / aggregation / computation time split from the correct
servers' /status, then measures the gRPC transfer speed of a 100 MB tensor between two processes
(garfield.transport.measure_transfer). Results go to bench/results/throughput.md (and .json).
Targets (docs/design.md / issue 7): attacked >= 0.6x plain steps/s; transfer >= 1 GB/s.

    python bench/throughput.py [--steps 200] [--transfer-mb 100] [MANIFEST ...]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "runtime"))

from garfield.launcher.local import launch  # noqa: E402
from garfield.launcher.summary import RunResult  # noqa: E402
from garfield.spec.validation import Job, load_job, validate_manifest  # noqa: E402

# One line per framework: each manifest is measured against its own plain twin.
JOBS = [
    "examples/mnist-msmw.yaml",
    "examples/mnist-msmw-keras.yaml",  # the same job in Keras: TensorFlow vs PyTorch side by side
]
TARGET_RATIO = 0.6
TARGET_TF_RATIO = 0.7  # issue 3: the TensorFlow job >= 0.7x the PyTorch job's steps/s (same model size)
TARGET_GBPS = 1.0


def plain_twin(job: Job) -> Job:
    """Same task, training and worker count; one correct server, averaging, nobody Byzantine."""
    manifest = copy.deepcopy(job.manifest)
    manifest["metadata"]["name"] = f"{job.name}-plain"[:51]
    spec = manifest["spec"]
    spec.pop("attack", None)
    spec["topology"] = "ssmw"
    template = (spec.get("servers") or {}).get("template")
    spec["servers"] = {"replicas": 1, "byzantine": 0, "gar": {"name": "average"}}
    if template:
        spec["servers"]["template"] = template
    spec["workers"]["byzantine"] = 0
    spec["workers"]["gar"] = {"name": "average"}
    return validate_manifest(manifest, source=f"plain twin of {job.name}")


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def measure(result: RunResult) -> dict[str, Any]:
    """steps/s and the time split, medians over the correct servers' final /status."""
    statuses = [s for s in result.servers.values() if s]
    speeds = [float(s["steps_per_second"]) for s in statuses if isinstance(s.get("steps_per_second"), (int, float))]
    shares: dict[str, list[float]] = {}
    per_step: dict[str, list[float]] = {}
    for status in statuses:
        timing = status.get("timing") or {}
        for key, value in (timing.get("share") or {}).items():
            shares.setdefault(key, []).append(float(value))
        for key in ("communication", "aggregation", "computation"):  # mean seconds per step of each
            if isinstance(timing.get(key), (int, float)):
                per_step.setdefault(key, []).append(float(timing[key]))
    accuracy = result.accuracy_stats()
    return {
        "job": result.job,
        "outcome": result.outcome,
        "steps": result.to_dict()["steps"],
        "steps_per_second": _median(speeds),
        "wall_seconds": round(result.wall_time, 1),
        "accuracy": accuracy["median"] if accuracy else None,
        "time_share": {k: _median(v) for k, v in sorted(shares.items())},
        "ms_per_step": {k: 1000 * statistics.median(vs) for k, vs in sorted(per_step.items()) if vs},
        "rejected": sum(result.rejected.values()),
    }


def run(job: Job, steps: int, out: Path) -> dict[str, Any]:
    print(f"running {job.name} for {steps} steps ...", flush=True)
    result = launch(job, out / job.name, steps=steps, progress="lines", timeout=1800)
    if result.outcome != "succeeded":
        print(f"  {job.name}: {result.outcome}: {result.message}", file=sys.stderr)
    return {**measure(result), "framework": job.spec.framework}


def _fmt(value: float | None, spec: str) -> str:
    return format(value, spec) if value is not None else "n/a"


def _framework_lines(rows: list[dict[str, Any]]) -> list[str]:
    """TensorFlow jobs against the PyTorch job of the same setup (the first PyTorch row)."""
    torch_rows = [r["job"] for r in rows if r["job"].get("framework") == "pytorch"]
    tf_rows = [r["job"] for r in rows if r["job"].get("framework") == "tensorflow"]
    if not torch_rows or not tf_rows:
        return []
    ref = torch_rows[0]
    lines = ["", "## TensorFlow vs PyTorch", "",
             "| job | framework | steps/s | vs PyTorch (target >= 0.7) | accuracy |", "|---|---|---|---|---|",
             f"| {ref['job']} | pytorch | {_fmt(ref['steps_per_second'], '.2f')} | 1.00 | {_fmt(ref['accuracy'], '.1%')} |"]
    for job in tf_rows:
        ratio = (job["steps_per_second"] / ref["steps_per_second"]
                 if job["steps_per_second"] and ref["steps_per_second"] else None)
        job["vs_pytorch"] = ratio
        verdict = "" if ratio is None else (" (met)" if ratio >= TARGET_TF_RATIO else " (MISSED)")
        lines.append(f"| {job['job']} | tensorflow | {_fmt(job['steps_per_second'], '.2f')} | {_fmt(ratio, '.2f')}{verdict} "
                     f"| {_fmt(job['accuracy'], '.1%')} |")
    return lines


def render(rows: list[dict[str, Any]], transfer: dict[str, Any] | None, env: dict[str, Any]) -> str:
    lines = ["# Throughput: Byzantine-resilient jobs vs plain single-server averaging", "",
             f"Measured {env['date']} on {env['machine']} ({env['cpus']} CPUs, torch threads per process set by "
             f"`garfield run`), {env['steps']} steps per job, all replicas local processes over gRPC on loopback. "
             f"1-minute load average {env['load_before']:.1f} before, {env['load_after']:.1f} after (other work "
             "shares these cores: absolute speeds vary with it, the side-by-side ratio much less).",
             "steps/s is the median over the correct servers of their own reported speed; the time split is the "
             "share of each correct server's step time (communication = waiting for and receiving gradients and "
             "models, aggregation = the GARs, computation = optimizer step and evaluation; workers' gradient "
             "computation shows up as the servers' communication wait).", "",
             "| job | steps/s | plain twin steps/s | ratio (target >= 0.6) | communication | aggregation | computation "
             "| accuracy | plain accuracy |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        job, plain = row["job"], row["plain"]
        ratio = (job["steps_per_second"] / plain["steps_per_second"]
                 if job["steps_per_second"] and plain["steps_per_second"] else None)
        row["ratio"] = ratio
        share = job["time_share"]
        verdict = "" if ratio is None else (" (met)" if ratio >= TARGET_RATIO else " (MISSED)")
        lines.append(
            f"| {job['job']} | {_fmt(job['steps_per_second'], '.2f')} | {_fmt(plain['steps_per_second'], '.2f')} | "
            f"{_fmt(ratio, '.2f')}{verdict} | {_fmt(share.get('communication'), '.0%')} | "
            f"{_fmt(share.get('aggregation'), '.0%')} | {_fmt(share.get('computation'), '.0%')} | "
            f"{_fmt(job['accuracy'], '.1%')} | {_fmt(plain['accuracy'], '.1%')} |")
    lines.append("")
    lines.append("Mean milliseconds per step on the correct servers: " + "; ".join(
        f"{row[kind]['job']}: " + ", ".join(f"{k} {v:.1f}" for k, v in row[kind]["ms_per_step"].items())
        for row in rows for kind in ("job", "plain")) + ".")
    lines.append("")
    lines.append("Plain twins' time split: " + "; ".join(
        f"{row['plain']['job']}: " + ", ".join(f"{k} {v:.0%}" for k, v in row["plain"]["time_share"].items() if v is not None)
        for row in rows))
    lines += _framework_lines(rows)
    if transfer:
        gbps = transfer["gbps_median"]
        lines += ["", "## gRPC transfer speed", "",
                  f"A {transfer['bytes'] / 1e6:.0f} MB float32 tensor served by one process and fetched by another over the "
                  f"node transport (chunks of {transfer['chunk_bytes'] / 2**20:.0f} MiB, full validation on receipt), "
                  f"{transfer['repeats']} timed fetches after a warm-up: median {gbps:.2f} GB/s, best "
                  f"{transfer['gbps_best']:.2f} GB/s (target >= 1 GB/s: {'met' if gbps >= TARGET_GBPS else 'MISSED'})."]
    lines += ["", f"Reproduce: `python bench/throughput.py --steps {env['steps']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifests", nargs="*", default=JOBS)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--transfer-mb", type=float, default=100.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "throughput.md")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="garfield-bench-") as tmp:
        for manifest in args.manifests:
            job = load_job(ROOT / manifest if not os.path.isabs(manifest) else manifest)
            rows.append({"job": run(job, args.steps, Path(tmp)), "plain": run(plain_twin(job), args.steps, Path(tmp))})
    transfer = None
    if args.transfer_mb > 0:
        from garfield.transport import measure_transfer

        print(f"measuring gRPC transfer of {args.transfer_mb:g} MB ...", flush=True)
        transfer = asdict(measure_transfer(int(args.transfer_mb * 1e6), repeats=args.repeats))
    env = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.machine(),
           "cpus": os.cpu_count(), "steps": args.steps, "load_before": load_before, "load_after": os.getloadavg()[0]}
    text = render(rows, transfer, env)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    args.output.with_suffix(".json").write_text(json.dumps({"env": env, "jobs": rows, "transfer": transfer}, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
