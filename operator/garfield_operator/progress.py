"""Training progress from the correct servers' ``/status`` JSON (docs/design.md, Observability contract).

The operator reads the servers that do not simulate Byzantine behaviour and reports the reply with
the median step, so one lagging or lying server moves neither the step nor the accuracy shown by
``kubectl get btj``. Replies are untrusted input: anything non-numeric or non-finite is dropped.
The summary itself is ``garfield.observability.status``, shared with ``garfield run``'s bar.
Where replies come from is pluggable (:class:`StatusSource`): the default reads HTTP from the
pod's IP; tests serve a real ``/status`` from a loopback address they write as the pod's IP.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp

if TYPE_CHECKING:  # only a type: reconcile sits below this module
    from garfield_operator.reconcile import StatusTarget
from garfield_operator.status import summarize_progress


class StatusSource(Protocol):
    async def fetch(self, target: StatusTarget) -> dict[str, Any] | None: ...

    async def close(self) -> None: ...


class HttpStatusSource:
    """GET http://<pod IP>:<metrics port>/status, with a short deadline."""

    def __init__(self, *, port: int | None = None, timeout: float = 2.0) -> None:
        self.port = port  # overrides the pod's metrics port (tests, port-forwarded set-ups)
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def fetch(self, target: StatusTarget) -> dict[str, Any] | None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        url = f"http://{target.ip}:{self.port or target.port}/status"
        try:
            async with self._session.get(url) as resp:
                if resp.status != 200:
                    return None
                data = await resp.json(content_type=None)
                return data if isinstance(data, dict) else None
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            return None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def read(source: StatusSource, targets: list[StatusTarget], now: dt.datetime) -> dict[str, Any] | None:
    replies = await asyncio.gather(*(source.fetch(t) for t in targets))
    return summarize_progress([r for r in replies if r], now)
