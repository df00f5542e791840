"""What a worker (or peer) sends for a step: its momentum (or gradient), honest or attacked.

Worker momentum (``m = beta * m + g``, sent instead of g) is on by default: robust rules then see
low-variance vectors and subtle attacks such as A Little Is Enough lose most of their effect (El
Mhamdi et al. 2021; Karimireddy et al. 2021). A Byzantine worker runs the same computation and
hands the result to its attack; an omniscient attack (one that needs the round's honest vectors)
gets k = n - f honest vectors, each with its own momentum, computed on the worker's own data.

Simulated Byzantine workers answer first. A node waits for the first q = n - f replies, so an
attacker that answered after the honest workers would never be aggregated, and an evaluation run
would measure nothing. The gatherer guarantees the worst-case schedule (protocol.quorum.PeerOrder:
attackers asked first, their replies lead the quorum). So that honest nodes rarely have to wait
for it, the simulated attacker also prepares its next reply from the honest vector(s) at its
current model *after* answering (in a thread, while its gRPC service keeps serving) and answers
the next request at once. Its vectors are thus one step stale.
"""

from __future__ import annotations

import asyncio

from garfield.adapters.base import FrameworkAdapter, Tensor
from garfield.attacks.types import WorkerAttack


class GradientSource:
    """A worker's (or peer's) vectors: honest momentum, or what its `attack` makes of it. A label
    transform of the attack is not this class's business: the node gives it to the adapter."""

    def __init__(self, adapter: FrameworkAdapter, beta: float, attack: WorkerAttack | None = None, n: int = 1,
                 f: int = 0) -> None:
        self.adapter = adapter
        self.beta = beta
        self.attack = attack
        self.n, self.f = n, f
        self.omniscient = attack is not None and attack.omniscient
        self._buffers: list[Tensor | None] = [None] * (max(1, n - f) if self.omniscient else 1)
        self._prepared: tuple[list[Tensor], float] | None = None
        self._preparing: asyncio.Task[tuple[list[Tensor], float]] | None = None

    def _honest(self, slot: int) -> tuple[Tensor, float]:
        gradient, loss = self.adapter.compute_gradient()
        buffer = self.adapter.momentum(self._buffers[slot], gradient, self.beta)
        self._buffers[slot] = buffer
        return buffer, loss

    def _honest_vectors(self) -> tuple[list[Tensor], float]:
        honest = [self._honest(i) for i in range(len(self._buffers))]
        return [v for v, _ in honest], honest[0][1]

    def compute(self, step: int) -> tuple[Tensor | None, float]:
        """The vector to offer for `step` (None: offer nothing) and the training loss. An attack
        may return None (a silent or crashed worker): the node then answers nothing for the step.
        An attacker uses the vectors it prepared after its previous answer (see the module doc)."""
        if self.attack is None:
            return self._honest(0)
        prepared, self._prepared = self._prepared, None
        vectors, loss = prepared if prepared is not None else self._honest_vectors()
        return self.attack.corrupt(vectors[0], vectors, self.n, self.f, step), loss

    def prepare_next(self) -> None:
        """After answering: an attacker starts computing its next reply off the critical path."""
        if self.attack is None or self._preparing is not None:
            return
        self._preparing = asyncio.get_running_loop().create_task(asyncio.to_thread(self._honest_vectors))

    async def settle(self) -> None:
        """Wait for the preparation to finish before the model changes under it."""
        if self._preparing is not None:
            task, self._preparing = self._preparing, None
            self._prepared = await task
