"""A de-duplicating work queue with delayed requeue and per-key backoff (client-go's, in asyncio).

Sixty-five pod events for one job must cost a handful of reconciles, not sixty-five: a key waits in
the queue at most once, a key being processed when it is added again is re-queued once afterwards,
and never two workers reconcile the same job at the same time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)


class WorkQueue(Generic[Key]):
    def __init__(self, *, base_backoff: float = 0.2, max_backoff: float = 60.0) -> None:
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._queued: set[Key] = set()
        self._processing: set[Key] = set()
        self._dirty: set[Key] = set()
        self._timers: dict[Key, asyncio.TimerHandle] = {}
        self._failures: dict[Key, int] = {}
        self.base_backoff = base_backoff
        self.max_backoff = max_backoff

    def __len__(self) -> int:
        return len(self._queued)

    def add(self, key: Key) -> None:
        if key in self._processing:
            self._dirty.add(key)
            return
        if key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: Key, seconds: float) -> None:
        """Add `key` in `seconds`; an earlier pending timer for the same key wins."""
        loop = asyncio.get_running_loop()
        when = loop.time() + seconds
        timer = self._timers.get(key)
        if timer is not None and not timer.cancelled() and timer.when() <= when:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def add_rate_limited(self, key: Key) -> float:
        """Retry after a failure: 0.2 s, 0.4 s, ... up to max_backoff."""
        n = self._failures.get(key, 0)
        self._failures[key] = n + 1
        delay = min(self.base_backoff * 2.0 ** min(n, 64), self.max_backoff)  # capped: 2.0 ** 1024 overflows
        self.add_after(key, delay)
        return delay

    def forget(self, key: Key) -> None:
        self._failures.pop(key, None)

    def discard(self, key: Key) -> None:
        """The object is gone: drop its timers and backoff."""
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._failures.pop(key, None)

    async def get(self) -> Key:
        key = await self._queue.get()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: Key) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    async def run_workers(self, count: int, handle: Callable[[Key], Awaitable[None]]) -> None:
        """Run `count` workers forever; `handle` does its own error handling and requeueing."""

        async def worker() -> None:
            while True:
                key = await self.get()
                try:
                    await handle(key)
                finally:
                    self.done(key)

        await asyncio.gather(*(worker() for _ in range(count)))

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
