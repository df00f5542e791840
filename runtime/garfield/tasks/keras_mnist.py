"""The Keras twin of :mod:`garfield.tasks.mnist`, written exactly as a Keras user would write it.

An ordinary ``keras.Sequential`` MLP, the loss and optimizer one passes to ``model.compile``, and
the shipped MNIST split (:mod:`garfield.data.mnist`) as plain ``(x, y)`` arrays. Nothing here knows
about Garfield beyond returning a :class:`garfield.task.Task`. Manifests name it as
``garfield.tasks.keras_mnist:mlp`` with ``spec.framework: tensorflow``.
"""

from __future__ import annotations

import keras

from garfield.data import mnist
from garfield.task import Task


def mlp(hidden: int = 128, lr: float = 0.1, momentum: float = 0.0, seed: int = 1) -> Task:
    """784-`hidden`-10 perceptron with a ReLU: the same model size as the PyTorch example.

    `momentum` is *server-side* optimizer momentum (0 by default: Garfield's worker-side momentum,
    ``spec.training.workerMomentum``, is the robust choice). `seed` fixes the initial weights so
    every replica starts from the same model.
    """
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input(shape=(mnist.FEATURES,)),
        keras.layers.Dense(hidden, activation="relu"),
        keras.layers.Dense(mnist.CLASSES),
    ])
    x_train, y_train, x_test, y_test = mnist.load()
    return Task(
        model=model,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=keras.optimizers.SGD(learning_rate=lr, momentum=momentum),
        train=(x_train, y_train),
        test=(x_test, y_test),
    )
