"""The short script to run on a lent GPU machine: does every CUDA path do what its CPU twin does?

    python bench/gpu_check.py [--device cuda] [--out bench/results/gpu_check.json]

1. Every aggregation rule on the device against its CPU result on the same inputs (float32,
   Byzantine-looking rows included), within a tolerance, and its time per call on both; the same
   for every pre-aggregation stage in front of the median.
2. The result stays on the device: aggregation of device tensors returns a device tensor, and
   (on CUDA) no device-to-host copy happens inside the rule (checked with the CUDA profiler's
   memcpy events when available).
3. One adapter step per framework on the device (PyTorch; TensorFlow when installed): gradient,
   apply, get/set parameters, evaluate, with the tensors on the device.

Without a GPU, `--device cpu` runs the same checks on the CPU, which is what the test suite does
so this script never rots between the rare sessions that get a GPU. Exit status 0 when every check
passed, 1 otherwise; the JSON report lists each check with its figures.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "runtime"))

from garfield.aggregators import aggregate  # noqa: E402
from garfield.aggregators.catalog import RULES  # noqa: E402

N, D = 15, 100_000  # rows and coordinates: a small model's gradient from each worker
REPEATS = 5
TOLERANCE = {"rtol": 1e-4, "atol": 1e-5}
# Rules that draw random numbers: seeded, and checked for what they choose per coordinate (the
# median or the aggregating node's own row), since CPU and CUDA generators give other draws.
RANDOMIZED: dict[str, dict[str, Any]] = {"condense": {"seed": 0}}


def _inputs(n: int, d: int, f: int, seed: int = 0) -> torch.Tensor:
    """Honest rows around a common mean, plus f rows far away (what the rules must survive)."""
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(d, generator=g)
    rows = mean + 0.1 * torch.randn(n, d, generator=g)
    rows[n - f:] = -10.0 * mean  # the Byzantine rows: reversed and scaled
    return rows.float()


def _largest_f(name: str, n: int) -> int:
    """The largest f the rule's resilience condition admits with n rows (0 for non-robust rules)."""
    cond = RULES[name].condition
    return max((f for f in range(n) if cond.holds(n, f)), default=0) if RULES[name].robust else 0


def _time(fn: Callable[[], Any], device: torch.device) -> float:
    """Median seconds per call after one warm-up call (kernels compiled, caches filled)."""
    fn()
    samples = []
    for _ in range(REPEATS):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        samples.append(time.perf_counter() - started)
    return float(np.median(samples))


def _host_copies(fn: Callable[[], Any], device: torch.device) -> int | None:
    """Device-to-host copies made by `fn` (CUDA profiler), or None where that cannot be observed."""
    if device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize(device)
    return sum(1 for e in prof.events() if "DtoH" in e.name or "Memcpy DtoH" in e.name)


def check_rules(device: torch.device, n: int = N, d: int = D,
                device_aggregate: Callable[..., torch.Tensor] = aggregate) -> list[dict[str, Any]]:
    """Each rule on `device` (through `device_aggregate`) versus the CPU on identical inputs."""
    report = []
    for name in sorted(RULES):
        f = _largest_f(name, n)
        host = _inputs(n, d, f)
        on_device = host.to(device)
        entry: dict[str, Any] = {"check": "rule", "rule": name, "n": n, "f": f, "d": d}
        try:
            params = RANDOMIZED.get(name, {})
            expected = aggregate(name, host, f, **params)
            got = device_aggregate(name, on_device, f, **params)
            entry["same_device"] = got.device == on_device.device
            if name in RANDOMIZED:  # CPU and CUDA generators differ: check the rule's per-coordinate choice
                median = aggregate("median", host, f)
                chosen = torch.where((got.cpu() - median).abs() <= (got.cpu() - host[0]).abs(), median, host[0])
                expected = chosen
            error = float((got.cpu() - expected).abs().max())
            entry["max_abs_error"] = error
            entry["close"] = bool(torch.allclose(got.cpu(), expected, **TOLERANCE))
            entry["cpu_seconds"] = _time(functools.partial(aggregate, name, host, f, **params), torch.device("cpu"))
            entry["device_seconds"] = _time(functools.partial(aggregate, name, on_device, f, **params), device)
            entry["host_copies"] = _host_copies(functools.partial(aggregate, name, on_device, f, **params), device)
            entry["ok"] = entry["close"] and entry["same_device"]
        except Exception as exc:  # a failing rule is reported, the others still run
            entry.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        report.append(entry)
    return report


def check_stages(device: torch.device, n: int = N, d: int = D) -> list[dict[str, Any]]:
    """Each pre-aggregation stage (in front of median) on `device` versus the CPU, same inputs."""
    from garfield.aggregators.preaggregation import STAGES, Stage

    report = []
    f = (n - 1) // 2
    host = _inputs(n, d, f)
    on_device = host.to(device)
    for name in sorted(STAGES):
        params = {"seed": 5} if name == "bucketing" else {}  # the same buckets on both
        chain = [Stage(name, params)]
        entry: dict[str, Any] = {"check": "stage", "stage": name, "n": n, "f": f, "d": d}
        try:
            rule_f = f if name != "bucketing" else min(f, (-(-n // 2) - 1) // 2)
            expected = aggregate("median", host, rule_f, pre=chain)
            got = aggregate("median", on_device, rule_f, pre=chain)
            entry["same_device"] = got.device == on_device.device
            entry["max_abs_error"] = float((got.cpu() - expected).abs().max())
            entry["close"] = bool(torch.allclose(got.cpu(), expected, **TOLERANCE))
            entry["device_seconds"] = _time(functools.partial(aggregate, "median", on_device, rule_f, pre=chain), device)
            entry["ok"] = entry["close"] and entry["same_device"]
        except Exception as exc:
            entry.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        report.append(entry)
    return report


def _job_spec(example: str) -> Any:
    from garfield.spec.validation import load_job

    return load_job(ROOT / "examples" / example).spec


def check_torch_adapter(device: torch.device) -> dict[str, Any]:
    """One worker step and one server update of the main example's model, on `device`."""
    from garfield.adapters.pytorch import TorchAdapter
    from garfield.task import load_task

    spec = _job_spec("mnist-msmw.yaml")
    adapter = TorchAdapter(load_task(spec.task.entrypoint, spec.task.args), spec, "worker", 0, device=device)
    return _adapter_step("pytorch", adapter, lambda t: t.device.type == device.type)


def check_tensorflow_adapter(device: torch.device) -> dict[str, Any]:
    """The same step for the Keras example, on the matching TensorFlow device."""
    try:
        from garfield.adapters.plugins import plugin

        tf = plugin("tensorflow").check()
    except Exception as exc:  # not installed: reported, not a failure of the GPU paths
        return {"check": "adapter", "framework": "tensorflow", "ok": True, "skipped": str(exc)}
    from garfield.adapters.tensorflow import TensorFlowAdapter
    from garfield.task import load_task

    spec = _job_spec("mnist-msmw-keras.yaml")
    tf_device = "/GPU:0" if device.type == "cuda" else "/CPU:0"
    if device.type == "cuda" and not tf.config.list_physical_devices("GPU"):
        return {"check": "adapter", "framework": "tensorflow", "ok": False,
                "error": "torch sees a GPU but TensorFlow does not (tensorflow-cpu installed? use tensorflow[and-cuda])"}
    adapter = TensorFlowAdapter(load_task(spec.task.entrypoint, spec.task.args), spec, "worker", 0, device=tf_device)
    wanted = "GPU" if device.type == "cuda" else "CPU"
    return _adapter_step("tensorflow", adapter, lambda t: wanted in str(getattr(t, "device", "")).upper())


def _adapter_step(framework: str, adapter: Any, on_device: Callable[[Any], bool]) -> dict[str, Any]:
    entry: dict[str, Any] = {"check": "adapter", "framework": framework, "device": str(adapter.device)}
    try:
        before = adapter.to_numpy(adapter.get_params()).copy()
        started = time.perf_counter()
        gradient, loss = adapter.compute_gradient()
        stacked = adapter.stack([gradient, gradient, gradient])
        update = adapter.aggregate("median", stacked, 1)
        adapter.apply_gradient(update)
        entry["step_seconds"] = time.perf_counter() - started
        after = adapter.to_numpy(adapter.get_params())
        entry["loss"] = float(loss)
        entry["gradient_on_device"] = bool(on_device(gradient))
        entry["aggregate_on_device"] = bool(on_device(update))
        entry["params_changed"] = bool(np.any(before != after))
        entry["finite"] = bool(np.isfinite(after).all() and np.isfinite(loss))
        adapter.set_params(adapter.from_numpy(before))
        entry["set_params_roundtrip"] = bool(np.array_equal(adapter.to_numpy(adapter.get_params()), before))
        entry["accuracy"] = adapter.evaluate(max_batches=2).get("accuracy")
        entry["ok"] = all(entry[k] for k in ("gradient_on_device", "aggregate_on_device", "params_changed", "finite",
                                             "set_params_roundtrip"))
    except Exception as exc:
        entry.update(ok=False, error=f"{type(exc).__name__}: {exc}")
    return entry


def run(device_name: str, d: int = D) -> dict[str, Any]:
    device = torch.device(device_name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no GPU here (use --device cpu to exercise the same paths)")
    checks = check_rules(device, d=d) + check_stages(device, d=d) + [check_torch_adapter(device),
                                                                       check_tensorflow_adapter(device)]
    return {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "ok": all(c["ok"] for c in checks),
        "checks": checks,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dim", type=int, default=D, help="coordinates per row (default %(default)s)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "gpu_check.json")
    a = p.parse_args(argv)
    report = run(a.device, d=a.dim)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(report, indent=2) + "\n")
    for c in report["checks"]:
        what = c.get("rule") or c.get("stage") or c.get("framework")
        figures = {k: c[k] for k in ("max_abs_error", "cpu_seconds", "device_seconds", "step_seconds", "error", "skipped")
                   if k in c}
        print(f"{'ok  ' if c['ok'] else 'FAIL'} {c['check']:8s} {what:22s} {figures}")
    print(f"{'all checks passed' if report['ok'] else 'SOME CHECKS FAILED'} on {report['device_name']}; report: {a.out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
