"""TensorFlow is optional: without it Garfield imports, validates and runs PyTorch jobs, and a
TensorFlow job's replica stops at once with a message saying how to install it.

"Without TensorFlow" is simulated in a fresh interpreter by ``sys.modules['tensorflow'] = None``
(and Keras likewise), which makes every ``import tensorflow`` fail as if it were not installed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from garfield.launcher import credentials
from garfield.launcher.local import loopback_for
from garfield.plan import make_plan
from garfield.spec import load_job

ROOT = Path(__file__).resolve().parents[2]
NO_TF = "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"


def _python(code: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", NO_TF + textwrap.dedent(code)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=timeout)


def test_garfield_imports_validates_and_builds_pytorch_nodes_without_tensorflow() -> None:
    done = _python("""
        import garfield, garfield.spec, garfield.plan, garfield.adapters, garfield.adapters.tensorflow
        import garfield.protocol, garfield.node, garfield.aggregators, garfield.wire
        from garfield.cli import main
        assert main(["validate", "examples/mnist-msmw-keras.yaml"]) == 0
        from garfield.adapters import create, seed_everything
        from garfield.spec import load_job
        from garfield.task import load_task
        spec = load_job("examples/mnist-msmw.yaml").spec
        seed_everything("pytorch", 1)
        adapter = create("pytorch", load_task(spec.task.entrypoint, spec.task.args), spec, "worker", 0)
        adapter.compute_gradient()
        print("PYTORCH-OK")
    """)
    assert done.returncode == 0, done.stderr
    assert "valid msmw job 'mnist-msmw-keras'" in done.stdout and "PYTORCH-OK" in done.stdout


def test_tensorflow_replica_without_tensorflow_fails_with_install_hint(tmp_path: Path) -> None:
    """A real `garfield node` replica of the Keras example, configured by the plan's environment
    (with its TLS folder, as garfield run makes it)."""
    job = load_job(ROOT / "examples" / "mnist-msmw-keras.yaml")
    plan = make_plan(job, loopback_for(job))
    credentials.issue_run(plan, tmp_path)
    replica = plan.by_role("worker")[0]
    done = _python("from garfield.node import main; sys.exit(main())", env=replica.env)
    assert done.returncode == 1, (done.stdout, done.stderr)
    output = done.stdout + done.stderr
    assert "framework 'tensorflow' needs TensorFlow, which is not installed here" in output, output
    assert "pip install 'garfield[tensorflow]'" in output
    # it stopped before importing the user's Keras task (the message is about TensorFlow, not the task)
    assert "cannot import the task module" not in output
