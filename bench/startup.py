"""Start-up and shutdown of a local run, with and without the preloaded fork server.

Runs the main example (examples/mnist-msmw.yaml: 4 servers, 7 workers, attackers of both kinds)
through `garfield run` as a user would, shortened to --steps (default 100), for each mode: once
to warm the caches (page cache, numba's kernel cache, the MNIST .npy), then --repeat measured
times. Every figure comes from the run itself, never from a guess:

* launch -> first step: from the moment `garfield run` is started (this script's clock, just
  before the exec) to the first "first step" log line of a correct server (the first model
  update of the job); "all" is the last correct server's;
* last step -> exit: from the last correct server's "done" log line to the `garfield run`
  process having exited (all replicas stopped and reaped, summary.json written);
* the start-up breakdown: medians over the replicas of the phases their "startup" lines time
  (process start = exec or fork, imports, task, build), the gRPC "listening" line, and the fork
  server's own "ready" line (its imports and warm-up);
* final accuracy of each correct server: summary.json's, i.e. the servers' "done" lines.

Results: bench/results/startup.json and bench/results/startup.md. Not a test: no thresholds are
asserted; the targets (warm run: launch -> first step <= 5 s, last step -> exit <= 2 s) are
reported next to the figures.

    .venv/bin/python bench/startup.py [--steps 100] [--repeat 1] [--manifest examples/mnist-msmw.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TARGET_FIRST_STEP = 5.0
TARGET_EXIT = 2.0
MODES = {"fork server": "1", "fresh processes": "0"}


def _entries(path: Path) -> list[dict[str, Any]]:
    out = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        if line.startswith("{"):
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                out.append(entry)
    return out


def _first(entries: list[dict[str, Any]], msg: str) -> dict[str, Any] | None:
    return next((e for e in entries if e.get("msg") == msg), None)


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 3) if values else None


def measure(manifest: Path, steps: int, fork_server: str, out: Path) -> dict[str, Any]:
    """One `garfield run`, timed from outside and read back from its logs and summary."""
    env = dict(os.environ, GARFIELD_FORK_SERVER=fork_server)
    command = [str(Path(sys.executable).with_name("garfield")), "run", str(manifest), "--steps", str(steps),
               "--no-progress", "--output-dir", str(out)]
    load_before = os.getloadavg()[0]
    launched = time.time()
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    exited = time.time()
    summary = json.loads((out / "summary.json").read_text())
    replicas = summary["replicas"]
    correct = [name for name, info in replicas.items() if info["role"] in ("server", "peer") and not info["byzantine"]]
    logs = {name: _entries(Path(info["log"])) for name, info in replicas.items()}
    first_steps = [e["ts"] for name in correct if (e := _first(logs[name], "first step"))]
    dones = [e["ts"] for name in correct if (e := _first(logs[name], "done"))]
    phases: dict[str, list[float]] = {}
    for entries in logs.values():
        start = _first(entries, "startup") or {}
        listening = _first(entries, "listening")
        first = _first(entries, "first step")
        if start.get("process_start"):
            phases.setdefault("process start (exec or fork)", []).append(start["process_start"] - launched)
        for key, label in (("main_seconds", "to node main()"), ("imports_seconds", "imports"), ("task_seconds", "task"),
                           ("built_seconds", "adapter + node")):
            if key in start:
                phases.setdefault(label, []).append(start[key])
        if "cpu_seconds" in start:
            phases.setdefault("CPU seconds used by the replica until built", []).append(start["cpu_seconds"])
        if listening and start.get("built_at"):
            phases.setdefault("gRPC up", []).append(listening["ts"] - start["built_at"])
        if first and listening:
            phases.setdefault("listening -> first step", []).append(first["ts"] - listening["ts"])
    server = _first(_entries(out / "logs" / "forkserver.log"), "ready")
    return {
        "fork_server": fork_server == "1",
        "exit_code": done.returncode,
        "outcome": summary.get("outcome"),
        "launch_to_first_step_s": round(min(first_steps) - launched, 3) if first_steps else None,
        "launch_to_all_first_steps_s": round(max(first_steps) - launched, 3) if first_steps else None,
        "last_step_to_exit_s": round(exited - max(dones), 3) if dones else None,
        "wall_s": round(exited - launched, 3),
        "final_accuracy": summary.get("final_accuracy", {}),
        "phases_median_s": {label: _median(values) for label, values in phases.items()},
        "fork_server_ready_s": round(server["ts"] - launched, 3) if server else None,
        "fork_server_import_s": server.get("import_seconds") if server else None,
        "fork_server_warm_s": server.get("warm_seconds") if server else None,
        "fork_server_cpu_s": server.get("cpu_seconds") if server else None,
        "fork_server_cpu_breakdown_s": server.get("cpu_breakdown") if server else None,
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "output": done.stdout[-2000:] if done.returncode else "",
    }


def _fmt(value: Any, suffix: str = " s") -> str:
    return "-" if value is None else f"{value:.2f}{suffix}" if isinstance(value, float) else str(value)


def render(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        "# Start-up and shutdown of `garfield run` (bench/startup.py)",
        "",
        f"`{result['manifest']}` with `--steps {result['steps']}` ({result['replicas']} replicas), measured "
        f"{env['date']} on {env['machine']} ({env['cpus']} CPUs, Python {env['python']}); each mode ran once to warm "
        f"the caches, then {result['repeat']} measured run(s). 1-minute load averages are shown per run: the machine "
        "was shared with other work, so absolute seconds are inflated by whatever else ran (compare the modes, "
        "and the load).",
        "",
        f"Targets, warm run: launch -> first step <= {TARGET_FIRST_STEP:g} s, last step -> exit <= {TARGET_EXIT:g} s.",
        "",
        "| mode | run | launch -> first step | launch -> all servers' first step | last step -> exit | wall | load before/after "
        "| final accuracy (correct servers) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, runs in result["modes"].items():
        for i, run in enumerate(runs):
            label = "warm-up" if i == 0 else f"measured {i}"
            acc = ", ".join(f"{v:.1%}" for v in run["final_accuracy"].values()) or "-"
            lines.append(f"| {mode} | {label} | {_fmt(run['launch_to_first_step_s'])} | "
                         f"{_fmt(run['launch_to_all_first_steps_s'])} | {_fmt(run['last_step_to_exit_s'])} | "
                         f"{_fmt(run['wall_s'])} | {run['load_before']:.1f} / {run['load_after']:.1f} | {acc} |")
    lines += ["", "## Where the start-up goes (last measured run, medians over the 11 replicas)", ""]
    labels: list[str] = []
    for runs in result["modes"].values():
        for label in runs[-1]["phases_median_s"]:
            if label not in labels:
                labels.append(label)
    lines.append("| phase | " + " | ".join(result["modes"]) + " |")
    lines.append("|---|" + "---|" * len(result["modes"]))
    extra = [("fork server ready (after launch)", "fork_server_ready_s"), ("fork server imports", "fork_server_import_s"),
             ("fork server warm-up (task step, rules)", "fork_server_warm_s"),
             ("fork server CPU seconds until ready", "fork_server_cpu_s")]
    for label, key in extra:
        lines.append(f"| {label} | " + " | ".join(_fmt(runs[-1][key]) for runs in result["modes"].values()) + " |")
    for label in labels:
        cells = (_fmt(runs[-1]["phases_median_s"].get(label)) for runs in result["modes"].values())
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    breakdown = next((runs[-1]["fork_server_cpu_breakdown_s"] for runs in result["modes"].values()
                      if runs[-1].get("fork_server_cpu_breakdown_s")), None)
    if breakdown:
        lines += ["", "## The fork server's critical path in CPU seconds (last measured run; independent of the load)", "",
                  "| preloaded module or warm-up step | CPU seconds |", "|---|---|"]
        lines += [f"| {name} | {seconds:.2f} |" for name, seconds in sorted(breakdown.items(), key=lambda kv: -kv[1])]
        total = next(runs[-1]["fork_server_cpu_s"] for runs in result["modes"].values() if runs[-1].get("fork_server_cpu_s"))
        lines.append(f"| total until ready (interpreter start included) | {total:.2f} |")
    lines += [
        "",
        "\"process start\" is seconds after launch; the other phases are each replica's own durations: "
        "to node main() (interpreter start, or the fork's set-up), imports (the node's modules: all of torch "
        "and numba for a fresh process, gRPC and the protocol after a fork), task (the task's module, model and "
        "data), adapter + node (the optimizer's first use imports torch._dynamo), gRPC up, then the wait for the "
        "first quorums. With the fork server the replicas are forked only once the server has imported and warmed "
        "everything.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", default=str(ROOT / "examples" / "mnist-msmw.yaml"))
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1, help="measured runs per mode, after the warm-up run")
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--render", action="store_true", help="only rewrite startup.md from an existing startup.json")
    args = parser.parse_args(argv)
    if args.render:
        out = Path(args.output)
        (out / "startup.md").write_text(render(json.loads((out / "startup.json").read_text())))
        return 0
    manifest = Path(args.manifest).resolve()
    result: dict[str, Any] = {
        "manifest": str(manifest.relative_to(ROOT)) if manifest.is_relative_to(ROOT) else str(manifest),
        "steps": args.steps, "repeat": args.repeat, "modes": {},
        "environment": {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": platform.machine(),
                        "cpus": os.cpu_count(), "python": platform.python_version()},
    }
    with tempfile.TemporaryDirectory(prefix="garfield-startup-") as tmp:
        for mode, flag in MODES.items():
            runs = []
            for i in range(args.repeat + 1):
                run = measure(manifest, args.steps, flag, Path(tmp) / f"{flag}-{i}")
                runs.append(run)
                print(f"{mode} {'warm-up' if i == 0 else f'run {i}'}: launch->first step {_fmt(run['launch_to_first_step_s'])}, "
                      f"last step->exit {_fmt(run['last_step_to_exit_s'])}, {run['outcome']}, load {run['load_before']}",
                      flush=True)
            result["modes"][mode] = runs
    result["replicas"] = _replica_count(manifest)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "startup.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "startup.md").write_text(render(result))
    print(f"wrote {out / 'startup.md'} and {out / 'startup.json'}")
    return 0


def _replica_count(manifest: Path) -> int:
    import yaml

    spec = yaml.safe_load(manifest.read_text())["spec"]
    return int((spec.get("servers") or {}).get("replicas", 0)) + int(spec["workers"]["replicas"])


if __name__ == "__main__":
    sys.exit(main())
