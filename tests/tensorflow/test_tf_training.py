"""Real multi-process TensorFlow jobs: every replica a `python -m garfield node` process running the
Keras example task, real gRPC on loopback, the same protocol and wire format as PyTorch jobs.

Cost on 2 shared cores: each job spends most of its time starting (every replica imports
TensorFlow, about 6 s of CPU each); the three jobs take about 3-4 minutes together.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e.jobs import accuracies, exported_accuracy, run, variant

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.slow

TIMEOUT = 600  # seconds per job: generous, 11 TensorFlow imports on a busy 2-core machine
ROBUST_STEPS = 150  # the Keras MSMW example passes 90% near step 100 (92.1% at 100, 92.6% at 200)


def test_keras_msmw_under_attack_reaches_the_pytorch_bar(tmp_path: Path) -> None:
    """examples/mnist-msmw-keras.yaml: 4 servers (one sends random models), 7 workers (two send
    sign-flipped gradients x10); MDA on gradients, median on models: >= 90% like the PyTorch job."""
    job = variant("mnist-msmw-keras.yaml", "tf-msmw-mda", {"training": {"steps": ROBUST_STEPS}})
    robust = run(job, tmp_path, timeout=TIMEOUT)
    assert robust.outcome == "succeeded", robust.message
    assert len(robust.final_accuracy) == 3  # the three correct servers
    assert min(accuracies(robust)) >= 0.90, robust.final_accuracy
    # Each correct server's model.keras, loaded with keras.models.load_model, reproduces its accuracy.
    assert sorted(m["replica"] for m in robust.models.values()) == ["server-0", "server-1", "server-2"]
    manifest = robust.models["tf-msmw-mda-server-0"]
    assert manifest["format"] == "keras" and manifest["path"].endswith("model.keras")
    reported = robust.final_accuracy["tf-msmw-mda-server-0"]
    assert abs(exported_accuracy(job, manifest) - reported) <= 0.005, manifest


def test_keras_msmw_with_averaging_collapses_under_the_same_attack(tmp_path: Path) -> None:
    """The same job with plain averaging: the two sign-flipping workers turn SGD into ascent.

    25 steps: the parameters grow about 30x per 10 steps and overflow float32 near step 45, after
    which honest gradients are non-finite, rejected on receipt, and the quorum can no longer form."""
    averaged = run(variant("mnist-msmw-keras.yaml", "tf-msmw-avg", {
        "training": {"steps": 25},
        "workers": {"gar": {"name": "average"}},
        "servers": {"gar": {"name": "average"}},
    }), tmp_path, timeout=TIMEOUT)
    assert averaged.outcome == "succeeded", averaged.message
    assert max(accuracies(averaged)) < 0.50, averaged.final_accuracy


def test_keras_ssmw_learns_under_fall_of_empires(tmp_path: Path) -> None:
    """One correct server, 6 workers of which one runs Fall of Empires (epsilon 10), Krum."""
    job = variant("mnist-ssmw.yaml", "tf-ssmw", {
        "framework": "tensorflow",
        "task": {"entrypoint": "garfield.tasks.keras_mnist:mlp"},
        "training": {"steps": 200},
    })
    result = run(job, tmp_path, timeout=TIMEOUT)
    assert result.outcome == "succeeded", result.message
    assert accuracies(result)[0] >= 0.85, result.final_accuracy
