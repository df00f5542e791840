"""TensorFlow / Keras adapter: the user's own Keras model (or ``tf.Module``) behind flat vectors.

The protocol nodes see one flat parameter vector and one flat gradient vector per step, exactly as
with PyTorch; this module turns a Keras user's unchanged objects into that:

* model: a Keras model (functional, ``Sequential`` or subclassed; built or not) or a ``tf.Module``
  whose ``trainable_variables`` are its parameters, called as ``model(x)``;
* loss: what the user passes to ``model.compile``: a ``keras.losses.Loss``, a loss function or
  its name, called the Keras way, ``loss(y_true, y_pred)``;
* optimizer: a ``keras.optimizers.Optimizer`` instance, its name, or a no-argument factory;
* data: a ``tf.data.Dataset`` of ``(x, y)`` (batched or not) or an ``(x, y)`` pair of arrays.

Why it is shaped this way:

* Every per-step computation is one ``tf.function`` traced once with a fixed input signature (no
  retracing, no per-step Python beyond the call). The gradient function concatenates the
  per-variable gradients *inside* the graph, so the flat vector is produced by the same kernel
  that would have copied them anyway; setting parameters and applying a flat gradient split it
  back inside the graph as well. The only copies are the unavoidable concat / split: TF variables
  are separate buffers and cannot alias one flat vector.
* Array data is moved to the device once; each step gathers its batch on the device from indices
  of a per-worker permutation (seed + index), so workers draw distinct shuffled streams and no
  input pipeline runs per step. A ``tf.data.Dataset`` gets the same per-worker shuffle seed.
* Everything runs under ``tf.device(self.device)``: ``/GPU:0`` when TensorFlow sees a GPU, else
  ``/CPU:0``. Aggregation is handed the stacked device tensor, so it stays there too.
* TensorFlow is imported lazily and quietly (``TF_CPP_MIN_LOG_LEVEL``), and its thread pools are
  sized to the CPUs this process may use, because a local job runs many replicas on few cores.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from typing import Any, Callable

import numpy as np

from garfield.adapters.base import FrameworkAdapter
from garfield.adapters.cpus import usable_cpus
from garfield.task import Task

EVAL_BATCH = 1000  # test batches: large enough to amortise the call, small enough for any device
SHUFFLE_BUFFER = 10_000  # for tf.data.Dataset training data of unknown or large size

_tf: Any = None  # the tensorflow module, once imported


class TensorFlowTaskError(ValueError):
    """The user's task cannot be run by the TensorFlow adapter (wrong kind of model, loss, data)."""


# -- importing and configuring TensorFlow ----------------------------------------------------------

def thread_count() -> int:
    """Intra-op threads: ``GARFIELD_THREADS`` or ``OMP_NUM_THREADS`` when set (the local launcher
    sets one thread per replica when many replicas share few cores), else every usable CPU."""
    for var in ("GARFIELD_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return usable_cpus()


# Lines TensorFlow's C++ runtime writes to stderr at import even with TF_CPP_MIN_LOG_LEVEL=2
# (absl INFO lines such as the oneDNN notice, and absl's own pre-initialisation banner).
_IMPORT_NOISE = re.compile(rb"^(I\d{4} |WARNING: All log messages before absl::InitializeLog)")


def _import_quietly() -> Any:
    """``import tensorflow`` with its C++ import banner filtered out of stderr.

    The banner bypasses Python logging (it is written to file descriptor 2 by absl), so fd 2 is
    pointed at a temporary file for the import; every line that is not known noise is written back
    afterwards, so real errors and warnings still reach the log. ``TF_CPP_MIN_LOG_LEVEL=0`` keeps
    everything."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        import tensorflow

        return tensorflow
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = b"".join(line for line in capture.read().splitlines(keepends=True) if not _IMPORT_NOISE.match(line))
            if kept:
                if hasattr(sys.stderr, "buffer"):
                    sys.stderr.buffer.write(kept)
                else:
                    sys.stderr.write(kept.decode(errors="replace"))
                sys.stderr.flush()
    return tensorflow


def import_tensorflow() -> Any:
    """Import TensorFlow once, quietly, with its thread pools sized for this process.

    Raises ImportError with an actionable message when TensorFlow is not installed.
    """
    global _tf
    if _tf is not None:
        return _tf
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ INFO/WARNING at import and per op
    try:
        tf = _import_quietly()
    except ImportError as exc:
        raise ImportError(
            "this job has framework: tensorflow but TensorFlow is not installed in this environment "
            f"({exc}); install it with `pip install 'garfield[tensorflow]'` (tensorflow-cpu) or "
            "`pip install tensorflow` for GPUs, or use an image built with TensorFlow"
        ) from exc
    tf.get_logger().setLevel("ERROR")
    threads = thread_count()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, threads))
    except RuntimeError:
        pass  # the runtime is already initialised (the user's task ran ops first): keep its pools
    _tf = tf
    return tf


def default_device(tf: Any) -> str:
    """``/GPU:0`` when TensorFlow sees a GPU, else ``/CPU:0``."""
    return "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"


# -- the user's objects ------------------------------------------------------------------------------

def _is_keras_layer(obj: Any) -> bool:
    import keras

    return isinstance(obj, keras.Layer)


def _resolve_loss(loss: Any) -> Callable[[Any, Any], Any]:
    """The user's loss, called Keras-style: ``loss(y_true, y_pred)``. Names go through Keras."""
    import keras

    if isinstance(loss, str):
        try:
            named: Callable[[Any, Any], Any] = keras.losses.get(loss)
            return named
        except ValueError as exc:
            raise TensorFlowTaskError(f"task.loss {loss!r} is not a Keras loss name: {exc}") from exc
    if not callable(loss):
        raise TensorFlowTaskError(f"task.loss must be a Keras loss, a loss function or its name; got {type(loss).__name__}")
    fn: Callable[[Any, Any], Any] = loss
    return fn


def _resolve_optimizer(optimizer: Any, learning_rate: float | None) -> Any:
    """A fresh or given Keras optimizer, with ``spec.training.learningRate`` applied when set."""
    import keras

    if isinstance(optimizer, str):
        optimizer = keras.optimizers.get(optimizer)
    elif not isinstance(optimizer, keras.optimizers.Optimizer):
        if not callable(optimizer):
            raise TensorFlowTaskError(
                f"task.optimizer must be a keras.optimizers.Optimizer, its name or a no-argument factory; "
                f"got {type(optimizer).__name__}")
        optimizer = optimizer()
        if not isinstance(optimizer, keras.optimizers.Optimizer):
            raise TensorFlowTaskError(f"task.optimizer factory returned {type(optimizer).__name__}, not a Keras optimizer")
    if learning_rate is not None:
        if isinstance(optimizer.learning_rate, keras.Variable) and not isinstance(
                optimizer._learning_rate, keras.optimizers.schedules.LearningRateSchedule):
            optimizer.learning_rate.assign(learning_rate)
        else:  # a schedule cannot be assigned a number: rebuild the same optimizer with a constant rate
            config = optimizer.get_config()
            config["learning_rate"] = learning_rate
            optimizer = type(optimizer).from_config(config)
    return optimizer


def _is_pair(data: Any) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2


def _batched(dataset: Any) -> bool:
    """A dataset whose inputs have an unknown leading dimension was made with ``.batch()``."""
    tf = _tf
    spec = dataset.element_spec
    first = tf.nest.flatten(spec)[0]
    return first.shape.rank is not None and first.shape.rank >= 1 and first.shape[0] is None


def _as_examples(dataset: Any, what: str) -> Any:
    """The dataset as single ``(x, y)`` examples, so that the spec's batch size governs."""
    if not isinstance(dataset.element_spec, tuple) or len(dataset.element_spec) != 2:
        raise TensorFlowTaskError(f"task.{what}: a tf.data.Dataset must yield (inputs, targets) pairs; "
                                  f"it yields {dataset.element_spec}")
    return dataset.unbatch() if _batched(dataset) else dataset


def _arrays(data: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = data
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y) or len(x) == 0:
        raise TensorFlowTaskError(f"task.{what}: inputs and targets must be non-empty and of equal length "
                                  f"(got {len(x)} and {len(y)})")
    return x, y


class _Traced:
    """A ``tf.function`` with a fixed input signature, traced on first use and then called through
    its concrete function: the polymorphic call's argument binding and cache lookup cost about as
    much again as running a small graph, once per step per call."""

    def __init__(self, function: Any) -> None:
        self._function = function
        self._concrete: Any = None

    def __call__(self, *args: Any) -> Any:
        concrete = self._concrete
        if concrete is None:
            concrete = self._concrete = self._function.get_concrete_function()
        return concrete(*args)


# -- the adapter --------------------------------------------------------------------------------------

class TensorFlowAdapter(FrameworkAdapter):
    """One node's view of a Keras / TensorFlow task: flat vectors on ``self.device``."""

    framework = "tensorflow"

    def __init__(self, task: Task, spec: Any, role: str, index: int, device: str | None = None) -> None:
        tf = import_tensorflow()
        self._tf = tf
        self._params: Any = None  # cached flat parameters, None once they may have changed
        self._pending: Any = None  # parameters set but not yet written into the variables
        self.role, self.index = role, index
        training = spec.training
        self.batch_size: int = int(training.batch_size)
        self.seed: int = int(training.seed) + int(index)
        self.device = device or default_device(tf)
        self.label_transform = None

        self._model = task.model
        if not hasattr(self._model, "trainable_variables"):
            raise TensorFlowTaskError(
                f"task.model must be a Keras model or a tf.Module with trainable variables; got {type(self._model).__name__}"
                + (" (a PyTorch module? set spec.framework: pytorch)" if hasattr(self._model, "parameters") else ""))
        self._keras_model = _is_keras_layer(self._model)
        self.loss_fn = _resolve_loss(task.loss)
        self._rng = np.random.default_rng(self.seed)

        with tf.device(self.device):
            self._train = self._prepare_train(task.train)
            self._test = self._prepare_test(task.test) if task.test is not None else None
            self._build_model()
            self._vars = list(self._model.trainable_variables)
            if not self._vars:
                raise TensorFlowTaskError("task.model has no trainable variables")
            self._shapes = [tuple(int(d) for d in v.shape) for v in self._vars]
            self._sizes = [int(np.prod(s)) for s in self._shapes]
            self.num_params = int(sum(self._sizes))
            dtypes = {v.dtype for v in self._vars}
            self.dtype = tf.as_dtype(next(iter(dtypes))) if len(dtypes) == 1 else tf.float32
            self._uniform_dtype = len(dtypes) == 1
            self._cast_inputs()
            self.optimizer = _resolve_optimizer(task.optimizer, training.learning_rate)
            self.optimizer.build(self._vars)  # slot variables now, not inside a traced function
            self._compile()

    @property
    def model(self) -> Any:
        """The user's model with its variables up to date (pending parameters written first)."""
        self._flush()
        return self._model

    # -- data -------------------------------------------------------------------------------------
    def _prepare_train(self, data: Any) -> Any:
        tf = self._tf
        if isinstance(data, tf.data.Dataset):
            ds = _as_examples(data, "train")
            size = int(ds.cardinality())
            buffer = size if 0 < size <= SHUFFLE_BUFFER * 10 else SHUFFLE_BUFFER
            ds = (ds.shuffle(buffer, seed=self.seed, reshuffle_each_iteration=True).repeat()
                  .batch(self.batch_size, drop_remainder=True))
            # batches are copied to the device (a GPU: ahead of the step that needs them)
            ds = ds.apply(tf.data.experimental.prefetch_to_device(self.device, buffer_size=2))
            with tf.device("/CPU:0"):  # input pipelines run on the host
                self._train_iter = iter(ds)
            self._sample_x = ds.element_spec[0]
            return None
        if not _is_pair(data):
            raise TensorFlowTaskError(
                f"task.train must be a tf.data.Dataset of (inputs, targets) or an (inputs, targets) pair of arrays; "
                f"got {type(data).__name__}" + (" (a PyTorch dataset? set spec.framework: pytorch)"
                                                 if hasattr(data, "__getitem__") and hasattr(data, "__len__") else ""))
        x, y = _arrays(data, "train")
        if len(x) < self.batch_size:
            raise TensorFlowTaskError(f"task.train has {len(x)} examples, fewer than spec.training.batchSize={self.batch_size}")
        self._train_iter = None
        self._x_train = tf.constant(x)
        self._y_train = tf.constant(y)
        self._n_train = len(x)
        self._perm = self._rng.permutation(self._n_train).astype(np.int32)
        self._pos = 0
        return (self._x_train, self._y_train)

    def _prepare_test(self, data: Any) -> Any:
        tf = self._tf
        if isinstance(data, tf.data.Dataset):
            return _as_examples(data, "test").batch(EVAL_BATCH).prefetch(2)
        if not _is_pair(data):
            raise TensorFlowTaskError("task.test must be a tf.data.Dataset or an (inputs, targets) pair; "
                                      f"got {type(data).__name__}")
        x, y = _arrays(data, "test")
        return [(tf.constant(x[i:i + EVAL_BATCH]), tf.constant(y[i:i + EVAL_BATCH])) for i in range(0, len(x), EVAL_BATCH)]

    def _cast_inputs(self) -> None:
        """Floating-point array inputs in the model's dtype, converted once on the device instead of
        by the first layer at every step (float64 NumPy data for a float32 model is the usual case)."""
        tf = self._tf

        def cast(t: Any) -> Any:
            return tf.cast(t, self.dtype) if t.dtype.is_floating and t.dtype != self.dtype else t

        if self._train_iter is None:
            self._x_train = cast(self._x_train)
            self._train = (self._x_train, self._y_train)
        if isinstance(self._test, list):
            self._test = [(cast(x), y) for x, y in self._test]

    def _next_indices(self) -> Any:
        """The next batch's indices in this worker's own permutation; reshuffled every epoch."""
        if self._pos + self.batch_size > self._n_train:
            self._perm = self._rng.permutation(self._n_train).astype(np.int32)
            self._pos = 0
        idx = self._perm[self._pos:self._pos + self.batch_size]
        self._pos += self.batch_size
        return self._tf.constant(idx)

    def _build_model(self) -> None:
        """Create the variables of a model built lazily (e.g. ``Sequential`` without an Input)."""
        if self._keras_model and self._model.built and self._model.trainable_variables:
            return
        if not self._keras_model and self._model.trainable_variables:
            return
        tf = self._tf
        if self._train_iter is None:
            sample = self._x_train[:1]
        else:
            spec = self._sample_x
            sample = tf.zeros([1, *spec.shape[1:]], spec.dtype)
        self._call(sample, training=False)

    def _call(self, x: Any, training: bool) -> Any:
        return self._model(x, training=training) if self._keras_model else self._model(x)

    # -- compiled step functions ------------------------------------------------------------------
    def _compile(self) -> None:
        tf = self._tf
        vars_, shapes, sizes, dtype = self._vars, self._shapes, self._sizes, self.dtype
        flat_spec = tf.TensorSpec([self.num_params], dtype)

        def flatten(tensors: list[Any]) -> Any:
            return tf.concat([tf.reshape(tf.cast(t, dtype), [-1]) for t in tensors], axis=0)

        def split(flat: Any) -> list[Any]:
            parts = tf.split(flat, sizes)
            return [tf.cast(tf.reshape(p, s), v.dtype) for p, s, v in zip(parts, shapes, vars_, strict=True)]

        def loss_and_grad(x: Any, y: Any) -> tuple[Any, Any]:
            with tf.GradientTape() as tape:
                out = self._call(x, training=True)
                loss = tf.reduce_mean(self.loss_fn(y, out))  # loss functions return per-example values
                if self._keras_model and self._model.losses:  # regularisation terms
                    loss = loss + tf.add_n(self._model.losses)
            grads = tape.gradient(loss, vars_)
            grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, vars_, strict=True)]
            return flatten(grads), loss

        def assign(flat: Any) -> None:
            for v, p in zip(vars_, split(flat), strict=True):
                v.assign(p)

        def traced(*signature: Any) -> Callable[[Callable[..., Any]], _Traced]:
            return lambda fn: _Traced(tf.function(fn, input_signature=list(signature)))

        self._get = traced()(lambda: flatten(vars_))
        self._set = traced(flat_spec)(assign)

        @traced(flat_spec)
        def apply(flat: Any) -> None:
            self.optimizer.apply_gradients(zip(split(flat), vars_, strict=True))

        @traced(flat_spec, flat_spec)
        def set_and_apply(params: Any, flat: Any) -> None:
            assign(params)
            self.optimizer.apply_gradients(zip(split(flat), vars_, strict=True))

        self._apply, self._set_and_apply = apply, set_and_apply

        if self._train_iter is None:
            x_all, y_all = self._train
            x_spec = tf.TensorSpec([self.batch_size, *x_all.shape[1:]], x_all.dtype)
            y_spec = tf.TensorSpec([self.batch_size, *y_all.shape[1:]], y_all.dtype)
            idx_spec = tf.TensorSpec([self.batch_size], tf.int32)

            @traced(idx_spec)
            def batch_at(idx: Any) -> tuple[Any, Any]:
                return tf.gather(x_all, idx), tf.gather(y_all, idx)

            @traced(idx_spec)
            def grad_at(idx: Any) -> tuple[Any, Any]:
                return loss_and_grad(tf.gather(x_all, idx), tf.gather(y_all, idx))

            @traced(flat_spec, idx_spec)
            def set_and_grad_at(params: Any, idx: Any) -> tuple[Any, Any]:
                assign(params)
                return loss_and_grad(tf.gather(x_all, idx), tf.gather(y_all, idx))

            self._batch_at, self._grad_at, self._set_and_grad_at = batch_at, grad_at, set_and_grad_at
        else:
            x_spec, y_spec = (tf.TensorSpec([self.batch_size, *s.shape[1:]], s.dtype)
                              for s in self._train_iter.element_spec)
        self._grad_xy = traced(x_spec, y_spec)(loss_and_grad)

        @tf.function(reduce_retracing=True)  # type: ignore[untyped-decorator]  # TensorFlow has no type information
        def eval_batch(x: Any, y: Any) -> tuple[Any, Any]:
            out = self._call(x, training=False)
            loss = tf.reduce_mean(self.loss_fn(y, out))
            return tf.cast(loss, tf.float64) * tf.cast(tf.shape(out)[0], tf.float64), _correct(tf, out, y)

        self._eval_batch = eval_batch

    # -- FrameworkAdapter ---------------------------------------------------------------------------
    def get_params(self) -> Any:
        """The flat parameters. TF tensors are immutable, so the same vector is handed out again
        until the parameters change: a server reads its model up to three times per step."""
        if self._params is None:
            with self._tf.device(self.device):
                self._params = self._get()
        return self._params

    def set_params(self, flat: Any) -> None:
        """Record `flat` as the parameters; the variables are written by the next computation
        that needs them, in the same traced call (a worker's gradient, a server's step), which
        saves one call into TensorFlow per step. Reads see `flat` at once."""
        with self._tf.device(self.device):
            flat = self._vector(flat)
        if not self._uniform_dtype:  # the variables would round `flat`: write now, read back
            self._write(flat)
            return
        self._pending = flat
        self._params = flat

    def _write(self, flat: Any) -> None:
        with self._tf.device(self.device):
            self._set(flat)
        self._pending = None
        self._params = None

    def _flush(self) -> None:
        """Write pending parameters into the variables before a computation that reads them."""
        if self._pending is not None:
            params = self._params
            self._write(self._pending)
            self._params = params

    def compute_gradient(self) -> tuple[Any, float]:
        tf = self._tf
        transform = self.label_transform
        if self._train_iter is None and transform is None:  # the hot path: one call per step
            idx = self._next_indices()
            with tf.device(self.device):
                if self._pending is not None:
                    grad, loss = self._set_and_grad_at(self._pending, idx)
                    self._pending = None
                else:
                    grad, loss = self._grad_at(idx)
            return grad, float(loss)
        self._flush()
        with tf.device(self.device):
            if self._train_iter is not None:
                x, y = next(self._train_iter)
            else:
                x, y = self._batch_at(self._next_indices())
            if transform is not None:
                y = tf.convert_to_tensor(transform(y), dtype=y.dtype)
            grad, loss = self._grad_xy(x, y)
        return grad, float(loss)

    def apply_gradient(self, flat: Any) -> None:
        with self._tf.device(self.device):
            flat = self._vector(flat)
            if self._pending is not None:
                self._set_and_apply(self._pending, flat)
                self._pending = None
            else:
                self._apply(flat)
        self._params = None

    def evaluate(self, max_batches: int | None = None) -> dict[str, float]:
        if self._test is None:
            return {}
        self._flush()
        total_loss, correct, count = 0.0, 0, 0
        for i, (x, y) in enumerate(self._test):  # a tf.data pipeline iterates on the host
            if max_batches is not None and i >= max_batches:
                break
            with self._tf.device(self.device):
                loss_sum, hits = self._eval_batch(x, y)
            total_loss += float(loss_sum)
            correct += int(hits)
            count += int(x.shape[0])
        if count == 0:
            return {}
        return {"accuracy": correct / count, "loss": total_loss / count}

    def zeros(self) -> Any:
        with self._tf.device(self.device):
            return self._tf.zeros([self.num_params], self.dtype)

    def stack(self, vectors: list[Any]) -> Any:
        with self._tf.device(self.device):
            return self._tf.stack([self._vector(v) for v in vectors])

    def aggregate(self, rule: str, stacked: Any, f: int, **params: Any) -> Any:
        from garfield.aggregators import aggregate

        with self._tf.device(self.device):
            return aggregate(rule, stacked, f, **params)

    def to_numpy(self, flat: Any) -> np.ndarray:
        return flat.numpy() if hasattr(flat, "numpy") else np.asarray(flat)

    def from_numpy(self, array: np.ndarray) -> Any:
        tf = self._tf
        with tf.device(self.device):
            tensor = tf.convert_to_tensor(array)
            # eager constants are created in host memory; identity places the value on the device
            # (on a CPU device it forwards the same buffer)
            return tf.identity(tensor)

    # -- helpers -----------------------------------------------------------------------------------
    def _vector(self, flat: Any) -> Any:
        """`flat` as a tensor of the model's dtype and size (clear error on a wrong-sized vector)."""
        tf = self._tf
        if isinstance(flat, np.ndarray):
            flat = self.from_numpy(flat)
        flat = tf.convert_to_tensor(flat)
        if flat.shape.rank != 1 or int(flat.shape[0]) != self.num_params:
            raise ValueError(f"expected a flat vector of {self.num_params} parameters, got shape {tuple(flat.shape)}")
        return flat if flat.dtype == self.dtype else tf.cast(flat, self.dtype)


def _correct(tf: Any, out: Any, y: Any) -> Any:
    """Number of correct predictions: argmax for class scores (sparse or one-hot targets), a 0.5
    threshold for a single probability output (0 for a single logit)."""
    if out.shape.rank == 2 and out.shape[-1] == 1:
        threshold = tf.where(tf.reduce_min(out) >= 0.0, 0.5, 0.0)
        threshold = tf.where(tf.reduce_max(out) <= 1.0, threshold, 0.0)
        pred = tf.cast(tf.reshape(out, [-1]) >= tf.cast(threshold, out.dtype), tf.int64)
        truth = tf.cast(tf.reshape(y, [-1]), tf.int64)
    else:
        pred = tf.argmax(out, axis=-1, output_type=tf.int64)
        truth = tf.argmax(y, axis=-1, output_type=tf.int64) if y.shape.rank == out.shape.rank else tf.cast(y, tf.int64)
    return tf.reduce_sum(tf.cast(tf.equal(pred, tf.reshape(truth, tf.shape(pred))), tf.int64))
