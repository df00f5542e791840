"""Throughput of Byzantine resilience: each attacked job against a plain single-server averaging job.

For every manifest in JOBS this runs, side by side in one invocation and on the same machine:
  * the job as written (e.g. MSMW: 4 servers with a Byzantine one, 7 workers with 2 Byzantine ones,
    robust rules), through the real local launcher (`garfield run`'s code path);
  * its plain twin: the same task, framework, workers, batch and transport, but one server,
    plain averaging, no Byzantine replica, no attack.
For each run it reports, next to the twin's figure and their ratio:
  1. steps/s, the median of the correct servers' own report (/status);
  2. CPU milliseconds per step by role (correct / Byzantine servers and workers): every replica's
     CPU time (user + system, sampled with psutil from the pids the launcher writes to
     <output_dir>/replicas.json until the replica exits), less what it had used at its own
     "first step" log line (start-up excluded), divided by the steps it did since. On a shared,
     CPU-bound machine this is the figure other work does not move;
  3. tensors fetched per step across the job, from every replica's quorum counts (its "done" log
     line, else the correct servers' last /status): each gradient quorum fetches q_w tensors, each
     model quorum q_s, each proposal quorum q_s - 1 (the server's own proposal is local); with the
     protocol's expectation and MB per step (tensors x parameters x bytes per parameter);
  4. the communication / aggregation / computation split of the correct servers' step time;
  5. start-up and end: launch -> first step and last step -> exit, read from the nodes' "first
     step" and "done" log lines as bench/startup.py does (its log readers), against this
     process's clock around `launch()`;
then measures the gRPC transfer speed of a 100 MB tensor between two processes
(garfield.transport.measure_transfer), and the cost of mutual TLS (issue 16):
  * the same 100 MB transfer, plaintext and over mutual TLS (a throwaway CA and two certificates),
    in alternating rounds: MB/s and seconds per fetch, median and range;
  * steps/s (and CPU ms/step) of real runs of TLS_JOBS with spec.security.mutualTLS on and off,
    --tls-repeats times each, alternating which variant goes first: median and range.
Results go to bench/results/throughput.md (and .json).
Targets (docs/design.md / issue 7): attacked >= 0.6x plain steps/s; transfer >= 1 GB/s. Nothing is
asserted: the targets are reported next to the figures.

    python bench/throughput.py [--steps 200] [--transfer-mb 100] [--tls-repeats 3] [MANIFEST ...]
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "runtime"))
sys.path.insert(0, str(ROOT / "bench"))

from garfield.launcher.local import launch  # noqa: E402
from garfield.launcher.summary import RunResult  # noqa: E402
from garfield.report.jobs import CpuSampler  # noqa: E402  (the report reads replicas' CPU the same way)
from garfield.spec.validation import Job, load_job, validate_manifest  # noqa: E402

from startup import _entries, _first  # noqa: E402  (the same log readers bench/startup.py times with)

# Each manifest is measured against its own plain twin.
JOBS = [
    "examples/mnist-msmw.yaml",
    "examples/mnist-msmw-keras.yaml",  # the same job in Keras: TensorFlow vs PyTorch side by side
    "examples/mnist-msmw-convnet.yaml",  # the same job with the MNIST convnet (about twice the parameters)
]
# Run with spec.security.mutualTLS on and off (issue 16): a replicated and a single-server job.
TLS_JOBS = ["examples/mnist-msmw.yaml", "examples/mnist-ssmw.yaml"]
TARGET_RATIO = 0.6
TARGET_TF_RATIO = 0.7  # issue 3: the TensorFlow job >= 0.7x the PyTorch job's steps/s (same model size)
TARGET_GBPS = 1.0
CPU_SAMPLE_SECONDS = 0.2  # how often every replica's CPU time is read while the job runs
ROLE_GROUPS = (("server", False, "correct servers"), ("server", True, "Byzantine servers"),
               ("worker", False, "correct workers"), ("worker", True, "Byzantine workers"))


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


def with_mutual_tls(job: Job, on: bool) -> Job:
    """`job` with spec.security.mutualTLS set to `on` (everything else as written)."""
    manifest = copy.deepcopy(job.manifest)
    manifest["spec"].setdefault("security", {})["mutualTLS"] = on
    return validate_manifest(manifest, source=f"{job.name} with mutualTLS {on}")


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _quorum_sizes(job: Job) -> dict[str, int]:
    """Tensors fetched from peers per quorum, by kind (a server's own proposal is local)."""
    spec = job.spec
    servers = spec.servers
    q_s = servers.quorum if servers else 0
    return {"gradient": spec.workers.quorum, "model": q_s, "proposal": max(0, q_s - 1)}


def expected_tensors_per_step(job: Job) -> int:
    """The protocol's count per step: each server fetches q_w gradients (+ q_s - 1 proposals when
    replicated), each worker q_s models. Byzantine replicas run the same loop."""
    spec = job.spec
    sizes = _quorum_sizes(job)
    n_s = spec.servers.replicas if spec.servers else 0
    per_server = sizes["gradient"] + (sizes["proposal"] if n_s > 1 else 0)
    return n_s * per_server + spec.workers.replicas * sizes["model"]


def _replica_facts(result: RunResult) -> dict[str, dict[str, Any]]:
    """Per replica: role, Byzantine or not, and what its log says (parameters, first step, done)."""
    facts = {}
    for name, info in result.replicas.items():
        entries = _entries(Path(info["log"]))
        listening = _first(entries, "listening") or {}
        first = _first(entries, "first step") or {}
        done = next((e for e in reversed(entries) if e.get("msg") == "done"), None) or {}
        quorums = done.get("quorums")
        source = "log"
        if not isinstance(quorums, dict) and isinstance((result.servers.get(name) or {}).get("quorums"), dict):
            quorums, source = result.servers[name]["quorums"], "status"
        facts[name] = {
            "role": info["role"], "byzantine": bool(info["byzantine"]),
            "params": listening.get("params"), "dtype": listening.get("dtype"),
            "first_step_ts": first.get("ts"), "first_step": first.get("step"), "cpu_at_first_step": first.get("cpu_seconds"),
            "done_ts": done.get("ts"), "done_step": done.get("step"),
            "quorums": quorums if isinstance(quorums, dict) else None,
            "quorums_from": source if isinstance(quorums, dict) else None,
        }
    return facts


def _cpu(facts: dict[str, dict[str, Any]], cpu_end: dict[str, float], steps: int) -> dict[str, Any]:
    """CPU ms per step by role group (summed over the group's replicas), and per replica."""
    per_replica: dict[str, dict[str, Any]] = {}
    for name, fact in facts.items():
        end = cpu_end.get(name)
        if end is None:
            continue
        base = fact["cpu_at_first_step"] if isinstance(fact["cpu_at_first_step"], (int, float)) else 0.0
        first = fact["first_step"] if isinstance(fact["first_step"], int) else 0
        last = fact["done_step"] if isinstance(fact["done_step"], int) else steps
        done = max(1, last - first)
        per_replica[name] = {"role": fact["role"], "byzantine": fact["byzantine"], "cpu_seconds": round(end, 3),
                             "startup_cpu_seconds": round(base, 3), "steps": done,
                             "ms_per_step": 1000 * (end - base) / done}
    groups: dict[str, dict[str, Any]] = {}
    for role, byzantine, label in ROLE_GROUPS:
        members = [r for r in per_replica.values() if r["role"] == role and r["byzantine"] == byzantine]
        if members:
            total = sum(r["ms_per_step"] for r in members)
            groups[label] = {"replicas": len(members), "ms_per_step": total, "ms_per_step_each": total / len(members)}
    return {
        "by_group": groups,
        "all_ms_per_step": sum(r["ms_per_step"] for r in per_replica.values()) if per_replica else None,
        "startup_cpu_seconds": sum(r["startup_cpu_seconds"] for r in per_replica.values()) if per_replica else None,
        "replicas_sampled": len(per_replica), "replicas": len(facts), "per_replica": per_replica,
    }


def _tensors(job: Job, facts: dict[str, dict[str, Any]], steps: int) -> dict[str, Any]:
    """Tensors fetched per step across the job, from the replicas' quorum counts."""
    sizes = _quorum_sizes(job)

    def gathered(quorums: dict[str, Any]) -> dict[str, int]:
        return {kind: int(c.get("gathered", 0)) for kind, c in quorums.items() if isinstance(c, dict)}

    reported = {name: gathered(f["quorums"]) for name, f in facts.items() if f["quorums"]}
    by_kind: dict[str, float] = {}
    estimated = 0
    for name, fact in facts.items():
        counts: dict[str, float] | None = reported.get(name)  # type: ignore[assignment]
        if counts is None:  # no "done" line (stopped first): the median of its role's replicas that reported
            peers = [reported[n] for n, f in facts.items() if n in reported and f["role"] == fact["role"]]
            if not peers:
                continue
            estimated += 1
            counts = {kind: statistics.median(p.get(kind, 0) for p in peers) for kind in {k for p in peers for k in p}}
        for kind, count in counts.items():
            by_kind[kind] = by_kind.get(kind, 0) + count * sizes.get(kind, 0)
    reporting = len(reported)
    params = next((f["params"] for f in facts.values() if isinstance(f["params"], int)), None)
    dtype = next((f["dtype"] for f in facts.values() if f["dtype"]), "float32")
    try:
        itemsize = np.dtype(dtype).itemsize
    except TypeError:
        itemsize = 4
    total = sum(by_kind.values())
    per_step = total / steps if steps and reporting else None
    expected = expected_tensors_per_step(job)
    return {
        "per_step": per_step, "expected_per_step": expected,
        "by_kind_per_step": {k: v / steps for k, v in sorted(by_kind.items())} if steps else {},
        "replicas_reporting": reporting, "replicas_estimated": estimated, "replicas": len(facts), "params": params,
        "bytes_per_param": itemsize,
        "mb_per_step": per_step * params * itemsize / 1e6 if per_step is not None and params else None,
        "expected_mb_per_step": expected * params * itemsize / 1e6 if params else None,
    }


def measure(result: RunResult, job: Job, launched: float, exited: float, cpu_end: dict[str, float]) -> dict[str, Any]:
    """Every figure of one run: speed, CPU per step, tensors per step, time split, start-up and end."""
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
    steps = result.to_dict()["steps"]
    facts = _replica_facts(result)
    correct_servers = [f for f in facts.values() if f["role"] in ("server", "peer") and not f["byzantine"]]
    first_steps = [f["first_step_ts"] for f in correct_servers if f["first_step_ts"]]
    dones = [f["done_ts"] for f in correct_servers if f["done_ts"]]
    return {
        "job": result.job,
        "outcome": result.outcome,
        "framework": job.spec.framework,
        "steps": steps,
        "steps_per_second": _median(speeds),
        "wall_seconds": round(result.wall_time, 1),
        "accuracy": accuracy["median"] if accuracy else None,
        "time_share": {k: _median(v) for k, v in sorted(shares.items())},
        "ms_per_step": {k: 1000 * statistics.median(vs) for k, vs in sorted(per_step.items()) if vs},
        "rejected": sum(result.rejected.values()),
        "cpu": _cpu(facts, cpu_end, steps),
        "tensors": _tensors(job, facts, steps),
        "launch_to_first_step_s": round(min(first_steps) - launched, 3) if first_steps else None,
        "launch_to_all_first_steps_s": round(max(first_steps) - launched, 3) if first_steps else None,
        "last_step_to_exit_s": round(exited - max(dones), 3) if dones else None,
        "launch_to_exit_s": round(exited - launched, 3),
    }


def run(job: Job, steps: int, out: Path) -> dict[str, Any]:
    """One job through the local launcher, its replicas' CPU sampled while it runs."""
    print(f"running {job.name} for {steps} steps ...", flush=True)
    output_dir = out / job.name
    output_dir.mkdir(parents=True, exist_ok=True)
    with CpuSampler(output_dir, CPU_SAMPLE_SECONDS) as sampler:
        launched = time.time()
        result = launch(job, output_dir, steps=steps, progress="lines", timeout=1800)
        exited = time.time()
    if result.outcome != "succeeded":
        print(f"  {job.name}: {result.outcome}: {result.message}", file=sys.stderr)
    return measure(result, job, launched, exited, dict(sampler.last))


def _fmt(value: float | None, spec: str) -> str:
    return format(value, spec) if isinstance(value, (int, float)) else "n/a"


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None


def _framework_lines(rows: list[dict[str, Any]]) -> list[str]:
    """TensorFlow jobs against the PyTorch job of the same setup (the first PyTorch row)."""
    torch_rows = [r["job"] for r in rows if r["job"].get("framework") == "pytorch"]
    tf_rows = [r["job"] for r in rows if r["job"].get("framework") == "tensorflow"]
    if not torch_rows or not tf_rows:
        return []
    ref = torch_rows[0]
    lines = ["", "## TensorFlow vs PyTorch", "",
             "| job | framework | steps/s | vs PyTorch (target >= 0.7) | CPU ms/step, all replicas | accuracy |",
             "|---|---|---|---|---|---|",
             f"| {ref['job']} | pytorch | {_fmt(ref['steps_per_second'], '.2f')} | 1.00 | "
             f"{_fmt(ref['cpu']['all_ms_per_step'], '.1f')} | {_fmt(ref['accuracy'], '.1%')} |"]
    for job in tf_rows:
        ratio = _ratio(job["steps_per_second"], ref["steps_per_second"])
        job["vs_pytorch"] = ratio
        job["vs_pytorch_cpu"] = _ratio(ref["cpu"]["all_ms_per_step"], job["cpu"]["all_ms_per_step"])
        verdict = "" if ratio is None else (" (met)" if ratio >= TARGET_TF_RATIO else " (MISSED)")
        lines.append(f"| {job['job']} | tensorflow | {_fmt(job['steps_per_second'], '.2f')} | {_fmt(ratio, '.2f')}{verdict} "
                     f"| {_fmt(job['cpu']['all_ms_per_step'], '.1f')} | {_fmt(job['accuracy'], '.1%')} |")
    lines += ["", "vs PyTorch by CPU per step (PyTorch's CPU ms/step / TensorFlow's, the load-insensitive "
                  "counterpart): " + ", ".join(f"{j['job']} {_fmt(j['vs_pytorch_cpu'], '.2f')}" for j in tf_rows) + "."]
    return lines


def _detail(row: dict[str, Any]) -> list[str]:
    """One job and its plain twin, figure by figure, with job / plain."""
    job, plain = row["job"], row["plain"]
    lines = [f"### {job['job']} vs {plain['job']}", "",
             f"| | {job['job']} | {plain['job']} | job / plain |", "|---|---|---|---|"]

    def add(label: str, a: float | None, b: float | None, spec: str, ratio: bool = True) -> None:
        lines.append(f"| {label} | {_fmt(a, spec)} | {_fmt(b, spec)} | {_fmt(_ratio(a, b), '.2f') if ratio else ''} |")

    add("steps/s (correct servers' median)", job["steps_per_second"], plain["steps_per_second"], ".2f")
    add("CPU ms/step, all replicas", job["cpu"]["all_ms_per_step"], plain["cpu"]["all_ms_per_step"], ".1f")
    for _, _, label in ROLE_GROUPS:
        a, b = job["cpu"]["by_group"].get(label), plain["cpu"]["by_group"].get(label)
        if not a and not b:
            continue
        cells = [f"{g['ms_per_step']:.1f} ({g['replicas']} x {g['ms_per_step_each']:.1f})" if g else "-" for g in (a, b)]
        lines.append(f"| CPU ms/step, {label} (replicas x each) | {cells[0]} | {cells[1]} | "
                     f"{_fmt(_ratio(a and a['ms_per_step'], b and b['ms_per_step']), '.2f')} |")
    add("start-up CPU s, all replicas (to their first step)", job["cpu"]["startup_cpu_seconds"],
        plain["cpu"]["startup_cpu_seconds"], ".1f")
    tj, tp = job["tensors"], plain["tensors"]
    add("tensors fetched/step, measured", tj["per_step"], tp["per_step"], ".1f")
    add("tensors fetched/step, protocol", tj["expected_per_step"], tp["expected_per_step"], ".0f")
    kinds = sorted(set(tj["by_kind_per_step"]) | set(tp["by_kind_per_step"]))
    for kind in kinds:
        add(f"&nbsp;&nbsp;{kind}s/step", tj["by_kind_per_step"].get(kind), tp["by_kind_per_step"].get(kind), ".1f", ratio=False)
    add(f"MB fetched/step (measured x {tj['params']} parameters x {tj['bytes_per_param']} B)", tj["mb_per_step"],
        tp["mb_per_step"], ".2f")
    for key in ("communication", "aggregation", "computation"):
        share_a, share_b = job["time_share"].get(key), plain["time_share"].get(key)
        ms_a, ms_b = job["ms_per_step"].get(key), plain["ms_per_step"].get(key)
        lines.append(f"| {key}: share of step, ms/step | {_fmt(share_a, '.0%')}, {_fmt(ms_a, '.1f')} | "
                     f"{_fmt(share_b, '.0%')}, {_fmt(ms_b, '.1f')} | {_fmt(_ratio(ms_a, ms_b), '.2f')} |")
    add("launch -> first step (s)", job["launch_to_first_step_s"], plain["launch_to_first_step_s"], ".2f")
    add("launch -> every correct server's first step (s)", job["launch_to_all_first_steps_s"],
        plain["launch_to_all_first_steps_s"], ".2f")
    add("last step -> exit (s)", job["last_step_to_exit_s"], plain["last_step_to_exit_s"], ".2f")
    add("launch -> exit (s)", job["launch_to_exit_s"], plain["launch_to_exit_s"], ".1f")
    add("accuracy (correct servers' median)", job["accuracy"], plain["accuracy"], ".1%", ratio=False)
    lines.append(f"| rejected messages | {job['rejected']} | {plain['rejected']} | |")
    lines.append(f"| outcome, steps | {job['outcome']}, {job['steps']} | {plain['outcome']}, {plain['steps']} | |")
    notes = []
    for run in (job, plain):
        cpu, tensors = run["cpu"], run["tensors"]
        if cpu["replicas_sampled"] < cpu["replicas"]:
            notes.append(f"{run['job']}: CPU sampled for {cpu['replicas_sampled']} of {cpu['replicas']} replicas")
        if tensors["replicas_reporting"] < tensors["replicas"]:
            notes.append(f"{run['job']}: quorum counts from {tensors['replicas_reporting']} of {tensors['replicas']} replicas' "
                         f"\"done\" lines ({tensors['replicas_estimated']} estimated from their role's median)")
    if notes:
        lines += ["", "Incomplete: " + "; ".join(notes) + "."]
    lines.append("")
    return lines


def _spread(values: list[float]) -> dict[str, Any]:
    """Median, min and max of `values` (None when empty), and the values."""
    clean = [float(v) for v in values if isinstance(v, (int, float))]
    return {"median": _median(clean), "min": min(clean) if clean else None, "max": max(clean) if clean else None,
            "n": len(clean), "values": clean}


def _range(stats: dict[str, Any], spec: str) -> str:
    """"median (min-max)" of a _spread."""
    if stats["median"] is None:
        return "n/a"
    return f"{format(stats['median'], spec)} ({format(stats['min'], spec)}-{format(stats['max'], spec)})"


def measure_tls_transfer(nbytes: int, rounds: int, repeats: int) -> dict[str, Any]:
    """The transfer probe plaintext and over mutual TLS, `rounds` alternating rounds of each (a fresh
    server process and channel per round, `repeats` timed fetches after a warm-up)."""
    from garfield.transport.throughput import measure_transfer

    results: dict[str, list[dict[str, Any]]] = {"plaintext": [], "mutual_tls": []}
    for index in range(rounds):
        order = (False, True) if index % 2 == 0 else (True, False)
        for tls in order:
            print(f"measuring {nbytes / 1e6:g} MB transfer, {'mutual TLS' if tls else 'plaintext'} "
                  f"(round {index + 1}/{rounds}) ...", flush=True)
            results["mutual_tls" if tls else "plaintext"].append(asdict(measure_transfer(nbytes, repeats, tls=tls)))
    summary: dict[str, Any] = {"bytes": nbytes, "rounds": rounds, "repeats": repeats}
    for variant, runs in results.items():
        seconds = [t for r in runs for t in r["seconds"]]
        summary[variant] = {"seconds": _spread(seconds), "mb_per_s": _spread([nbytes / 1e6 / t for t in seconds]),
                            "warmup_seconds": _spread([r["warmup_seconds"] for r in runs]), "runs": runs}
    summary["tls_vs_plaintext"] = _ratio(summary["mutual_tls"]["mb_per_s"]["median"],
                                         summary["plaintext"]["mb_per_s"]["median"])
    return summary


def run_tls_jobs(manifests: list[str], steps: int, repeats: int, out: Path) -> list[dict[str, Any]]:
    """Each manifest with mutualTLS on and off, `repeats` runs of each, alternating which goes first."""
    jobs = [load_job(ROOT / m if not os.path.isabs(m) else m) for m in manifests]
    runs: dict[tuple[int, bool], list[dict[str, Any]]] = {(i, on): [] for i in range(len(jobs)) for on in (True, False)}
    for repeat in range(repeats):
        for i, job in enumerate(jobs):
            for on in ((True, False) if (repeat + i) % 2 == 0 else (False, True)):
                print(f"[mutualTLS {'on' if on else 'off'}, repeat {repeat + 1}/{repeats}]", flush=True)
                runs[(i, on)].append(run(with_mutual_tls(job, on), steps, out / f"mtls-{repeat}-{'on' if on else 'off'}"))
    rows = []
    for i, (manifest, job) in enumerate(zip(manifests, jobs, strict=True)):
        row: dict[str, Any] = {"manifest": manifest, "job": job.name, "steps": steps, "repeats": repeats}
        for on in (True, False):
            done = runs[(i, on)]
            row["on" if on else "off"] = {
                "steps_per_second": _spread([r["steps_per_second"] for r in done]),
                "cpu_ms_per_step": _spread([r["cpu"]["all_ms_per_step"] for r in done]),
                "communication_ms_per_step": _spread([r["ms_per_step"].get("communication") for r in done]),
                "launch_to_first_step_s": _spread([r["launch_to_first_step_s"] for r in done]),
                "mb_per_step": _spread([r["tensors"]["mb_per_step"] for r in done]),
                "outcomes": [r["outcome"] for r in done], "rejected": sum(r["rejected"] for r in done),
                "accuracy": _spread([r["accuracy"] for r in done]),
            }
        row["steps_ratio"] = _ratio(row["on"]["steps_per_second"]["median"], row["off"]["steps_per_second"]["median"])
        row["cpu_ratio"] = _ratio(row["on"]["cpu_ms_per_step"]["median"], row["off"]["cpu_ms_per_step"]["median"])
        rows.append(row)
    return rows


def _tls_lines(mtls: dict[str, Any]) -> list[str]:
    """The cost of mutual TLS: the transfer probe and real runs, each on against off."""
    lines = ["", "## Mutual TLS: on vs off (issue 16)", "",
             "The jobs of the tables above run as shipped, so over mutual TLS (spec.security.mutualTLS defaults "
             "to true). Here the probe and two jobs run with it on and off, side by side.", ""]
    transfer = mtls.get("transfer")
    if transfer:
        p, t = transfer["plaintext"], transfer["mutual_tls"]
        lines += [f"### {transfer['bytes'] / 1e6:.0f} MB transfer, plaintext vs mutual TLS", "",
                  f"The probe above, {transfer['rounds']} alternating rounds per variant (a fresh server process, "
                  f"channel and handshake each), {transfer['repeats']} timed fetches a round: median (min-max) over "
                  f"the {p['seconds']['n']} fetches of each. Warm-up = the untimed first fetch of a round "
                  "(connection, TLS handshake, first allocation).", "",
                  f"| {transfer['bytes'] / 1e6:.0f} MB fetch | MB/s | seconds | warm-up fetch, s |", "|---|---|---|---|",
                  f"| plaintext | {_range(p['mb_per_s'], '.0f')} | {_range(p['seconds'], '.3f')} | "
                  f"{_range(p['warmup_seconds'], '.3f')} |",
                  f"| mutual TLS | {_range(t['mb_per_s'], '.0f')} | {_range(t['seconds'], '.3f')} | "
                  f"{_range(t['warmup_seconds'], '.3f')} |",
                  f"| TLS / plaintext | {_fmt(transfer['tls_vs_plaintext'], '.2f')} | "
                  f"{_fmt(_ratio(t['seconds']['median'], p['seconds']['median']), '.2f')} | |", ""]
    rows = mtls.get("jobs") or []
    if rows:
        lines += ["### steps/s of a real run, mutualTLS on vs off", "",
                  f"Each job as shipped, through the local launcher, {rows[0]['steps']} steps, "
                  f"{rows[0]['repeats']} runs per variant interleaved on/off (alternating which goes first): "
                  "median (min-max) over the runs. steps/s and CPU ms/step as in the tables above.", "",
                  "| job | steps/s, on | steps/s, off | on / off | CPU ms/step, on | CPU ms/step, off | on / off "
                  "| communication ms/step, on / off | launch -> first step s, on / off | outcomes |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for row in rows:
            on, off = row["on"], row["off"]
            outcomes = sorted(set(on["outcomes"]) | set(off["outcomes"]))
            lines.append(
                f"| {row['job']} | {_range(on['steps_per_second'], '.2f')} | {_range(off['steps_per_second'], '.2f')} | "
                f"{_fmt(row['steps_ratio'], '.2f')} | {_range(on['cpu_ms_per_step'], '.1f')} | "
                f"{_range(off['cpu_ms_per_step'], '.1f')} | {_fmt(row['cpu_ratio'], '.2f')} | "
                f"{_fmt(on['communication_ms_per_step']['median'], '.1f')} / "
                f"{_fmt(off['communication_ms_per_step']['median'], '.1f')} | "
                f"{_fmt(on['launch_to_first_step_s']['median'], '.2f')} / "
                f"{_fmt(off['launch_to_first_step_s']['median'], '.2f')} | {', '.join(outcomes)} |")
        lines.append("")
    return lines


def render(rows: list[dict[str, Any]], transfer: dict[str, Any] | None, env: dict[str, Any],
           mtls: dict[str, Any] | None = None) -> str:
    lines = ["# Throughput: Byzantine-resilient jobs vs plain single-server averaging", "",
             f"Measured {env['date']} on {env['machine']} ({env['cpus']} CPUs, torch threads per process set by "
             f"`garfield run`), {env['steps']} steps per job, all replicas local processes over gRPC on loopback, "
             f"forked from the launcher's fork server. 1-minute load average {env['load_before']:.1f} before, "
             f"{env['load_after']:.1f} after (other work shares these cores: absolute speeds vary with it; CPU per "
             "step, tensors per step and the ratios much less).", "",
             "* steps/s: the median over the correct servers of their own reported speed (recent steps).",
             "* CPU ms/step: every replica's CPU time (user + system, psutil, sampled every "
             f"{CPU_SAMPLE_SECONDS:g} s from the pids in replicas.json until it exits) less what it had used at its "
             "\"first step\" log line, divided by the steps it did since; summed over the replicas of each role "
             "(start-up excluded, the linger after the last step included). \"CPU-bound ratio\" = plain CPU/step "
             "/ job CPU/step: the steps/s ratio a machine whose cores are the bottleneck would see.",
             "* tensors fetched/step: every replica's quorums (the \"done\" log line's counts, by kind) times the "
             "tensors each fetches from peers (gradient: q_w = n_w - f_w, model: q_s = n_s - f_s, proposal: "
             "q_s - 1), Byzantine replicas included, over the job's steps; \"protocol\" is n_s (q_w + q_s - 1) + "
             "n_w q_s (no proposals with one server). Replies beyond a quorum (hedged asks, cancelled) are not "
             "counted; a replica stopped before its \"done\" line counts as its role's median (said below the "
             "table when it happens). MB = tensors x parameters x 4 bytes (float32).",
             "* time split: the correct servers' step time (communication = waiting for and receiving gradients "
             "and models, aggregation = the GARs, computation = optimizer step and evaluation; workers' "
             "gradient computation shows up as the servers' communication wait).",
             "* launch -> first step: this process's clock just before `launch()` to the first correct server's "
             "\"first step\" log line; last step -> exit: the last correct server's \"done\" line to `launch()` "
             "returning (all replicas reaped). As in bench/startup.py, but in-process: the `garfield run` "
             "interpreter's own start and imports are not included.", "",
             "## Overview", "",
             "| job | params | steps/s: job / plain (ratio, target >= 0.6) | CPU ms/step: job / plain "
             "(CPU-bound ratio) | tensors/step: job / plain | MB/step: job / plain | launch -> first step, s: "
             "job / plain | last step -> exit, s: job / plain | accuracy: job / plain |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        job, plain = row["job"], row["plain"]
        ratio = _ratio(job["steps_per_second"], plain["steps_per_second"])
        cpu_ratio = _ratio(plain["cpu"]["all_ms_per_step"], job["cpu"]["all_ms_per_step"])
        row["ratio"], row["cpu_ratio"] = ratio, cpu_ratio
        verdict = "" if ratio is None else (" met" if ratio >= TARGET_RATIO else " MISSED")
        params = job["tensors"]["params"]
        lines.append(
            f"| {job['job']} | {params if params else 'n/a'} | {_fmt(job['steps_per_second'], '.2f')} / "
            f"{_fmt(plain['steps_per_second'], '.2f')} ({_fmt(ratio, '.2f')}{verdict}) | "
            f"{_fmt(job['cpu']['all_ms_per_step'], '.1f')} / {_fmt(plain['cpu']['all_ms_per_step'], '.1f')} "
            f"({_fmt(cpu_ratio, '.2f')}) | {_fmt(job['tensors']['per_step'], '.1f')} / "
            f"{_fmt(plain['tensors']['per_step'], '.1f')} | {_fmt(job['tensors']['mb_per_step'], '.2f')} / "
            f"{_fmt(plain['tensors']['mb_per_step'], '.2f')} | {_fmt(job['launch_to_first_step_s'], '.2f')} / "
            f"{_fmt(plain['launch_to_first_step_s'], '.2f')} | {_fmt(job['last_step_to_exit_s'], '.2f')} / "
            f"{_fmt(plain['last_step_to_exit_s'], '.2f')} | {_fmt(job['accuracy'], '.1%')} / "
            f"{_fmt(plain['accuracy'], '.1%')} |")
    lines += ["", "## Each job next to its plain twin", ""]
    for row in rows:
        lines += _detail(row)
    lines += _framework_lines(rows)
    if transfer:
        gbps = transfer["gbps_median"]
        lines += ["", "## gRPC transfer speed", "",
                  f"A {transfer['bytes'] / 1e6:.0f} MB float32 tensor served by one process and fetched by another over the "
                  f"node transport (chunks of {transfer['chunk_bytes'] / 2**20:.0f} MiB, full validation on receipt), "
                  f"{transfer['repeats']} timed fetches after a warm-up: median {gbps:.2f} GB/s, best "
                  f"{transfer['gbps_best']:.2f} GB/s (target >= 1 GB/s: {'met' if gbps >= TARGET_GBPS else 'MISSED'})."]
    if mtls:
        lines += _tls_lines(mtls)
    lines += ["", f"Reproduce: `python bench/throughput.py --steps {env['steps']}"
              f"{' --tls-repeats ' + str(env['tls_repeats']) if env.get('tls_repeats') else ''}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifests", nargs="*", default=JOBS)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--transfer-mb", type=float, default=100.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tls-repeats", type=int, default=3,
                        help="runs per variant of each TLS job and transfer rounds per variant, mutualTLS on vs off (0: skip)")
    parser.add_argument("--tls-jobs", nargs="*", default=TLS_JOBS, help="manifests run with mutualTLS on and off")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "throughput.md")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    started = time.monotonic()
    rows = []
    with tempfile.TemporaryDirectory(prefix="garfield-bench-") as tmp:
        for manifest in args.manifests:
            job = load_job(ROOT / manifest if not os.path.isabs(manifest) else manifest)
            rows.append({"manifest": manifest, "job": run(job, args.steps, Path(tmp)),
                         "plain": run(plain_twin(job), args.steps, Path(tmp))})
        mtls: dict[str, Any] = {}
        if args.tls_repeats > 0 and args.tls_jobs:
            mtls["jobs"] = run_tls_jobs(args.tls_jobs, args.steps, args.tls_repeats, Path(tmp))
    transfer = None
    if args.transfer_mb > 0:
        from garfield.transport.throughput import measure_transfer

        print(f"measuring gRPC transfer of {args.transfer_mb:g} MB ...", flush=True)
        transfer = asdict(measure_transfer(int(args.transfer_mb * 1e6), repeats=args.repeats))
        if args.tls_repeats > 0:
            mtls["transfer"] = measure_tls_transfer(int(args.transfer_mb * 1e6), args.tls_repeats, args.repeats)
    env = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.machine(),
           "cpus": os.cpu_count(), "steps": args.steps, "tls_repeats": args.tls_repeats,
           "load_before": load_before, "load_after": os.getloadavg()[0],
           "bench_seconds": round(time.monotonic() - started, 1)}
    text = render(rows, transfer, env, mtls or None)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    args.output.with_suffix(".json").write_text(json.dumps({"env": env, "jobs": rows, "transfer": transfer,
                                                                  "mutual_tls": mtls or None}, indent=2) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
