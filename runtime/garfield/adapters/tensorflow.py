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

* Every per-step computation is one ``tf.function`` traced once with a fixed input signature
  (:mod:`garfield.adapters.tensorflow_traced`, which says why the only copies are the flat
  vector's concat / split).
* Each data mode is a strategy class (:mod:`garfield.adapters.tensorflow_data`): array data is
  moved to the device once and gathered there per step from a per-worker permutation, in the same
  traced call as the gradient; a ``tf.data.Dataset`` gets the same per-worker shuffle seed.
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
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from garfield.adapters.base import FrameworkAdapter
from garfield.adapters.cpus import usable_cpus
from garfield.adapters.tensorflow_data import Batches, TensorFlowTaskError, prepare_test, train_batches
from garfield.adapters.tensorflow_traced import Steps
from garfield.aggregators.preaggregation import Stage
from garfield.task import Task

_tf: Any = None  # the tensorflow module, once imported


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

        with tf.device(self.device):
            self._batches: Batches = train_batches(tf, task.train, self.batch_size, self.seed, self.device)
            self._test = prepare_test(tf, task.test) if task.test is not None else None
            self._build_model()
            self._vars = list(self._model.trainable_variables)
            if not self._vars:
                raise TensorFlowTaskError("task.model has no trainable variables")
            shapes = [tuple(int(d) for d in v.shape) for v in self._vars]
            sizes = [int(np.prod(s)) for s in shapes]
            self.num_params = int(sum(sizes))
            dtypes = {v.dtype for v in self._vars}
            self.dtype = tf.as_dtype(next(iter(dtypes))) if len(dtypes) == 1 else tf.float32
            self._uniform_dtype = len(dtypes) == 1
            self._cast_inputs()
            self.optimizer = _resolve_optimizer(task.optimizer, training.learning_rate)
            self.optimizer.build(self._vars)  # slot variables now, not inside a traced function
            self._steps = Steps(tf, self._vars, shapes, sizes, self.dtype, self._call, self.loss_fn,
                                self._regularisation, self.optimizer)
            self._batches.compile(self._steps)
            self._grad_xy = self._steps.gradient_of(*self._batches.specs())

    @property
    def model(self) -> Any:
        """The user's model with its variables up to date (pending parameters written first)."""
        self._flush()
        return self._model

    # -- the model --------------------------------------------------------------------------------
    def _cast_inputs(self) -> None:
        """Floating-point array inputs in the model's dtype, converted once on the device instead of
        by the first layer at every step (float64 NumPy data for a float32 model is the usual case)."""
        tf = self._tf

        def cast(t: Any) -> Any:
            return tf.cast(t, self.dtype) if t.dtype.is_floating and t.dtype != self.dtype else t

        self._batches.cast(cast)
        if isinstance(self._test, list):
            self._test = [(cast(x), y) for x, y in self._test]

    def _build_model(self) -> None:
        """Create the variables of a model built lazily (e.g. ``Sequential`` without an Input)."""
        if self._keras_model and self._model.built and self._model.trainable_variables:
            return
        if not self._keras_model and self._model.trainable_variables:
            return
        self._call(self._batches.sample(), training=False)

    def _call(self, x: Any, training: bool) -> Any:
        return self._model(x, training=training) if self._keras_model else self._model(x)

    def _regularisation(self) -> list[Any]:
        """The model's regularisation loss terms (Keras ``model.losses``), added to the training loss."""
        return list(self._model.losses) if self._keras_model and self._model.losses else []

    # -- FrameworkAdapter ---------------------------------------------------------------------------
    def get_params(self) -> Any:
        """The flat parameters. TF tensors are immutable, so the same vector is handed out again
        until the parameters change: a server reads its model up to three times per step."""
        if self._params is None:
            with self._tf.device(self.device):
                self._params = self._steps.get()
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
            self._steps.set(flat)
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
        if transform is None:  # the hot path where the data mode has one: one call per step
            fused = self._batches.gradient(self._pending)
            if fused is not None:
                self._pending = None
                grad, loss = fused
                return grad, float(loss)
        self._flush()
        with tf.device(self.device):
            x, y = self._batches.next()
            if transform is not None:
                y = tf.convert_to_tensor(transform(y), dtype=y.dtype)
            grad, loss = self._grad_xy(x, y)
        return grad, float(loss)

    def apply_gradient(self, flat: Any) -> None:
        with self._tf.device(self.device):
            flat = self._vector(flat)
            if self._pending is not None:
                self._steps.set_and_apply(self._pending, flat)
                self._pending = None
            else:
                self._steps.apply(flat)
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
                loss_sum, hits = self._steps.eval_batch(x, y)
            total_loss += float(loss_sum)
            correct += int(hits)
            count += int(x.shape[0])
        if count == 0:
            return {}
        return {"accuracy": correct / count, "loss": total_loss / count}

    def export(self, folder: Path) -> tuple[str, str]:
        """model.keras for a Keras model (`keras.models.load_model`), else a TensorFlow checkpoint
        of the module's variables (`tf.train.Checkpoint(model=...).read`)."""
        model = self.model  # pending parameters written first
        if self._keras_model:
            partial = folder / "partial-model.keras"  # Keras wants the .keras suffix
            model.save(partial)
            target = folder / "model.keras"
            os.replace(partial, target)
            return target.name, "keras"
        written = self._tf.train.Checkpoint(model=model).write(str(folder / "model.ckpt"))
        return Path(written).name, "tensorflow-checkpoint"

    def save_state(self, path: Path) -> None:
        """One NumPy .npz file: every variable of the model (trainable or not), every variable of
        the optimizer (slots such as momentum, its iteration count) and TensorFlow's global
        generator state, as arrays in a fixed order."""
        model = self.model  # pending parameters written first
        arrays: dict[str, Any] = {}
        for i, v in enumerate(model.variables):
            arrays[f"model_{i}"] = np.asarray(v.numpy())
        for i, v in enumerate(self.optimizer.variables):
            arrays[f"optimizer_{i}"] = np.asarray(v.numpy())
        arrays["rng"] = np.asarray(self._tf.random.get_global_generator().state.numpy())
        with open(path, "wb") as fh:  # a file object: np.savez adds no suffix
            np.savez(fh, **arrays)

    def load_state(self, path: Path) -> None:
        with np.load(path) as data:
            arrays = {key: data[key] for key in data.files}
        model_vars, optimizer_vars = list(self._model.variables), list(self.optimizer.variables)
        saved_model = sum(k.startswith("model_") for k in arrays)
        saved_optimizer = sum(k.startswith("optimizer_") for k in arrays)
        if (saved_model, saved_optimizer) != (len(model_vars), len(optimizer_vars)):
            raise ValueError(f"{path}: {saved_model} model and {saved_optimizer} optimizer variables saved, this task "
                             f"has {len(model_vars)} and {len(optimizer_vars)}")
        self._pending = None
        with self._tf.device(self.device):
            for i, v in enumerate(model_vars):
                v.assign(arrays[f"model_{i}"])
            for i, v in enumerate(optimizer_vars):
                v.assign(arrays[f"optimizer_{i}"])
            if "rng" in arrays:
                self._tf.random.get_global_generator().reset(arrays["rng"])
        self._params = None

    def zeros(self) -> Any:
        with self._tf.device(self.device):
            return self._tf.zeros([self.num_params], self.dtype)

    def stack(self, vectors: list[Any]) -> Any:
        with self._tf.device(self.device):
            return self._tf.stack([self._vector(v) for v in vectors])

    def aggregate(self, rule: str, stacked: Any, f: int, pre: Sequence[Stage] = (), **params: Any) -> Any:
        from garfield.aggregators import aggregate

        with self._tf.device(self.device):
            return aggregate(rule, stacked, f, pre=pre, **params)

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
