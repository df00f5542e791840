"""Waiting for the first q valid replies of n, asynchronously.

One task per peer runs the call (deadline on every attempt, short backoff between attempts while
the peer is unreachable, e.g. still starting); the gatherer wakes on each completion
(``asyncio.wait(FIRST_COMPLETED)``, no polling), keeps valid replies, and once q are in cancels
every outstanding call: slow, crashed or silent peers never hold a step back while at most n - q
are missing. A reply that fails validation is counted and that peer is not asked again this round.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from garfield.transport.client import Peer, Unreachable
from garfield.wire.codec import Expect, Received, Rejected

log = logging.getLogger("garfield.quorum")

BACKOFF_START = 0.05
BACKOFF_MAX = 2.0


class QuorumError(RuntimeError):
    """Fewer than q valid replies can be had (too many peers rejected, or none answered in time)."""


@dataclass(frozen=True)
class CallPolicy:
    rpc_seconds: float  # deadline of one call
    give_up_seconds: float  # no quorum after this long: the node fails (more than f peers are gone)


async def _ask(peer: Peer, request: bytes, expect: Expect, policy: CallPolicy,
               on_reject: Callable[[Peer, Rejected], None]) -> Received | None:
    delay = BACKOFF_START
    while True:
        try:
            return await peer.fetch(request, expect, policy.rpc_seconds)
        except Rejected as exc:
            on_reject(peer, exc)
            return None
        except Unreachable as exc:
            log.debug("peer unreachable, retrying", extra={"fields": {"peer": peer.name, "error": str(exc)}})
            await asyncio.sleep(delay)  # retry backoff, not synchronisation
            delay = min(delay * 2, BACKOFF_MAX)


class PeerOrder:
    """Whom to ask first: the peers that formed the last quorum, in the order they answered.

    Asking only q peers at first (and the others once a hedge delay passes without a quorum, or
    at once for each rejected answer) saves the calls and transfers whose answers would be
    thrown away, which on a loaded machine is most of the cost of a step. Liveness is unchanged:
    a silent or crashed peer costs one hedge delay and then drops to the back of the order.
    """

    HEDGE_FACTOR = 4.0
    HEDGE_FLOOR = 0.05  # seconds

    def __init__(self) -> None:
        self._rank: dict[str, int] = {}
        self._latency: float | None = None

    def order(self, peers: Sequence[Peer]) -> list[Peer]:
        return sorted(peers, key=lambda p: self._rank.get(p.name, len(self._rank)))

    def hedge_delay(self) -> float | None:
        """Seconds to wait before asking the remaining peers; None (ask everyone) until a quorum was seen."""
        if self._latency is None:
            return None
        return max(self.HEDGE_FLOOR, self.HEDGE_FACTOR * self._latency)

    def update(self, answered: Sequence[str], peers: Sequence[Peer], seconds: float) -> None:
        previous = [p.name for p in self.order(peers) if p.name not in answered]
        self._rank = {name: i for i, name in enumerate(list(answered) + previous)}
        self._latency = seconds if self._latency is None else 0.8 * self._latency + 0.2 * seconds


async def gather(peers: Sequence[Peer], q: int, request: bytes, expect: Callable[[Peer], Expect], policy: CallPolicy,
                 on_reject: Callable[[Peer, Rejected], None], order: PeerOrder | None = None) -> list[Received]:
    """The first `q` valid replies among `peers` (in arrival order); the rest are cancelled.

    With an `order`, the q preferred peers are asked first and the others after its hedge delay
    (or one by one, as answers are rejected)."""
    if q <= 0:
        return []
    if q > len(peers):
        raise QuorumError(f"a quorum of {q} among {len(peers)} peers is impossible")
    start = time.monotonic()
    ordered = order.order(peers) if order is not None else list(peers)
    delay = order.hedge_delay() if order is not None else None
    waiting = ordered[q:] if delay is not None else []
    hedge_at = start + (delay or 0.0)
    pending: set[asyncio.Task] = set()

    def launch(peer: Peer) -> None:
        pending.add(asyncio.create_task(_ask(peer, request, expect(peer), policy, on_reject), name=f"ask-{peer.name}"))

    for peer in ordered[:len(ordered) - len(waiting)]:
        launch(peer)
    replies: list[Received] = []
    deadline = start + policy.give_up_seconds
    try:
        while len(replies) < q:
            if len(replies) + len(pending) + len(waiting) < q:
                raise QuorumError(f"only {len(replies) + len(pending) + len(waiting)} of {len(peers)} peers can still "
                                  f"give a valid reply; {q} are needed")
            now = time.monotonic()
            if now >= deadline:
                raise QuorumError(f"{len(replies)} of the {q} replies needed after {policy.give_up_seconds:.0f} s")
            if waiting and (now >= hedge_at or not pending):  # the preferred peers are slow: ask everyone left
                for peer in waiting:
                    launch(peer)
                waiting = []
            wake = min(deadline, hedge_at) if waiting else deadline
            done, still = await asyncio.wait(pending, timeout=max(0.0, wake - now), return_when=asyncio.FIRST_COMPLETED)
            pending.difference_update(done)
            for task in done:
                reply = task.result()
                if reply is not None and len(replies) < q:
                    replies.append(reply)
                elif reply is None and waiting:  # a rejected answer: ask the next peer right away
                    launch(waiting.pop(0))
    finally:
        for task in pending:
            task.cancel()
    if order is not None:
        order.update([r.sender for r in replies], peers, time.monotonic() - start)
    return replies


def adopted_step(steps: Sequence[int], f: int) -> int:
    """The step a node may move to after hearing `steps`: the (f+1)-th largest, which at least
    one correct node has reached when at most f of the replies are Byzantine. A lagging node
    catches up this way; a Byzantine node announcing a huge step moves no one."""
    ordered = sorted(steps, reverse=True)
    return ordered[min(f, len(ordered) - 1)]
