"""docs/user-guide.md stays true: its links resolve, its manifests validate, its helm commands
render, and its PyTorch and Keras tasks actually train one step through Garfield's adapters."""

from __future__ import annotations

import math
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from garfield.adapters import create
from garfield.spec.validation import validate_manifest
from garfield.task import load_task

from helm_support import REPO, Helm

GUIDE = REPO / "docs" / "user-guide.md"
TEXT = GUIDE.read_text()
BLOCKS: list[tuple[str, str]] = re.findall(r"^```(\w*)\n(.*?)^```", TEXT, re.M | re.S)


def _blocks(lang: str) -> list[str]:
    return [body for kind, body in BLOCKS if kind == lang]


def _jobs() -> dict[str, dict[str, Any]]:
    docs = [yaml.safe_load(b) for b in _blocks("yaml")]
    return {d["metadata"]["name"]: d for d in docs if isinstance(d, dict) and d.get("kind") == "ByzantineTrainingJob"}


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_leaves(value, f"{prefix}.{key}"))
        return out
    return {prefix: tree}


def test_links_resolve() -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", TEXT):
        if not target.startswith("http"):
            assert (GUIDE.parent / target).resolve().exists(), f"broken link {target}"
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in re.findall(r"^#+ (.*)$", TEXT, re.M)}
    for anchor in re.findall(r"\]\(#([^)]+)\)", TEXT):
        assert anchor in anchors, f"no heading for #{anchor}"


def test_every_job_in_the_guide_is_valid() -> None:
    jobs = _jobs()
    assert {"mnist-msmw", "mnist-gpu", "blobs"} <= set(jobs)
    for name, manifest in jobs.items():
        validate_manifest(manifest, source=f"user-guide.md:{name}")


def test_the_quoted_example_matches_the_file() -> None:
    """The guide shows examples/mnist-msmw.yaml (abridged): every value it shows is the file's."""
    shown = _leaves(_jobs()["mnist-msmw"])
    actual = _leaves(yaml.safe_load((REPO / "examples" / "mnist-msmw.yaml").read_text()))
    assert {k: v for k, v in shown.items() if actual.get(k) != v} == {}


def test_helm_commands_render(helm: Helm) -> None:
    commands = [c for b in _blocks("bash") for c in b.replace("\\\n", " ").splitlines() if re.match(r"helm (install|upgrade)", c)]
    assert len(commands) >= 2
    for command in commands:
        words = shlex.split(command.split("#")[0])
        sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
        assert sets or "--reuse-values" in words, command
        if sets:
            helm.template(sets=sets)


def test_guide_dockerfile_matches_the_image_user() -> None:
    (snippet,) = _blocks("dockerfile")
    assert "USER 10001:10001" in snippet and "USER 10001:10001" in (REPO / "Dockerfile").read_text()
    assert "COPY my_task/ /workspace/my_task/" in snippet and "PYTHONPATH=/workspace" in (REPO / "Dockerfile").read_text()


@pytest.fixture
def task_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The guide's `# my_task/<file>.py` blocks, written as an importable package."""
    package = tmp_path / "my_task"
    package.mkdir()
    (package / "__init__.py").write_text("")
    written = 0
    for body in _blocks("python"):
        first = body.splitlines()[0]
        match = re.fullmatch(r"# my_task/(\w+\.py)", first)
        if match:
            (package / match.group(1)).write_text(body)
            written += 1
    assert written == 3
    monkeypatch.syspath_prepend(str(tmp_path))
    yield package
    for name in [m for m in sys.modules if m == "my_task" or m.startswith("my_task.")]:
        del sys.modules[name]


@pytest.mark.parametrize(("framework", "entrypoint"), [("pytorch", "my_task.torch_task:build"),
                                                         ("tensorflow", "my_task.keras_task:build")])
def test_guide_tasks_train_through_the_adapters(task_package: Path, framework: str, entrypoint: str) -> None:
    manifest = _jobs()["blobs"]
    manifest = {**manifest, "spec": {**manifest["spec"], "framework": framework,
                                     "task": {**manifest["spec"]["task"], "entrypoint": entrypoint}}}
    job = validate_manifest(manifest)
    task = load_task(job.spec.task.entrypoint, job.spec.task.args)
    adapter = create(framework, task, job.spec, "worker", 0)
    before = adapter.to_numpy(adapter.get_params()).copy()
    gradient, loss = adapter.compute_gradient()
    assert math.isfinite(loss) and loss > 0
    adapter.apply_gradient(gradient)
    after = adapter.to_numpy(adapter.get_params())
    assert before.shape == after.shape and (before != after).any(), "one step must move the model"
    assert 0.0 <= adapter.evaluate(max_batches=2)["accuracy"] <= 1.0


def test_the_pvc_example_trains_writes_and_loads_its_model(task_package: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Section 7's worked example without the cluster: the blobs saved as the npz its task reads
    (at the job's path, made local), one step, the model written as a server writes it into
    spec.output.path, then the guide's loading snippet, verbatim but for its folder."""
    import numpy as np
    import torch

    from garfield.observability.models import write_model

    manifest = _jobs()["blobs-pvc"]
    spec = manifest["spec"]
    assert spec["output"]["path"] == "/output"
    servers, workers = spec["servers"]["template"], spec["workers"]["template"]
    assert {m["mountPath"] for m in servers["volumeMounts"]} == {"/data", "/output"}
    assert {m["mountPath"] for m in workers["volumeMounts"]} == {"/data"}
    assert spec["task"]["args"]["path"] == "/data/blobs.npz"

    blobs = load_task("my_task.torch_task:build", {})
    x_train, y_train = (torch.stack([blobs.train[i][k] for i in range(len(blobs.train))]) for k in (0, 1))
    x_test, y_test = (torch.stack([blobs.test[i][k] for i in range(len(blobs.test))]) for k in (0, 1))
    data = tmp_path / "blobs.npz"
    np.savez(data, x_train=x_train.numpy(), y_train=y_train.numpy(), x_test=x_test.numpy(), y_test=y_test.numpy())
    job = validate_manifest({**manifest, "spec": {**spec, "task": {**spec["task"], "args": {"path": str(data)}}}})
    task = load_task(job.spec.task.entrypoint, job.spec.task.args)
    adapter = create("pytorch", task, job.spec, "server", 0)
    gradient, loss = adapter.compute_gradient()
    assert math.isfinite(loss)
    adapter.apply_gradient(gradient)
    models = tmp_path / "blobs-models"
    write_model(adapter, models / "server-0", job="blobs-pvc", replica="server-0", framework="pytorch", step=1,
                accuracy=0.5)

    (snippet,) = [b for b in _blocks("python") if "read_manifest" in b and "blobs-models" in b]
    monkeypatch.chdir(tmp_path)  # the snippet's relative paths: blobs-models/, blobs.npz
    scope: dict[str, Any] = {}
    exec(compile(snippet, "user-guide.md", "exec"), scope)  # noqa: S102 - the guide's own code
    loaded = scope["model"]
    for a, b in zip(loaded.state_dict().values(), task.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
