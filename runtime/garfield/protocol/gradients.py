"""What a worker (or peer) sends for a step: its momentum (or gradient), honest or attacked.

Worker momentum (``m = beta * m + g``, sent instead of g) is on by default: robust rules then see
low-variance vectors and subtle attacks such as A Little Is Enough lose most of their effect (El
Mhamdi et al. 2021; Karimireddy et al. 2021). A Byzantine worker runs the same computation and
hands the result to its attack; an omniscient attack (one that needs the round's honest vectors)
gets k = n - f honest vectors, each with its own momentum, computed on the worker's own data.
"""

from __future__ import annotations

from typing import Any

from garfield.adapters.base import FrameworkAdapter, Tensor


class GradientSource:
    def __init__(self, adapter: FrameworkAdapter, beta: float, attack: Any | None = None, n: int = 1,
                 f: int = 0) -> None:
        self.adapter = adapter
        self.beta = beta
        self.attack = attack
        self.n, self.f = n, f
        self.omniscient = bool(attack is not None and getattr(attack, "omniscient", False))
        self._buffers: list[Tensor | None] = [None] * (max(1, n - f) if self.omniscient else 1)
        if attack is not None and getattr(attack, "label_transform", None) is not None:
            adapter.label_transform = attack.label_transform

    def _honest(self, slot: int) -> tuple[Tensor, float]:
        gradient, loss = self.adapter.compute_gradient()
        buffer = self.adapter.momentum(self._buffers[slot], gradient, self.beta)
        self._buffers[slot] = buffer
        return buffer, loss

    def compute(self, step: int) -> tuple[Tensor | None, float]:
        """The vector to offer for `step` (None: offer nothing) and the training loss. An attack
        may return None (a silent or crashed worker): the node then answers nothing for the step."""
        if self.attack is None:
            return self._honest(0)
        if self.omniscient:
            honest = [self._honest(i) for i in range(len(self._buffers))]
            vectors = [v for v, _ in honest]
            loss = honest[0][1]
        else:
            vector, loss = self._honest(0)
            vectors = [vector]
        return self.attack.corrupt(vectors[0], vectors, self.n, self.f, step), loss
