"""The TensorFlow adapter's traced step functions: each a ``tf.function`` with a fixed signature.

Every per-step computation is one ``tf.function`` traced once with a fixed input signature (no
retracing, no per-step Python beyond the call). The gradient function concatenates the
per-variable gradients *inside* the graph, so the flat vector is produced by the same kernel that
would have copied them anyway; setting parameters and applying a flat gradient split it back inside
the graph as well. The only copies are the unavoidable concat / split: TF variables are separate
buffers and cannot alias one flat vector. The data modes (:mod:`garfield.adapters.tensorflow_data`)
trace their own batch functions from :meth:`Steps.loss_and_grad` and :meth:`Steps.assign`.
"""

from __future__ import annotations

from typing import Any, Callable


class Traced:
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


def traced(tf: Any, *signature: Any) -> Callable[[Callable[..., Any]], Traced]:
    """Decorator: `fn` as a :class:`Traced` ``tf.function`` taking tensors of `signature`."""
    return lambda fn: Traced(tf.function(fn, input_signature=list(signature)))


class Steps:
    """The step functions every data mode shares, over the model's trainable variables `vars_`.

    `call(x, training)` runs the model; `loss_fn(y_true, y_pred)` is the user's loss, returning
    per-example values; `regularisation()` the model's extra loss terms (Keras ``model.losses``).
    The functions read these when they are traced (at their first call), as the adapter's own
    methods did."""

    def __init__(self, tf: Any, vars_: list[Any], shapes: list[tuple[int, ...]], sizes: list[int], dtype: Any,
                 call: Callable[[Any, bool], Any], loss_fn: Callable[[Any, Any], Any],
                 regularisation: Callable[[], list[Any]], optimizer: Any) -> None:
        self._tf = tf
        self._vars, self._shapes, self._sizes, self._dtype = vars_, shapes, sizes, dtype
        self._call, self._loss_fn, self._regularisation, self._optimizer = call, loss_fn, regularisation, optimizer
        self.flat_spec = tf.TensorSpec([int(sum(sizes))], dtype)
        flat_spec = self.flat_spec

        self.get = traced(tf)(lambda: self.flatten(vars_))
        self.set = traced(tf, flat_spec)(self.assign)

        @traced(tf, flat_spec)
        def apply(flat: Any) -> None:
            optimizer.apply_gradients(zip(self.split(flat), vars_, strict=True))

        @traced(tf, flat_spec, flat_spec)
        def set_and_apply(params: Any, flat: Any) -> None:
            self.assign(params)
            optimizer.apply_gradients(zip(self.split(flat), vars_, strict=True))

        self.apply, self.set_and_apply = apply, set_and_apply

        @tf.function(reduce_retracing=True)  # type: ignore[untyped-decorator]  # TensorFlow has no type information
        def eval_batch(x: Any, y: Any) -> tuple[Any, Any]:
            out = call(x, False)
            loss = tf.reduce_mean(loss_fn(y, out))
            return tf.cast(loss, tf.float64) * tf.cast(tf.shape(out)[0], tf.float64), correct(tf, out, y)

        self.eval_batch = eval_batch

    def flatten(self, tensors: list[Any]) -> Any:
        tf = self._tf
        return tf.concat([tf.reshape(tf.cast(t, self._dtype), [-1]) for t in tensors], axis=0)

    def split(self, flat: Any) -> list[Any]:
        tf = self._tf
        parts = tf.split(flat, self._sizes)
        return [tf.cast(tf.reshape(p, s), v.dtype) for p, s, v in zip(parts, self._shapes, self._vars, strict=True)]

    def assign(self, flat: Any) -> None:
        for v, p in zip(self._vars, self.split(flat), strict=True):
            v.assign(p)

    def loss_and_grad(self, x: Any, y: Any) -> tuple[Any, Any]:
        """(flat gradient, mean loss) on the batch (x, y), regularisation terms included."""
        tf, vars_ = self._tf, self._vars
        with tf.GradientTape() as tape:
            out = self._call(x, True)
            loss = tf.reduce_mean(self._loss_fn(y, out))  # loss functions return per-example values
            extra = self._regularisation()
            if extra:
                loss = loss + tf.add_n(extra)
        grads = tape.gradient(loss, vars_)
        grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g) for g, v in zip(grads, vars_, strict=True)]
        return self.flatten(grads), loss

    def gradient_of(self, x_spec: Any, y_spec: Any) -> Traced:
        """`loss_and_grad` traced for batches of `x_spec`, `y_spec` (the eager path: any batch source)."""
        return traced(self._tf, x_spec, y_spec)(self.loss_and_grad)


def correct(tf: Any, out: Any, y: Any) -> Any:
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
