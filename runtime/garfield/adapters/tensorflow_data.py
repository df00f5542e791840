"""The TensorFlow adapter's data modes: where each training batch comes from, one class per mode.

* :class:`ArrayBatches`, for an ``(x, y)`` pair of arrays: the data is moved to the device once;
  each step gathers its batch on the device from indices of a per-worker permutation (seed +
  index), inside the same traced call as the gradient, so workers draw distinct shuffled streams
  and no input pipeline runs per step.
* :class:`DatasetBatches`, for a ``tf.data.Dataset`` of ``(x, y)`` (batched or not): the same
  per-worker shuffle seed, batches of the spec's size copied to the device ahead of the step.

Like the PyTorch adapter's ``_TensorBatches`` / ``_LoaderBatches``, the adapter holds one of them
and asks it for batches; only the array mode has a fused "next batch and its gradient" call.
Test data (:func:`prepare_test`) is a pipeline or a list of device batches, evaluated alike.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable

import numpy as np

from garfield.adapters.tensorflow_traced import Steps, traced

EVAL_BATCH = 1000  # test batches: large enough to amortise the call, small enough for any device
SHUFFLE_BUFFER = 10_000  # for tf.data.Dataset training data of unknown or large size


class TensorFlowTaskError(ValueError):
    """The user's task cannot be run by the TensorFlow adapter (wrong kind of model, loss, data)."""


def _is_pair(data: Any) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2


def _batched(tf: Any, dataset: Any) -> bool:
    """A dataset whose inputs have an unknown leading dimension was made with ``.batch()``."""
    spec = dataset.element_spec
    first = tf.nest.flatten(spec)[0]
    return first.shape.rank is not None and first.shape.rank >= 1 and first.shape[0] is None


def _as_examples(tf: Any, dataset: Any, what: str) -> Any:
    """The dataset as single ``(x, y)`` examples, so that the spec's batch size governs."""
    if not isinstance(dataset.element_spec, tuple) or len(dataset.element_spec) != 2:
        raise TensorFlowTaskError(f"task.{what}: a tf.data.Dataset must yield (inputs, targets) pairs; "
                                  f"it yields {dataset.element_spec}")
    return dataset.unbatch() if _batched(tf, dataset) else dataset


def _arrays(data: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = data
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y) or len(x) == 0:
        raise TensorFlowTaskError(f"task.{what}: inputs and targets must be non-empty and of equal length "
                                  f"(got {len(x)} and {len(y)})")
    return x, y


class Batches(ABC):
    """One data mode's source of training batches of `batch_size` on `device`."""

    def __init__(self, tf: Any, batch_size: int, device: str) -> None:
        self._tf, self.batch_size, self.device = tf, batch_size, device

    @abstractmethod
    def sample(self) -> Any:
        """One example's inputs (a batch of one), to create the variables of a lazily built model."""

    @abstractmethod
    def specs(self) -> tuple[Any, Any]:
        """The TensorSpecs of one batch's inputs and targets."""

    @abstractmethod
    def next(self) -> tuple[Any, Any]:
        """The next batch (x, y); called under ``tf.device(self.device)``."""

    @abstractmethod
    def cast(self, cast: Callable[[Any], Any]) -> None:
        """Convert the inputs this mode holds on the device, once, with `cast`."""

    @abstractmethod
    def compile(self, steps: Steps) -> None:
        """Trace this mode's own batch functions, if it has any."""

    def gradient(self, pending: Any) -> tuple[Any, Any] | None:
        """The next batch's (flat gradient, loss) in one traced call, writing `pending` parameters
        first when not None; None when this mode has no such call (the adapter then takes
        :meth:`next` and its own traced gradient)."""
        return None


class ArrayBatches(Batches):
    """``(x, y)`` arrays held on the device, batched by gathering a per-worker permutation's indices."""

    def __init__(self, tf: Any, data: Any, batch_size: int, seed: int, device: str) -> None:
        super().__init__(tf, batch_size, device)
        x, y = _arrays(data, "train")
        if len(x) < batch_size:
            raise TensorFlowTaskError(f"task.train has {len(x)} examples, fewer than spec.training.batchSize={batch_size}")
        self.x, self.y = tf.constant(x), tf.constant(y)
        self._n = len(x)
        self._rng = np.random.default_rng(seed)
        self._perm = self._rng.permutation(self._n).astype(np.int32)
        self._pos = 0

    def sample(self) -> Any:
        return self.x[:1]

    def specs(self) -> tuple[Any, Any]:
        tf = self._tf
        return (tf.TensorSpec([self.batch_size, *self.x.shape[1:]], self.x.dtype),
                tf.TensorSpec([self.batch_size, *self.y.shape[1:]], self.y.dtype))

    def cast(self, cast: Callable[[Any], Any]) -> None:
        self.x = cast(self.x)

    def compile(self, steps: Steps) -> None:
        tf = self._tf
        x_all, y_all = self.x, self.y
        idx_spec = tf.TensorSpec([self.batch_size], tf.int32)

        @traced(tf, idx_spec)
        def batch_at(idx: Any) -> tuple[Any, Any]:
            return tf.gather(x_all, idx), tf.gather(y_all, idx)

        @traced(tf, idx_spec)
        def grad_at(idx: Any) -> tuple[Any, Any]:
            return steps.loss_and_grad(tf.gather(x_all, idx), tf.gather(y_all, idx))

        @traced(tf, steps.flat_spec, idx_spec)
        def set_and_grad_at(params: Any, idx: Any) -> tuple[Any, Any]:
            steps.assign(params)
            return steps.loss_and_grad(tf.gather(x_all, idx), tf.gather(y_all, idx))

        self._batch_at, self._grad_at, self._set_and_grad_at = batch_at, grad_at, set_and_grad_at

    def _next_indices(self) -> Any:
        """The next batch's indices in this worker's own permutation; reshuffled every epoch."""
        if self._pos + self.batch_size > self._n:
            self._perm = self._rng.permutation(self._n).astype(np.int32)
            self._pos = 0
        idx = self._perm[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        return self._tf.constant(idx)

    def next(self) -> tuple[Any, Any]:
        return self._batch_at(self._next_indices())  # type: ignore[no-any-return]  # a traced TF call

    def gradient(self, pending: Any) -> tuple[Any, Any] | None:
        """The hot path: one call per step."""
        idx = self._next_indices()
        with self._tf.device(self.device):
            if pending is not None:
                return self._set_and_grad_at(pending, idx)  # type: ignore[no-any-return]
            return self._grad_at(idx)  # type: ignore[no-any-return]


class DatasetBatches(Batches):
    """A ``tf.data.Dataset``, shuffled with this worker's seed, repeated and batched on the host."""

    def __init__(self, tf: Any, data: Any, batch_size: int, seed: int, device: str) -> None:
        super().__init__(tf, batch_size, device)
        ds = _as_examples(tf, data, "train")
        size = int(ds.cardinality())
        buffer = size if 0 < size <= SHUFFLE_BUFFER * 10 else SHUFFLE_BUFFER
        ds = (ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat()
              .batch(batch_size, drop_remainder=True))
        # batches are copied to the device (a GPU: ahead of the step that needs them)
        ds = ds.apply(tf.data.experimental.prefetch_to_device(device, buffer_size=2))
        with tf.device("/CPU:0"):  # input pipelines run on the host
            self._iter = iter(ds)
        self._sample_x = ds.element_spec[0]

    def sample(self) -> Any:
        spec = self._sample_x
        return self._tf.zeros([1, *spec.shape[1:]], spec.dtype)

    def cast(self, cast: Callable[[Any], Any]) -> None:
        pass  # a pipeline's batches are converted by the model's first layer

    def compile(self, steps: Steps) -> None:
        pass  # batches come from the host pipeline: the adapter's traced gradient of (x, y) serves

    def specs(self) -> tuple[Any, Any]:
        x, y = (self._tf.TensorSpec([self.batch_size, *s.shape[1:]], s.dtype) for s in self._iter.element_spec)
        return x, y

    def next(self) -> tuple[Any, Any]:
        x, y = next(self._iter)
        return x, y


def train_batches(tf: Any, data: Any, batch_size: int, seed: int, device: str) -> Batches:
    """The data mode of `task.train`, or TensorFlowTaskError saying what a TensorFlow task may pass."""
    if isinstance(data, tf.data.Dataset):
        return DatasetBatches(tf, data, batch_size, seed, device)
    if not _is_pair(data):
        raise TensorFlowTaskError(
            f"task.train must be a tf.data.Dataset of (inputs, targets) or an (inputs, targets) pair of arrays; "
            f"got {type(data).__name__}" + (" (a PyTorch dataset? set spec.framework: pytorch)"
                                             if hasattr(data, "__getitem__") and hasattr(data, "__len__") else ""))
    return ArrayBatches(tf, data, batch_size, seed, device)


def prepare_test(tf: Any, data: Any) -> Any:
    """`task.test` as batches of at most EVAL_BATCH: a host pipeline, or a list of constant batches."""
    if isinstance(data, tf.data.Dataset):
        return _as_examples(tf, data, "test").batch(EVAL_BATCH).prefetch(2)
    if not _is_pair(data):
        raise TensorFlowTaskError("task.test must be a tf.data.Dataset or an (inputs, targets) pair; "
                                  f"got {type(data).__name__}")
    x, y = _arrays(data, "test")
    return [(tf.constant(x[i:i + EVAL_BATCH]), tf.constant(y[i:i + EVAL_BATCH])) for i in range(0, len(x), EVAL_BATCH)]
