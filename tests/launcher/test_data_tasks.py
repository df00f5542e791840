"""The shipped data split and the example tasks: shapes, determinism, and that the tasks learn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from garfield.data import mnist
from garfield.task import Task, load_task


def test_split_shapes_dtypes_and_range() -> None:
    x_train, y_train, x_test, y_test = mnist.load()
    assert x_train.shape == (4000, 784) and x_test.shape == (1000, 784)
    assert x_train.dtype == np.float32 and y_train.dtype == np.int64
    assert 0.0 <= float(x_train.min()) and float(x_train.max()) == 1.0
    assert np.bincount(y_train).tolist() == [400] * 10
    assert np.bincount(y_test).tolist() == [100] * 10


def test_split_is_disjoint_fixed_and_read_only() -> None:
    x_train, _, x_test, _ = mnist.load()
    train_rows = {row.tobytes() for row in x_train}
    overlap = sum(row.tobytes() in train_rows for row in x_test)
    # The 5,000 digits contain no duplicated images, so a correct split shares none.
    assert overlap == 0
    mnist._split.cache_clear()
    again = mnist.load()
    assert np.array_equal(again[0], x_train) and np.array_equal(again[2], x_test)
    with pytest.raises(ValueError):
        again[0][0, 0] = 2.0
    assert mnist.images(x_test).shape == (1000, 28, 28)


def test_shipped_file_is_checked_and_a_damaged_one_is_refused(tmp_path) -> None:
    pixels, labels = mnist._raw_arrays()
    assert pixels.shape == (mnist.ROWS, mnist.FEATURES) and pixels.dtype == np.uint8
    assert labels.shape == (mnist.ROWS,) and labels.dtype == np.uint8
    assert mnist.digest(pixels, labels) == mnist.SHA256
    damaged = tmp_path / "damaged.npz"
    images = pixels.copy()
    images[17, 300] ^= 1  # one flipped bit in one pixel
    np.savez_compressed(damaged, images=images, labels=labels)
    with pytest.raises(mnist.DataFileError, match="checksum"):
        mnist._raw_arrays(damaged)
    truncated = tmp_path / "truncated.npz"
    whole = (Path(mnist.__file__).with_name(mnist.FILE)).read_bytes()
    truncated.write_bytes(whole[: len(whole) // 2])  # a half-written file
    with pytest.raises(mnist.DataFileError, match="reinstall"):
        mnist._raw_arrays(truncated)


def _train(task: Task, steps: int, batch: int = 64) -> float:
    """Plain single-process SGD: the yardstick the distributed runs are compared to."""
    optimizer = task.optimizer(task.model.parameters())
    loader = torch.utils.data.DataLoader(task.train, batch_size=batch, shuffle=True,
                                         generator=torch.Generator().manual_seed(0))
    done = 0
    while done < steps:
        for inputs, targets in loader:
            optimizer.zero_grad()
            task.loss(task.model(inputs), targets).backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    inputs, targets = task.test.tensors
    with torch.no_grad():
        return float((task.model(inputs).argmax(1) == targets).float().mean())


def test_mlp_task_loads_by_entrypoint_and_learns() -> None:
    task = load_task("garfield.tasks.mnist:mlp", {"hidden": 64})
    assert isinstance(task.model, torch.nn.Module)
    assert task.model[0].weight.shape == (64, 784)
    assert _train(task, steps=300) >= 0.85


def test_tasks_start_from_the_same_weights_for_one_seed() -> None:
    from garfield.tasks.mnist import convnet, mlp

    a, b, c = mlp(seed=3), mlp(seed=3), mlp(seed=4)
    flat = lambda t: torch.nn.utils.parameters_to_vector(t.model.parameters())  # noqa: E731
    assert torch.equal(flat(a), flat(b)) and not torch.equal(flat(a), flat(c))
    net = convnet(channels=[4, 8], hidden=16)
    inputs, _ = net.test[:5]
    assert inputs.shape == (5, 1, 28, 28)
    assert net.model(inputs).shape == (5, 10)
