"""The TensorFlow adapter on its own: gradients, flat parameters, optimizer steps, data streams,
label transforms, evaluation and the errors a wrong task gets. One process, no network."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from garfield.task import Task

keras = pytest.importorskip("keras")
from garfield.adapters.tensorflow import TensorFlowAdapter, TensorFlowTaskError  # noqa: E402

N, D, K = 32, 5, 3


def regression_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N, D)).astype(np.float32), rng.normal(size=(N, K)).astype(np.float32)


def linear_task(x: np.ndarray, y: np.ndarray, optimizer: Any = None, train: Any = None) -> Task:
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(y.shape[1])])
    return Task(model=model, loss=keras.losses.MeanSquaredError(),
                optimizer=optimizer if optimizer is not None else keras.optimizers.SGD(0.5),
                train=train if train is not None else (x, y), test=(x, y))


def manual_mse_grad(x: np.ndarray, y: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d/dW, d/db of mean((xW + b - y)^2) over all N*K entries, in float64."""
    x64, y64, w64, b64 = (a.astype(np.float64) for a in (x, y, w, b))
    residual = x64 @ w64 + b64 - y64
    scale = 2.0 / residual.size
    return scale * x64.T @ residual, scale * residual.sum(axis=0)


def test_gradient_matches_manual_computation(make_spec: Any) -> None:
    x, y = regression_data()
    adapter = TensorFlowAdapter(linear_task(x, y), make_spec(batchSize=N), "worker", 0)
    kernel, bias = (v.numpy() for v in adapter.model.trainable_variables)
    grad, loss = adapter.compute_gradient()  # batch = the whole set, in some order: same gradient
    gw, gb = manual_mse_grad(x, y, kernel, bias)
    assert adapter.num_params == D * K + K and grad.shape == (D * K + K,)
    np.testing.assert_allclose(grad.numpy(), np.concatenate([gw.ravel(), gb]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss, np.mean((x @ kernel + bias - y) ** 2), rtol=1e-5)


def test_flat_parameters_round_trip_bit_exactly(make_spec: Any) -> None:
    x, y = regression_data()
    adapter = TensorFlowAdapter(linear_task(x, y), make_spec(batchSize=8), "server", 0)
    vector = np.random.default_rng(1).normal(size=adapter.num_params).astype(np.float32)
    adapter.set_params(adapter.from_numpy(vector))
    assert adapter.to_numpy(adapter.get_params()).tobytes() == vector.tobytes()
    kernel, bias = adapter.model.trainable_variables
    assert np.array_equal(kernel.numpy(), vector[:D * K].reshape(D, K))
    assert np.array_equal(bias.numpy(), vector[D * K:])
    # get_params is a copy the caller may keep: later writes do not change it
    kept = adapter.get_params()
    adapter.set_params(np.zeros(adapter.num_params, np.float32))
    assert adapter.to_numpy(kept).tobytes() == vector.tobytes()
    assert str(kept.device).endswith(adapter.device.lstrip("/"))


@pytest.mark.parametrize("label_transform", [False, True])
def test_parameters_set_are_the_ones_every_computation_uses(make_spec: Any, label_transform: bool) -> None:
    """set_params is written lazily, fused into the next traced call: gradient, optimizer step and
    evaluation must all see the parameters set last, and so must the user's model."""
    x, y = regression_data()
    adapter = TensorFlowAdapter(linear_task(x, y), make_spec(batchSize=N, learningRate=0.1), "worker", 0)
    if label_transform:
        adapter.set_label_transform(lambda t: t)  # the eager path (a Byzantine worker's)
    rng = np.random.default_rng(8)
    for _ in range(2):
        vector = rng.normal(size=adapter.num_params).astype(np.float32)
        adapter.set_params(vector)
        adapter.set_params(vector)  # twice: still the same parameters
        grad, _ = adapter.compute_gradient()
        gw, gb = manual_mse_grad(x, y, vector[:D * K].reshape(D, K), vector[D * K:])
        np.testing.assert_allclose(grad.numpy(), np.concatenate([gw.ravel(), gb]), rtol=1e-5, atol=1e-5)
    adapter.set_params(vector)
    step = np.ones(adapter.num_params, np.float32)
    adapter.apply_gradient(step)
    np.testing.assert_allclose(adapter.to_numpy(adapter.get_params()), vector - 0.1, rtol=1e-6, atol=1e-6)
    adapter.set_params(vector)
    assert np.array_equal(adapter.model.trainable_variables[1].numpy(), vector[D * K:])
    assert adapter.evaluate()["loss"] == pytest.approx(
        float(np.mean((x @ vector[:D * K].reshape(D, K) + vector[D * K:] - y) ** 2)), rel=1e-5)


def test_set_params_rejects_a_wrong_sized_vector(make_spec: Any) -> None:
    x, y = regression_data()
    adapter = TensorFlowAdapter(linear_task(x, y), make_spec(batchSize=8), "server", 0)
    before = adapter.to_numpy(adapter.get_params())
    with pytest.raises(ValueError, match=f"{adapter.num_params} parameters"):
        adapter.set_params(np.zeros(adapter.num_params + 1, np.float32))
    assert np.array_equal(adapter.to_numpy(adapter.get_params()), before)  # nothing lost


@pytest.mark.parametrize("spec_lr, expected_lr", [(0.1, 0.1), (None, 0.5)])
def test_optimizer_step_uses_spec_learning_rate_when_set(make_spec: Any, spec_lr: float | None,
                                                         expected_lr: float) -> None:
    x, y = regression_data()
    adapter = TensorFlowAdapter(linear_task(x, y), make_spec(batchSize=8, learningRate=spec_lr), "server", 0)
    before = adapter.to_numpy(adapter.get_params()).astype(np.float64)
    grad = np.random.default_rng(2).normal(size=adapter.num_params).astype(np.float32)
    adapter.apply_gradient(adapter.from_numpy(grad))
    np.testing.assert_allclose(adapter.to_numpy(adapter.get_params()), before - expected_lr * grad, rtol=1e-6, atol=1e-6)


def test_optimizer_factory_with_momentum_keeps_its_state(make_spec: Any) -> None:
    x, y = regression_data()
    task = linear_task(x, y, optimizer=lambda: keras.optimizers.SGD(0.5, momentum=0.9))
    adapter = TensorFlowAdapter(task, make_spec(batchSize=8, learningRate=0.1), "server", 0)
    p0 = adapter.to_numpy(adapter.get_params()).astype(np.float64)
    g = np.full(adapter.num_params, 0.5, np.float32)
    adapter.apply_gradient(g)
    adapter.apply_gradient(g)
    # SGD momentum: p1 = p0 - lr g; p2 = p1 - lr (1 + mu) g
    np.testing.assert_allclose(adapter.to_numpy(adapter.get_params()), p0 - 0.1 * (2 + 0.9) * g, rtol=1e-6, atol=1e-6)


def test_learning_rate_override_replaces_a_schedule(make_spec: Any) -> None:
    x, y = regression_data()
    schedule = keras.optimizers.schedules.ExponentialDecay(0.5, decay_steps=1, decay_rate=0.01)
    task = linear_task(x, y, optimizer=keras.optimizers.SGD(schedule))
    adapter = TensorFlowAdapter(task, make_spec(batchSize=8, learningRate=0.1), "server", 0)
    p0 = adapter.to_numpy(adapter.get_params()).astype(np.float64)
    g = np.ones(adapter.num_params, np.float32)
    adapter.apply_gradient(g)
    adapter.apply_gradient(g)
    np.testing.assert_allclose(adapter.to_numpy(adapter.get_params()), p0 - 0.2 * g, rtol=1e-6, atol=1e-6)


def _epoch_mean_gradient(adapter: TensorFlowAdapter, steps: int) -> np.ndarray:
    return np.mean([adapter.compute_gradient()[0].numpy() for _ in range(steps)], axis=0)


@pytest.mark.parametrize("form", ["arrays", "dataset", "batched-dataset"])
def test_each_epoch_visits_every_example_once(make_spec: Any, tf: Any, form: str) -> None:
    """With fixed parameters, the mean of one epoch's batch gradients equals the full-batch
    gradient only when the batches partition the data set (linear MSE is additive)."""
    x, y = regression_data()
    train = {"arrays": (x, y),
             "dataset": tf.data.Dataset.from_tensor_slices((x, y)),
             "batched-dataset": tf.data.Dataset.from_tensor_slices((x, y)).batch(5)}[form]
    adapter = TensorFlowAdapter(linear_task(x, y, train=train), make_spec(batchSize=8), "worker", 2)
    kernel, bias = (v.numpy() for v in adapter.model.trainable_variables)
    gw, gb = manual_mse_grad(x, y, kernel, bias)
    full = np.concatenate([gw.ravel(), gb])
    for _epoch in range(2):  # the second epoch is reshuffled and still a partition
        np.testing.assert_allclose(_epoch_mean_gradient(adapter, N // 8), full, rtol=1e-4, atol=1e-5)


def test_workers_draw_their_own_reproducible_streams(make_spec: Any) -> None:
    x, y = regression_data()
    spec = make_spec(batchSize=4)
    first = [TensorFlowAdapter(linear_task(x, y), spec, "worker", i) for i in (0, 0, 1)]
    grads = [[a.compute_gradient()[0].numpy() for _ in range(3)] for a in first]
    assert all(np.array_equal(a, b) for a, b in zip(grads[0], grads[1], strict=True))  # same seed + index
    assert not all(np.array_equal(a, b) for a, b in zip(grads[0], grads[2], strict=True))  # another worker


@pytest.mark.parametrize("form", ["arrays", "dataset"])
def test_label_transform_trains_on_transformed_targets(make_spec: Any, tf: Any, form: str) -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(64, 6)).astype(np.float32)
    y = rng.integers(0, 4, size=64).astype(np.int64)

    def task(labels: np.ndarray) -> Task:
        keras.utils.set_random_seed(5)
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
        train = (x, labels) if form == "arrays" else tf.data.Dataset.from_tensor_slices((x, labels))
        return Task(model, keras.losses.SparseCategoricalCrossentropy(from_logits=True), "sgd", train)

    spec = make_spec(batchSize=16)
    flipped = TensorFlowAdapter(task(y), spec, "worker", 6)
    flipped.set_label_transform(lambda t: 3 - t)
    reference = TensorFlowAdapter(task(3 - y), spec, "worker", 6)
    honest = TensorFlowAdapter(task(y), spec, "worker", 6)
    for _ in range(3):
        g_flip, loss_flip = flipped.compute_gradient()
        g_ref, loss_ref = reference.compute_gradient()
        g_honest, _ = honest.compute_gradient()
        np.testing.assert_allclose(g_flip.numpy(), g_ref.numpy(), rtol=1e-6, atol=1e-7)
        assert loss_flip == pytest.approx(loss_ref, rel=1e-6)
        assert not np.allclose(g_flip.numpy(), g_honest.numpy())


def test_evaluation_accuracy_and_loss(make_spec: Any) -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2500, 2)).astype(np.float32)
    y = np.argmax(x, axis=1).astype(np.int64)
    y[::4] = 1 - y[::4]  # every fourth label wrong for a model predicting argmax(x)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, use_bias=False)])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    adapter = TensorFlowAdapter(Task(model, loss, "sgd", (x, y), (x, y)), make_spec(batchSize=8), "server", 0)
    adapter.set_params(np.eye(2, dtype=np.float32).ravel())
    result = adapter.evaluate()
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["loss"] == pytest.approx(float(loss(y, x)), rel=1e-5)
    first = adapter.evaluate(max_batches=1)  # the first 1000 examples only
    assert first["accuracy"] == pytest.approx(np.mean(np.argmax(x[:1000], 1) == y[:1000]))
    assert TensorFlowAdapter(Task(model, loss, "sgd", (x, y)), make_spec(batchSize=8), "server", 0).evaluate() == {}


def test_tf_module_with_plain_loss_function(make_spec: Any, tf: Any) -> None:
    x, y = regression_data()

    class Linear(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = tf.Variable(np.random.default_rng(7).normal(size=(D, K)).astype(np.float32))
            self.b = tf.Variable(np.zeros(K, np.float32))

        def __call__(self, inputs: Any) -> Any:
            return inputs @ self.w + self.b

    def mse(y_true: Any, y_pred: Any) -> Any:
        return tf.reduce_mean((y_pred - y_true) ** 2)

    model = Linear()
    adapter = TensorFlowAdapter(Task(model, mse, lambda: keras.optimizers.SGD(0.1), (x, y)),
                                make_spec(batchSize=N), "worker", 0)
    grad, _ = adapter.compute_gradient()
    gw, gb = manual_mse_grad(x, y, model.w.numpy(), model.b.numpy())
    expected = {id(model.w): gw.ravel(), id(model.b): gb}
    order = [expected[id(v)] for v in model.trainable_variables]
    np.testing.assert_allclose(grad.numpy(), np.concatenate(order), rtol=1e-5, atol=1e-6)


def test_unbuilt_sequential_is_built_from_the_data(make_spec: Any) -> None:
    x, y = regression_data()
    task = Task(keras.Sequential([keras.layers.Dense(K)]), "mse", "sgd", (x, y))
    adapter = TensorFlowAdapter(task, make_spec(batchSize=8), "worker", 0)
    assert adapter.num_params == D * K + K
    assert adapter.compute_gradient()[0].shape == (D * K + K,)


def test_keras_mnist_example_learns(make_spec: Any) -> None:
    """The shipped Keras task trains to a real accuracy with the adapter alone (one node, SGD)."""
    from garfield.tasks.keras_mnist import mlp

    adapter = TensorFlowAdapter(mlp(), make_spec(batchSize=32), "worker", 0)
    assert adapter.num_params == 784 * 128 + 128 + 128 * 10 + 10  # same size as the PyTorch MLP
    for _ in range(300):
        adapter.apply_gradient(adapter.compute_gradient()[0])
    assert adapter.evaluate()["accuracy"] >= 0.85


def test_wrong_tasks_get_clear_errors(make_spec: Any) -> None:
    import torch

    x, y = regression_data()
    spec = make_spec(batchSize=8)
    good = linear_task(x, y)
    cases = [
        (Task(torch.nn.Linear(D, K), good.loss, "sgd", (x, y)), "set spec.framework: pytorch"),
        (Task(good.model, good.loss, "sgd", torch.utils.data.TensorDataset(torch.zeros(4))), "set spec.framework: pytorch"),
        (Task(good.model, 42, "sgd", (x, y)), "task.loss must be"),
        (Task(good.model, "no-such-loss", "sgd", (x, y)), "not a Keras loss name"),
        (Task(good.model, good.loss, 3.0, (x, y)), "task.optimizer must be"),
        (Task(good.model, good.loss, lambda: "sgd", (x, y)), "factory returned str"),
        (Task(good.model, good.loss, "sgd", (x[:4], y[:4])), "fewer than spec.training.batchSize=8"),
        (Task(good.model, good.loss, "sgd", (x, y[:5])), "equal length"),
    ]
    for task, message in cases:
        with pytest.raises(TensorFlowTaskError, match=message.replace(".", r"\.")):
            TensorFlowAdapter(task, spec, "worker", 0)


def test_export_writes_a_keras_file_keras_loads(make_spec: Any, tmp_path: Any) -> None:
    x, y = regression_data()
    adapter = TensorFlowAdapter(linear_task(x, y), make_spec(batchSize=8), "server", 0)
    adapter.set_params(adapter.from_numpy(np.arange(adapter.num_params, dtype=np.float32) / 10))
    name, kind = adapter.export(tmp_path)
    assert (name, kind) == ("model.keras", "keras") and sorted(p.name for p in tmp_path.iterdir()) == ["model.keras"]
    loaded = keras.models.load_model(tmp_path / name)
    flat = np.concatenate([np.asarray(v).reshape(-1) for v in loaded.trainable_variables])
    assert np.array_equal(flat, np.arange(adapter.num_params, dtype=np.float32) / 10)


def test_a_saved_state_resumes_model_and_optimizer_momentum(make_spec: Any, tmp_path: Any) -> None:
    """save_state/load_state (a server's checkpoint, the TF path): a fresh adapter of the same task,
    loaded, holds the same parameters and continues with the same momentum."""
    x, y = regression_data()

    def sgd() -> Any:
        return keras.optimizers.SGD(0.5, momentum=0.9)

    spec = make_spec(batchSize=8, learningRate=0.1)
    original = TensorFlowAdapter(linear_task(x, y, optimizer=sgd), spec, "server", 0)
    g = np.full(original.num_params, 0.5, np.float32)
    original.apply_gradient(g)
    original.apply_gradient(g)
    path = tmp_path / "step-00000002.ckpt"  # the store's name: no .npz suffix is added
    original.save_state(path)
    assert path.is_file()

    resumed = TensorFlowAdapter(linear_task(x, y, optimizer=sgd), spec, "server", 0)
    resumed.set_params(np.zeros(resumed.num_params, np.float32))  # start elsewhere
    resumed.load_state(path)
    np.testing.assert_array_equal(resumed.to_numpy(resumed.get_params()), original.to_numpy(original.get_params()))
    original.apply_gradient(g)
    resumed.apply_gradient(g)
    np.testing.assert_allclose(resumed.to_numpy(resumed.get_params()), original.to_numpy(original.get_params()),
                               rtol=1e-6, atol=1e-6)
    # the third step is momentum's (p3 = p2 - lr (1 + mu + mu^2) g), not a first step's (p2 - lr g)
    assert int(resumed.optimizer.iterations) == int(original.optimizer.iterations) == 3

def test_a_state_of_another_model_is_refused(make_spec: Any, tmp_path: Any) -> None:
    x, y = regression_data()
    spec = make_spec(batchSize=8)
    small = TensorFlowAdapter(linear_task(x, y), spec, "server", 0)
    small.save_state(tmp_path / "state")
    keras.utils.set_random_seed(3)
    deeper = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(4), keras.layers.Dense(y.shape[1])])
    other = TensorFlowAdapter(Task(model=deeper, loss=keras.losses.MeanSquaredError(), optimizer=keras.optimizers.SGD(0.5),
                                   train=(x, y), test=(x, y)), spec, "server", 0)
    with pytest.raises(ValueError, match="model and .* optimizer variables saved, this task has"):
        other.load_state(tmp_path / "state")
