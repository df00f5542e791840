"""PyTorch adapter: the user's own ``nn.Module``, loss, optimizer and data, as flat vectors.

All trainable parameters are moved into one flat buffer and each ``Parameter`` becomes a view of
it; their ``.grad`` likewise view one flat gradient buffer. Reading the model is one copy,
writing it is one ``copy_``, autograd accumulates straight into the flat gradient, and the user's
optimizer updates the views in place, so no per-step flatten/unflatten happens at all. The device
is CUDA when available (aggregation then runs there too); the wire sees host arrays only through
:meth:`TorchAdapter.to_numpy` / :meth:`TorchAdapter.from_numpy`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from garfield.adapters.base import FrameworkAdapter
from garfield.aggregators.preaggregation import Stage
from garfield.spec.kinds import Role
from garfield.task import Task


def _numpy_bfloat16() -> Any:
    """numpy's view of bfloat16 (from ml_dtypes), imported on first need: the import costs about a
    CPU-second of every replica's start-up, and most models are float32."""
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - ml_dtypes is a declared dependency
        raise TorchTaskError("bfloat16 models need the ml_dtypes package") from None
    return np.dtype(ml_dtypes.bfloat16)


# Whole datasets up to this size are moved to the device once and batched by indexing.
_DEVICE_DATA_LIMIT = 1 << 30
_EVAL_BATCH = 1024


# Each role's offset in the replicas' shuffled-stream seeds (a Role is a str: plain names match).
_STREAM_OF_ROLE: dict[str, int] = {Role.WORKER: 0, Role.PEER: 1, Role.SERVER: 2}

class TorchTaskError(ValueError):
    """The task's objects cannot be trained by this adapter (explains what to change)."""


def default_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def _as_tensor_dataset(data: Any) -> TensorDataset | None:
    """(inputs, targets) arrays/tensors or a TensorDataset -> TensorDataset; None for other data."""
    if isinstance(data, TensorDataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(hasattr(a, "shape") for a in data):
        x, y = (torch.as_tensor(np.asarray(a)) if not isinstance(a, torch.Tensor) else a for a in data)
        if len(x) != len(y):
            raise TorchTaskError(f"inputs and targets differ in length ({len(x)} vs {len(y)})")
        return TensorDataset(x, y)
    return None


class _TensorBatches:
    """Batches by indexing whole tensors with a shuffled permutation (no per-sample Python)."""

    def __init__(self, data: TensorDataset, batch_size: int, generator: torch.Generator, device: torch.device) -> None:
        tensors = data.tensors
        nbytes = sum(t.numel() * t.element_size() for t in tensors)
        self.device = device
        self.tensors = [t.to(device) if nbytes <= _DEVICE_DATA_LIMIT else t for t in tensors]
        self.n = len(tensors[0])
        if self.n == 0:
            raise TorchTaskError("the training data is empty")
        self.batch_size = min(batch_size, self.n)
        self.generator = generator
        self._perm = torch.empty(0, dtype=torch.long)
        self._pos = 0

    def next(self) -> tuple[torch.Tensor, ...]:
        if self._pos + self.batch_size > len(self._perm):
            self._perm = torch.randperm(self.n, generator=self.generator)
            self._pos = 0
        idx = self._perm[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        return tuple(t[idx.to(t.device)].to(self.device, non_blocking=True) for t in self.tensors)


class _LoaderBatches:
    """Cycles a DataLoader forever (each worker's loader shuffled by its own generator)."""

    def __init__(self, loader: DataLoader[Any], device: torch.device) -> None:
        self.loader = loader
        self.device = device
        self._it: Iterator[Any] = iter(loader)

    def next(self) -> tuple[torch.Tensor, ...]:
        try:
            batch = next(self._it)
        except StopIteration:
            self._it = iter(self.loader)
            try:
                batch = next(self._it)
            except StopIteration:
                raise TorchTaskError("the training data yields no batch") from None
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise TorchTaskError("training batches must be (inputs, targets) pairs")
        return tuple(b.to(self.device, non_blocking=True) if isinstance(b, torch.Tensor) else b for b in batch[:2])


def _make_batches(data: Any, batch_size: int, seed: int, device: torch.device) -> _TensorBatches | _LoaderBatches:
    generator = torch.Generator().manual_seed(seed)
    tensors = _as_tensor_dataset(data)
    if tensors is not None:
        return _TensorBatches(tensors, batch_size, generator, device)
    if isinstance(data, DataLoader):
        # Keep the user's batch size and collation, but give this replica its own shuffled order.
        dataset = data.dataset
        if isinstance(dataset, TensorDataset) and data.collate_fn is torch.utils.data.default_collate:
            return _TensorBatches(dataset, data.batch_size or batch_size, generator, device)
        if isinstance(dataset, IterableDataset):
            return _LoaderBatches(data, device)
        loader = DataLoader(dataset, batch_size=data.batch_size or batch_size, shuffle=True, generator=generator,
                            collate_fn=data.collate_fn, drop_last=data.drop_last, num_workers=data.num_workers,
                            pin_memory=device.type == "cuda")
        return _LoaderBatches(loader, device)
    if isinstance(data, IterableDataset):
        return _LoaderBatches(DataLoader(data, batch_size=batch_size), device)
    if isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        return _LoaderBatches(DataLoader(data, batch_size=batch_size, shuffle=True, generator=generator, drop_last=True,
                                         pin_memory=device.type == "cuda"), device)
    raise TorchTaskError(f"training data of type {type(data).__name__} is not a Dataset, DataLoader or (inputs, targets) pair")


def _make_optimizer(optimizer: Any, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if isinstance(optimizer, (tuple, list)) and len(optimizer) == 2 and callable(optimizer[0]):
        factory, kwargs = optimizer
        made_with: torch.optim.Optimizer = factory(params, **dict(kwargs))
        return made_with
    if callable(optimizer):
        made = optimizer(params)
        if not isinstance(made, torch.optim.Optimizer):
            raise TorchTaskError(f"the optimizer factory returned {type(made).__name__}, not a torch.optim.Optimizer")
        return made
    raise TorchTaskError("optimizer must be a torch.optim.Optimizer, a factory of one, or (factory, kwargs); "
                         f"got {type(optimizer).__name__}")


class TorchAdapter(FrameworkAdapter):
    framework = "pytorch"

    def __init__(self, task: Task, spec: Any, role: str, index: int, device: str | torch.device | None = None) -> None:
        if not isinstance(task.model, torch.nn.Module):
            raise TorchTaskError(f"a pytorch task's model must be a torch.nn.Module, got {type(task.model).__name__}")
        self.role, self.index = role, index
        self._device = torch.device(device) if device is not None else default_device()
        self.device = str(self._device)
        self.model = task.model.to(self._device)
        self.loss_fn: Callable[[Any, Any], torch.Tensor] = task.loss
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise TorchTaskError("the model has no trainable parameters")
        dtypes = {p.dtype for p in params}
        if len(dtypes) != 1:
            raise TorchTaskError("all trainable parameters must share one dtype to travel as one vector; "
                                 f"found {sorted(map(str, dtypes))}")
        dtype = dtypes.pop()
        self.num_params = sum(p.numel() for p in params)
        # One flat parameter buffer and one flat gradient buffer; parameters and grads become views.
        self._flat = torch.empty(self.num_params, dtype=dtype, device=self._device)
        self._grad = torch.zeros(self.num_params, dtype=dtype, device=self._device)
        offset = 0
        with torch.no_grad():
            for p in params:
                n = p.numel()
                self._flat[offset:offset + n].copy_(p.reshape(-1))
                p.data = self._flat[offset:offset + n].view_as(p)
                p.grad = self._grad[offset:offset + n].view_as(p)
                offset += n
        self._params = params
        self.optimizer = _make_optimizer(task.optimizer, params)
        training = getattr(spec, "training", None)
        lr = getattr(training, "learning_rate", None)
        if lr is not None:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
        batch_size = getattr(training, "batch_size", 32)
        seed = int(getattr(training, "seed", 1))
        # Each replica draws its own shuffled stream: seed, role and index give distinct orders.
        stream_seed = seed * 1_000_003 + _STREAM_OF_ROLE.get(role, 3) * 10_007 + index
        self._train_data = task.train
        self._batches: _TensorBatches | _LoaderBatches | None = None
        self._batch_size = batch_size
        self._stream_seed = stream_seed
        self._test = task.test
        self.label_transform = None

    # -- parameters ---------------------------------------------------------------------------
    def get_params(self) -> torch.Tensor:
        return self._flat.detach().clone()

    def set_params(self, flat: torch.Tensor) -> None:
        if flat.data_ptr() != self._flat.data_ptr():
            with torch.no_grad():
                self._flat.copy_(flat)

    def export(self, folder: Path) -> tuple[str, str]:
        """model.pt: the user's module's state_dict (parameters and buffers, on the CPU), which
        `model.load_state_dict(torch.load(path, weights_only=True))` reads into a fresh module."""
        state = {key: value.detach().to("cpu").clone() for key, value in self.model.state_dict().items()}
        target = folder / "model.pt"
        partial = folder / "model.pt.partial"
        torch.save(state, partial)
        os.replace(partial, target)
        return target.name, "pytorch-state-dict"

    def save_state(self, path: Path) -> None:
        """One torch.save file: the module's state_dict, the optimizer's state_dict (momentum
        buffers, step counts), torch's RNG state and the training-batch generator's, when built."""
        generator = getattr(self._batches, "generator", None)
        state = {
            "model": {key: value.detach().to("cpu").clone() for key, value in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "rng": torch.get_rng_state(),
            "batches_rng": generator.get_state() if generator is not None else None,
        }
        torch.save(state, path)

    def load_state(self, path: Path) -> None:
        """Restore a :meth:`save_state` file. The parameters are copied into the flat buffer's
        views (load_state_dict copies in place), so the flat vector and the module stay one."""
        state = torch.load(path, map_location=self._device, weights_only=True)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"].to("cpu"))
        generator = getattr(self._batch_stream(), "generator", None) if state.get("batches_rng") is not None else None
        if generator is not None:
            generator.set_state(state["batches_rng"].to("cpu"))

    def _batch_stream(self) -> _TensorBatches | _LoaderBatches:
        if self._batches is None:  # built on first use: servers never pay for training batches
            self._batches = _make_batches(self._train_data, self._batch_size, self._stream_seed, self._device)
        return self._batches

    # -- training -----------------------------------------------------------------------------
    def _next_batch(self) -> tuple[torch.Tensor, ...]:
        return self._batch_stream().next()

    def compute_gradient(self) -> tuple[torch.Tensor, float]:
        """The gradient at the current parameters on the next batch: the adapter's own flat
        gradient buffer, valid until the next call (callers keep it via :meth:`momentum`)."""
        x, y = self._next_batch()
        if self.label_transform is not None:
            y = self.label_transform(y)
        self.model.train()
        self._grad.zero_()
        loss = self.loss_fn(self.model(x), y)
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
        return self._grad, float(loss.detach())

    def apply_gradient(self, flat: torch.Tensor) -> None:
        with torch.no_grad():
            if flat.data_ptr() != self._grad.data_ptr():
                self._grad.copy_(flat)
        self.optimizer.step()

    def momentum(self, buffer: torch.Tensor | None, gradient: torch.Tensor, beta: float) -> torch.Tensor:
        if buffer is None:
            return gradient.detach().clone()
        return buffer.mul_(beta).add_(gradient)

    @torch.no_grad()
    def evaluate(self, max_batches: int | None = None) -> dict[str, float]:
        if self._test is None:
            return {}
        was_training = self.model.training
        self.model.eval()
        correct = total = 0
        loss_sum = 0.0
        try:
            for i, (x, y) in enumerate(self._test_batches()):
                if max_batches is not None and i >= max_batches:
                    break
                out = self.model(x)
                loss_sum += float(self.loss_fn(out, y)) * len(y)
                if out.dim() > 1 and out.shape[-1] > 1:
                    pred = out.argmax(dim=-1)
                else:
                    pred = (out.reshape(-1) > 0).to(y.dtype)
                correct += int((pred == y.reshape(pred.shape)).sum())
                total += len(y)
        finally:
            self.model.train(was_training)
        if total == 0:
            return {}
        return {"accuracy": correct / total, "loss": loss_sum / total}

    def _test_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        data = self._test
        assert data is not None  # evaluate() returns early without test data
        tensors = _as_tensor_dataset(data)
        if tensors is not None:
            x, y = tensors.tensors[:2]
            for start in range(0, len(x), _EVAL_BATCH):
                yield x[start:start + _EVAL_BATCH].to(self._device), y[start:start + _EVAL_BATCH].to(self._device)
            return
        loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=_EVAL_BATCH)
        for batch in loader:
            yield batch[0].to(self._device), batch[1].to(self._device)

    # -- tensors ------------------------------------------------------------------------------
    def zeros(self) -> torch.Tensor:
        return torch.zeros(self.num_params, dtype=self._flat.dtype, device=self._device)

    def stack(self, vectors: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(vectors)

    def aggregate(self, rule: str, stacked: torch.Tensor, f: int, pre: Sequence[Stage] = (), **params: Any) -> torch.Tensor:
        from garfield.aggregators import aggregate

        result: torch.Tensor = aggregate(rule, stacked, f, pre=pre, **params)
        return result

    def to_numpy(self, flat: torch.Tensor) -> np.ndarray:
        flat = flat.detach()
        if flat.dtype == torch.bfloat16:
            return flat.view(torch.int16).cpu().numpy().view(_numpy_bfloat16())
        return flat.cpu().numpy()

    def from_numpy(self, array: np.ndarray) -> torch.Tensor:
        if not array.flags.writeable:  # a received single-chunk message is read-only bytes
            array = array.copy()
        if array.dtype.name == "bfloat16":  # ml_dtypes' dtype (numpy has none)
            return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16).to(self._device)
        return torch.from_numpy(array).to(self._device)

