"""The framework interface the protocol drives: flat 1-D tensors in, flat 1-D tensors out.

Servers, workers and peers only ever see one flat vector of parameters and one flat vector of
gradient (or worker momentum) per step. Each framework adapter (PyTorch, TensorFlow) turns the
user's own model, loss, optimizer and data into that, keeping tensors on their device (a GPU when
there is one) so aggregation runs there too. Bytes appear only at the wire boundary.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:  # annotations only: the plugin registry imports this module, and must stay free of NumPy
    import numpy as np

from garfield.aggregators.preaggregation import Stage
from garfield.attacks.types import LabelTransform

Tensor = Any  # torch.Tensor or tf.Tensor, 1-D, on `device`


class FrameworkAdapter(ABC):
    """One node's view of the user's task. Built by :func:`garfield.adapters.create`."""

    framework: str  # "pytorch" | "tensorflow"
    device: str  # e.g. "cpu", "cuda:0", "/GPU:0"
    num_params: int
    # Label flipping (a Byzantine worker's data poisoning): maps a batch's targets to the targets
    # actually trained on. None: the task's own targets. Given by set_label_transform only.
    label_transform: LabelTransform | None = None

    def set_label_transform(self, transform: LabelTransform | None) -> None:
        """Train on `transform(targets)` from now on (None: on the task's own targets). The node
        calls it once, before training, with its worker attack's transform: an explicit input of
        the adapter, so no other layer (the protocol) has to reach in and set the attribute."""
        self.label_transform = transform

    # -- parameters ---------------------------------------------------------------------------
    @abstractmethod
    def get_params(self) -> Tensor:
        """The model's parameters as one flat vector on the device (a copy the caller may keep)."""

    @abstractmethod
    def set_params(self, flat: Tensor) -> None:
        """Overwrite the model's parameters from one flat vector, in place."""

    # -- training -----------------------------------------------------------------------------
    @abstractmethod
    def compute_gradient(self) -> tuple[Tensor, float]:
        """Gradient of the loss on this node's next training batch at the current parameters,
        flat, and the batch loss."""

    @abstractmethod
    def apply_gradient(self, flat: Tensor) -> None:
        """One step of the user's optimizer with `flat` as the gradient."""

    @abstractmethod
    def evaluate(self, max_batches: int | None = None) -> dict[str, float]:
        """{"accuracy": 0..1, "loss": float} on the test data (empty dict when there is none)."""

    # -- tensors ------------------------------------------------------------------------------
    @abstractmethod
    def export(self, folder: Path) -> tuple[str, str]:
        """Write the model, with its current parameters, into `folder` in the framework's own
        format, atomically (a temporary name, then a rename). Returns (file name, format)."""

    def save_state(self, path: Path) -> None:
        """Write everything a server needs to resume into the one file `path`, in the framework's
        own format: the model (parameters and buffers), the optimizer's state (its momentum, step
        counters) and the RNG state. The checkpoint store (garfield.observability.checkpoints)
        picks the name, makes the write atomic and checks it; this only writes."""
        raise NotImplementedError(f"the {self.framework} adapter cannot write checkpoints")

    def load_state(self, path: Path) -> None:
        """Restore what :meth:`save_state` wrote (the model's parameters in place)."""
        raise NotImplementedError(f"the {self.framework} adapter cannot read checkpoints")

    @abstractmethod
    def zeros(self) -> Tensor:
        """A zero vector the size of the model, on the device."""

    @abstractmethod
    def stack(self, vectors: list[Tensor]) -> Tensor:
        """(n, d) matrix of n flat vectors, on the device."""

    @abstractmethod
    def aggregate(self, rule: str, stacked: Tensor, f: int, pre: Sequence[Stage] = (), **params: Any) -> Tensor:
        """Apply aggregation rule `rule` (after the pre-aggregation stages `pre`) to the rows of
        `stacked`, on the device."""

    def momentum(self, buffer: Tensor | None, gradient: Tensor, beta: float) -> Tensor:
        """Worker momentum ``beta * buffer + gradient`` as a tensor the caller owns (a copy of
        `gradient` when `buffer` is None). `gradient` may be the adapter's reused gradient
        buffer, so the result must not alias it. Adapters override this to update in place."""
        if buffer is None:
            return gradient * 1.0
        return buffer * beta + gradient

    @abstractmethod
    def to_numpy(self, flat: Tensor) -> np.ndarray:
        """Host copy for the wire (the only place a GPU tensor leaves the device)."""

    @abstractmethod
    def from_numpy(self, array: np.ndarray) -> Tensor:
        """Device tensor from a received host array."""
