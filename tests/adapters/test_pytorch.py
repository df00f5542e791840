"""PyTorch adapter: flat views without copies, the user's optimizer, per-worker data streams,
label transform, evaluation, wire conversions. Runs on CUDA too when present (same code)."""

from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import ml_dtypes
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from garfield.adapters import AdapterError, create
from garfield.adapters.pytorch import TorchAdapter, TorchTaskError, default_device
from garfield.task import Task


def spec(lr: float | None = None, batch: int = 8, seed: int = 1) -> SimpleNamespace:
    return SimpleNamespace(training=SimpleNamespace(learning_rate=lr, batch_size=batch, seed=seed))


def data(n: int = 64, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    y = (x[:, 0] > 0).long()
    return TensorDataset(x, y)


def task(optimizer=None, train=None, test=None, seed: int = 0) -> Task:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 2))
    return Task(model=model, loss=nn.CrossEntropyLoss(), optimizer=optimizer or partial(torch.optim.SGD, lr=0.1),
                train=train if train is not None else data(), test=test)


def test_device_is_automatic() -> None:
    adapter = create("pytorch", task(), spec(), "worker", 0)
    assert adapter.device == str(default_device())
    assert adapter.get_params().device.type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_parameters_are_views_of_one_flat_buffer() -> None:
    t = task()
    expected = torch.cat([p.detach().reshape(-1) for p in t.model.parameters()]).clone()
    adapter = TorchAdapter(t, spec(), "worker", 0)
    assert adapter.num_params == expected.numel() == 5 * 4 + 4 + 4 * 2 + 2
    assert torch.equal(adapter.get_params().cpu(), expected)
    new = torch.arange(adapter.num_params, dtype=torch.float32, device=adapter.device)
    adapter.set_params(new)
    first = next(t.model.parameters())
    assert torch.equal(first.detach().reshape(-1), new[:20])  # the module sees it with no unflatten
    flat_ptr = adapter._flat.data_ptr()
    assert all(p.data_ptr() >= flat_ptr for p in t.model.parameters())
    copy = adapter.get_params()
    copy.zero_()  # callers own what get_params returns
    assert torch.equal(adapter.get_params(), new)


def test_gradient_is_the_flat_autograd_gradient() -> None:
    t = task()
    adapter = TorchAdapter(t, spec(batch=16), "worker", 0)
    grad, loss = adapter.compute_gradient()
    assert grad.data_ptr() == adapter._grad.data_ptr()  # accumulated in place, no flatten
    # recompute the same batch by hand: same seed, same permutation
    twin = TorchAdapter(task(), spec(batch=16), "worker", 0)
    x, y = twin._next_batch()
    model = twin.model
    for p in model.parameters():
        p.grad = None
    ref_loss = nn.CrossEntropyLoss()(model(x), y)
    ref = torch.autograd.grad(ref_loss, list(model.parameters()))
    assert torch.allclose(grad, torch.cat([g.reshape(-1) for g in ref]), atol=1e-6)
    assert loss == pytest.approx(float(ref_loss.detach()), rel=1e-6)
    grad2, _ = adapter.compute_gradient()  # zeroed between calls, not accumulated
    assert not torch.allclose(grad2, 2 * grad)


def test_apply_gradient_runs_the_users_optimizer_with_lr_override() -> None:
    adapter = TorchAdapter(task(), spec(lr=0.5), "server", 0)
    before = adapter.get_params()
    g = torch.ones(adapter.num_params, device=adapter.device)
    adapter.apply_gradient(g)
    assert torch.allclose(adapter.get_params(), before - 0.5 * g)


@pytest.mark.parametrize("make", [
    lambda params: torch.optim.SGD(params, lr=0.2),  # factory
    (torch.optim.SGD, {"lr": 0.2}),  # (factory, kwargs)
])
def test_optimizer_factories(make) -> None:
    adapter = TorchAdapter(task(optimizer=make), spec(), "server", 0)
    before = adapter.get_params()
    adapter.apply_gradient(torch.ones(adapter.num_params, device=adapter.device))
    assert torch.allclose(adapter.get_params(), before - 0.2)


def test_optimizer_instance_is_used_as_given() -> None:
    t = task()
    t.optimizer = torch.optim.SGD(t.model.parameters(), lr=0.3, momentum=0.5)
    adapter = TorchAdapter(t, spec(), "server", 0)
    assert adapter.optimizer is t.optimizer
    before = adapter.get_params()
    g = torch.ones(adapter.num_params, device=adapter.device)
    adapter.apply_gradient(g)
    adapter.apply_gradient(g)
    assert torch.allclose(adapter.get_params(), before - 0.3 * g - 0.3 * 1.5 * g)  # its momentum works on the views


def test_bad_optimizer_is_a_clear_error() -> None:
    with pytest.raises(TorchTaskError, match="optimizer"):
        TorchAdapter(task(optimizer="sgd"), spec(), "server", 0)


def test_each_worker_has_its_own_reproducible_stream() -> None:
    a0 = TorchAdapter(task(), spec(batch=8), "worker", 0)
    a0_again = TorchAdapter(task(), spec(batch=8), "worker", 0)
    a1 = TorchAdapter(task(), spec(batch=8), "worker", 1)
    b0, b0_again, b1 = a0._next_batch(), a0_again._next_batch(), a1._next_batch()
    assert torch.equal(b0[0], b0_again[0])
    assert not torch.equal(b0[0], b1[0])
    assert b0[0].shape == (8, 5)
    seen = torch.cat([a0._next_batch()[1] for _ in range(20)])  # epochs wrap around
    assert len(seen) == 160


def test_dataloader_keeps_its_batch_size_and_generic_datasets_work() -> None:
    loader = DataLoader(data(), batch_size=4)
    adapter = TorchAdapter(task(train=loader), spec(batch=8), "worker", 0)
    assert adapter._next_batch()[0].shape == (4, 5)

    class Plain(Dataset):
        def __len__(self) -> int:
            return 30

        def __getitem__(self, i: int):
            return torch.full((5,), float(i)), i % 2

    adapter = TorchAdapter(task(train=Plain()), spec(batch=8), "worker", 2)
    x, y = adapter._next_batch()
    assert x.shape == (8, 5) and y.shape == (8,)
    grad, loss = adapter.compute_gradient()
    assert torch.isfinite(grad).all() and np.isfinite(loss)
    pair = (np.random.rand(20, 5).astype(np.float32), np.zeros(20, dtype=np.int64))
    assert TorchAdapter(task(train=pair), spec(batch=8), "worker", 0)._next_batch()[0].shape == (8, 5)


def test_label_transform_changes_the_targets_trained_on() -> None:
    honest = TorchAdapter(task(), spec(batch=16), "worker", 0)
    flipped = TorchAdapter(task(), spec(batch=16), "worker", 0)
    flipped.set_label_transform(lambda y: 1 - y)
    g_honest, _ = honest.compute_gradient()
    g_flipped, _ = flipped.compute_gradient()
    assert not torch.allclose(g_honest, g_flipped)


def test_evaluate_reports_accuracy_and_loss() -> None:
    test = data(200, seed=5)
    adapter = TorchAdapter(task(test=test), spec(batch=32, lr=0.5), "server", 0)
    worker = TorchAdapter(task(), spec(batch=32, lr=0.5), "worker", 0)
    for _ in range(100):
        worker.apply_gradient(worker.compute_gradient()[0])
    adapter.set_params(worker.get_params())
    result = adapter.evaluate()
    assert result["accuracy"] > 0.9 and result["loss"] < 0.5
    assert adapter.model.training  # train mode restored
    assert TorchAdapter(task(), spec(), "server", 0).evaluate() == {}


def test_momentum_is_in_place_and_never_aliases_the_gradient() -> None:
    adapter = TorchAdapter(task(), spec(), "worker", 0)
    g, _ = adapter.compute_gradient()
    m = adapter.momentum(None, g, 0.9)
    assert m.data_ptr() != g.data_ptr() and torch.equal(m, g)
    g_copy = g.clone()
    g2, _ = adapter.compute_gradient()
    m2 = adapter.momentum(m, g2, 0.9)
    assert m2.data_ptr() == m.data_ptr()
    assert torch.allclose(m2, 0.9 * g_copy + g2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_numpy_round_trip_is_bit_exact(dtype: torch.dtype) -> None:
    t = task()
    t.model = t.model.to(dtype)
    adapter = TorchAdapter(t, spec(), "server", 0)
    flat = torch.randn(adapter.num_params, device=adapter.device).to(dtype)
    array = adapter.to_numpy(flat)
    if dtype == torch.bfloat16:
        assert array.dtype == np.dtype(ml_dtypes.bfloat16)
    read_only = np.frombuffer(array.tobytes(), dtype=array.dtype)
    back = adapter.from_numpy(read_only)
    assert back.dtype == dtype and torch.equal(back, flat)


def test_stack_and_aggregate_on_the_device() -> None:
    adapter = TorchAdapter(task(), spec(), "server", 0)
    vectors = [torch.full((adapter.num_params,), float(i), device=adapter.device) for i in range(5)]
    stacked = adapter.stack(vectors)
    assert stacked.shape == (5, adapter.num_params)
    assert torch.allclose(adapter.aggregate("median", stacked, 2), vectors[2])
    assert torch.allclose(adapter.aggregate("average", stacked, 0), vectors[2])


def test_model_type_and_framework_errors_are_clear() -> None:
    with pytest.raises(TorchTaskError, match="nn.Module"):
        TorchAdapter(Task(model=object(), loss=None, optimizer=None, train=None), spec(), "worker", 0)
    with pytest.raises(AdapterError, match="unknown framework"):
        create("jax", task(), spec(), "worker", 0)


def test_a_saved_state_resumes_model_optimizer_momentum_and_rng(tmp_path) -> None:
    """save_state/load_state (a server's checkpoint): a fresh adapter of the same task, loaded,
    continues exactly as the original does, momentum buffers included."""
    sgd = partial(torch.optim.SGD, lr=0.1, momentum=0.9)
    original = TorchAdapter(task(optimizer=sgd), spec(), "server", 0)
    g = torch.full((original.num_params,), 0.5, device=original.device)
    for _ in range(3):
        original.apply_gradient(g)
    original.save_state(tmp_path / "state")
    rng_after_save = torch.rand(3)

    resumed = TorchAdapter(task(optimizer=sgd, seed=7), spec(), "server", 0)  # other initial weights
    assert not torch.equal(resumed.get_params(), original.get_params())
    resumed.load_state(tmp_path / "state")
    assert torch.equal(resumed.get_params(), original.get_params())
    assert torch.equal(torch.rand(3), rng_after_save)  # the RNG continues where it was saved
    original.apply_gradient(g)
    resumed.apply_gradient(g)  # with the momentum buffer restored, the next step is the same
    assert torch.equal(resumed.get_params(), original.get_params())
    # the module still reads the flat buffer (load_state_dict copied in place)
    first = next(resumed.model.parameters())
    assert first.data_ptr() == resumed._flat.data_ptr()

