"""The fork server's preload: import the modules the launcher asked for and warm the job's task and rules.

Runs once in the server process, before its first fork (:mod:`garfield.launcher.forkserve`), so every
replica shares the result copy-on-write. What it must not do (import gRPC, start threads, touch CUDA)
is explained in :mod:`garfield.launcher.forkserver`; the ready report says whether it held.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from typing import Any, Callable, Mapping, Sequence


def warm_rules(spec: Mapping[str, Any] | None, names: Sequence[tuple[str, dict[str, Any], int, int]] = (),
               dtypes: Sequence[str] = ("float32",)) -> list[str]:
    """Run each aggregation rule the job uses (or `names`: rule, params, n, f) once on small inputs
    of each dtype: loads (or compiles and caches) the numba kernels behind them. Returns the rules warmed."""
    import torch

    from garfield.aggregators import aggregate

    rules = list(names)
    if spec is not None:
        for role in ("servers", "workers"):
            section = spec.get(role) or {}
            gar = section.get("gar") or {}
            replicas, f = int(section.get("replicas", 0) or 0), int(section.get("byzantine", 0) or 0)
            if gar.get("name") and replicas:
                rules.append((gar["name"], dict(gar.get("params") or {}), max(1, replicas - f), f))
    warmed = []
    generator = torch.Generator().manual_seed(0)
    for name, params, n, f in rules:
        if n < 2:
            continue
        for dtype in dtypes:
            aggregate(name, torch.randn(n, 256, generator=generator, dtype=getattr(torch, dtype)), f, **params)
        warmed.append(name)
    return warmed


def warm_task(spec: Mapping[str, Any]) -> str:
    """Build the job's task once and take one training step, one update and one evaluation with it
    on the CPU: the task's module, its data (cached in memory) and the lazily imported parts of
    torch (the optimizer pulls in torch._dynamo: seconds) are then shared by every fork. Never
    touches CUDA: a CUDA context does not survive a fork."""
    from garfield.adapters.pytorch import TorchAdapter
    from garfield.spec.model import from_dict
    from garfield.task import load_task

    task_spec = spec.get("task") or {}
    entrypoint = str(task_spec.get("entrypoint", ""))
    if not entrypoint:
        return ""
    job = from_dict(dict(spec))
    adapter = TorchAdapter(load_task(entrypoint, task_spec.get("args") or {}), job, "worker", 0, device="cpu")
    gradient, _ = adapter.compute_gradient()
    adapter.apply_gradient(adapter.momentum(None, gradient, 0.9))
    adapter.from_numpy(adapter.to_numpy(adapter.get_params()))
    adapter.evaluate(max_batches=1)
    return entrypoint


def preload(message: Mapping[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    failed: dict[str, str] = {}
    cpu: dict[str, float] = {}  # CPU seconds per preloaded module / warm-up step: the breakdown to optimise
    threads = int(message.get("threads") or 1)

    def timed(name: str, step: Callable[[], Any]) -> Any:
        before = time.process_time()
        try:
            return step()
        except Exception as exc:  # the child does it again and reports the error in its own log
            failed[name] = f"{type(exc).__name__}: {exc}"
            return None
        finally:
            if (spent := time.process_time() - before) >= 0.01:
                cpu[name] = round(spent, 3)

    for name in message.get("modules") or ():
        timed(name, lambda: importlib.import_module(name))  # noqa: B023 - called at once
        if name == "torch" and "torch" in sys.modules:
            # one thread here, whatever a child wants: no OpenMP pool may exist at fork time
            sys.modules["torch"].set_num_threads(1)
    imported = time.monotonic()
    spec = message.get("spec")
    warmed: list[str] = []
    if spec:
        timed("warm: task (model, data, one step, optimizer, evaluation)", lambda: warm_task(spec))
        warmed = timed("warm: aggregation rules", lambda: warm_rules(spec)) or []
    done = time.monotonic()
    for name, error in failed.items():
        print(f"forkserver: preloading {name} failed: {error}", file=sys.stderr, flush=True)
    return {"ready": True, "pid": os.getpid(), "grpc": any(m == "grpc" or m.startswith("grpc.") for m in sys.modules),
            "threads": threading.active_count(), "os_threads": os_threads(), "import_seconds": round(imported - started, 3),
            "warm_seconds": round(done - imported, 3), "cpu_seconds": round(time.process_time(), 3), "cpu_breakdown": cpu,
            "rules": warmed, "failed": failed, "child_threads": threads}


def os_threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return -1

