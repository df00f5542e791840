"""What a node offers its peers: the latest encoded tensor of one kind, and waiting for a step.

A request for step s is answered as soon as the node has published a tensor of step >= s: a
caller that is behind gets the newest tensor at once (and catches up), a caller that is ahead
waits on a condition (its own call deadline bounds the wait), never on a sleep.
"""

from __future__ import annotations

import asyncio


class Board:
    def __init__(self) -> None:
        self.step = -1
        self.messages: list[bytes] | None = None
        self._cond = asyncio.Condition()

    async def publish(self, step: int, messages: list[bytes] | None) -> None:
        """Offer `messages` (serialized chunks) as this node's tensor of `step`; None: answer nothing."""
        async with self._cond:
            self.step = step
            self.messages = messages
            self._cond.notify_all()

    async def wait(self, step: int) -> tuple[int, list[bytes] | None]:
        async with self._cond:
            await self._cond.wait_for(lambda: self.step >= step)
            return self.step, self.messages
