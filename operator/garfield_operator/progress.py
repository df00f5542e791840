"""Training progress from the correct servers' ``/status`` JSON (docs/design.md, Observability contract).

The operator reads the servers that do not simulate Byzantine behaviour and reports the reply with
the median step, so one lagging or lying server moves neither the step nor the accuracy shown by
``kubectl get btj``. Replies are untrusted input: anything non-numeric or non-finite is dropped.
Where replies come from is pluggable (:class:`StatusSource`): the default reads HTTP from the
pod's IP; tests serve a real ``/status`` from a loopback address they write as the pod's IP.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp

if TYPE_CHECKING:  # reconcile imports summarize from here
    from garfield_operator.reconcile import StatusTarget
from garfield_operator.status import rfc3339


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


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def summarize(replies: list[dict[str, Any]], now: dt.datetime) -> dict[str, Any] | None:
    """The median-step reply as status.progress fields (None when no reply is usable)."""
    usable = [r for r in replies if _number(r.get("step")) is not None]
    if not usable:
        return None
    usable.sort(key=lambda r: r["step"])
    mid = usable[(len(usable) - 1) // 2]
    out: dict[str, Any] = {"step": int(mid["step"])}
    for src, dst in (("loss", "loss"), ("accuracy", "accuracy"), ("steps_per_second", "stepsPerSecond")):
        value = _number(mid.get(src))
        if value is not None:
            out[dst] = round(value, 6)
    rejected = mid.get("rejected")
    if isinstance(rejected, dict):
        out["rejectedMessages"] = int(sum(v for v in rejected.values() if _number(v) is not None and v >= 0))
    out["updateTime"] = rfc3339(now)
    return out


def same_progress(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    """Equal apart from updateTime (a status patch is only worth it when training moved)."""
    def strip(d: dict[str, Any] | None) -> dict[str, Any]:
        return {k: v for k, v in (d or {}).items() if k not in ("updateTime", "totalSteps")}

    return strip(a) == strip(b)


async def read(source: StatusSource, targets: list[StatusTarget], now: dt.datetime) -> dict[str, Any] | None:
    replies = await asyncio.gather(*(source.fetch(t) for t in targets))
    return summarize([r for r in replies if r], now)
