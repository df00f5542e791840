"""Aggregation of TensorFlow tensors through the adapter: every rule gives a TensorFlow tensor on
the adapter's device, equal to the same rule applied to the same numbers as torch tensors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from garfield.aggregators import RULES, aggregate
from garfield.task import Task

keras = pytest.importorskip("keras")
from garfield.adapters.tensorflow import TensorFlowAdapter  # noqa: E402

N_VECTORS = 11


@pytest.fixture(scope="module")
def adapter(make_spec: Any) -> TensorFlowAdapter:
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 20)).astype(np.float32), rng.normal(size=(16, 10)).astype(np.float32)
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(10)])  # 210 parameters
    return TensorFlowAdapter(Task(model, "mse", "sgd", (x, y)), make_spec(batchSize=8), "server", 0)


@pytest.mark.parametrize("rule", sorted(RULES))
def test_rule_on_tf_tensors_matches_torch_and_stays_on_device(adapter: TensorFlowAdapter, tf: Any, rule: str) -> None:
    cond = RULES[rule].condition
    f = max(f for f in range(N_VECTORS) if cond.holds(N_VECTORS, f))
    f = min(f, 2)
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(N_VECTORS, adapter.num_params)).astype(np.float32)
    rows[-f:] = rows[-f:] * -50.0 if f else rows[-f:]  # Byzantine-looking rows
    params = {"seed": 3} if rule == "condense" else {}

    vectors = [adapter.from_numpy(row) for row in rows]
    result = adapter.aggregate(rule, adapter.stack(vectors), f, **params)
    assert isinstance(result, tf.Tensor) and result.dtype == tf.float32
    assert tuple(result.shape) == (adapter.num_params,)
    assert result.device.endswith(adapter.device.lstrip("/")), (result.device, adapter.device)

    expected = aggregate(rule, torch.from_numpy(rows.copy()), f, **params).numpy()
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-6, atol=1e-6)
    # the adapter can take the result as new parameters / as a gradient directly
    adapter.set_params(result)
    assert adapter.to_numpy(adapter.get_params()).tobytes() == result.numpy().tobytes()


def test_robust_rule_ignores_byzantine_tf_rows_and_average_does_not(adapter: TensorFlowAdapter) -> None:
    honest = np.ones((5, adapter.num_params), np.float32)
    byzantine = np.full((2, adapter.num_params), -1e4, np.float32)
    stacked = adapter.stack([adapter.from_numpy(r) for r in np.concatenate([honest, byzantine])])
    assert np.allclose(adapter.aggregate("median", stacked, 2).numpy(), 1.0)
    assert np.allclose(adapter.aggregate("mda", stacked, 2).numpy(), 1.0)
    assert adapter.aggregate("average", stacked, 2).numpy().max() < -1000


def test_float64_models_aggregate_in_float64(make_spec: Any, tf: Any) -> None:
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, dtype="float64")])
    adapter = TensorFlowAdapter(Task(model, "mse", "sgd", (x, y)), make_spec(batchSize=4), "server", 0)
    assert adapter.dtype == tf.float64
    grad, _ = adapter.compute_gradient()
    assert grad.dtype == tf.float64
    rows = rng.normal(size=(5, adapter.num_params))
    result = adapter.aggregate("median", adapter.stack([adapter.from_numpy(r) for r in rows]), 2)
    assert result.dtype == tf.float64
    assert np.array_equal(result.numpy(), np.median(rows, axis=0))


@pytest.mark.parametrize("stage", [{"name": "nnm"}, {"name": "arc"}, {"name": "clipping", "params": {"threshold": 0.5}},
                                   {"name": "bucketing", "params": {"s": 2, "seed": 4}}], ids=lambda s: s["name"])
def test_pre_aggregation_on_tf_tensors_matches_torch(adapter: TensorFlowAdapter, tf: Any, stage: dict[str, Any]) -> None:
    from garfield.aggregators.preaggregation import Stage

    rng = np.random.default_rng(3)
    rows = rng.normal(size=(N_VECTORS, adapter.num_params)).astype(np.float32)
    rows[-2:] *= -50.0
    chain = [Stage(stage["name"], stage.get("params", {}))]
    result = adapter.aggregate("median", adapter.stack([adapter.from_numpy(r) for r in rows]), 2, pre=chain)
    assert isinstance(result, tf.Tensor) and result.dtype == tf.float32
    assert result.device.endswith(adapter.device.lstrip("/")), (result.device, adapter.device)
    expected = aggregate("median", torch.from_numpy(rows.copy()), 2, pre=chain).numpy()
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-6, atol=1e-6)
