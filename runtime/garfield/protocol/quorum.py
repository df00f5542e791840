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

from garfield.transport.client import PeerLike, Unreachable
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


async def _ask(peer: PeerLike, request: bytes, expect: Expect, policy: CallPolicy,
               on_reject: Callable[[PeerLike, Rejected], None]) -> Received | None:
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

    `first` names the simulated attackers of an evaluation run. The asynchronous adversary may
    schedule messages as it likes, so the worst case it can arrange is that its replies arrive
    first: they are asked first and always, and honest replies are held until every attacker
    answered (or a patience of one call deadline passed once a quorum was possible). An attacker
    that exhausts that patience is `lost` (crashed, or its attack went quiet) and not waited for
    again, so a silent attacker costs one deadline, not one per step.
    """

    HEDGE_FACTOR = 4.0
    HEDGE_FLOOR = 0.05  # seconds

    def __init__(self, first: Sequence[str] = ()) -> None:
        self._rank: dict[str, int] = {}
        self._latency: float | None = None
        self.first: frozenset[str] = frozenset(first)

    def order(self, peers: Sequence[PeerLike]) -> list[PeerLike]:
        return sorted(peers, key=lambda p: (p.name not in self.first, self._rank.get(p.name, len(self._rank))))

    def hedge_delay(self) -> float | None:
        """Seconds to wait before asking the remaining peers; None (ask everyone) until a quorum was seen."""
        if self._latency is None:
            return None
        return max(self.HEDGE_FLOOR, self.HEDGE_FACTOR * self._latency)

    def lost(self, name: str) -> None:
        """Stop waiting for attacker `name` (it did not answer within the patience)."""
        self.first = self.first - {name}

    def update(self, answered: Sequence[str], peers: Sequence[PeerLike], seconds: float) -> None:
        previous = [p.name for p in self.order(peers) if p.name not in answered]
        self._rank = {name: i for i, name in enumerate(list(answered) + previous)}
        self._latency = seconds if self._latency is None else 0.8 * self._latency + 0.2 * seconds


async def gather(peers: Sequence[PeerLike], q: int, request: bytes, expect: Callable[[PeerLike], Expect], policy: CallPolicy,
                 on_reject: Callable[[PeerLike, Rejected], None], order: PeerOrder | None = None) -> list[Received]:
    """The first `q` valid replies among `peers` (in arrival order); the rest are cancelled.

    With an `order`, the q preferred peers are asked first and the others after its hedge delay
    (or one by one, as answers are rejected); its `first` peers (simulated attackers) are asked at
    once and their replies lead the quorum (see :class:`PeerOrder`)."""
    if q <= 0:
        return []
    if q > len(peers):
        raise QuorumError(f"a quorum of {q} among {len(peers)} peers is impossible")
    start = time.monotonic()
    ordered = order.order(peers) if order is not None else list(peers)
    first = {p.name for p in peers} & (order.first if order is not None else frozenset())
    delay = order.hedge_delay() if order is not None else None
    # Attackers sort first, so they are always among the peers asked at once.
    waiting = ordered[max(q, len(first)):] if delay is not None else []
    hedge_at = start + (delay or 0.0)
    pending: dict[asyncio.Task[Received | None], PeerLike] = {}

    def launch(peer: PeerLike) -> None:
        task = asyncio.create_task(_ask(peer, request, expect(peer), policy, on_reject), name=f"ask-{peer.name}")
        pending[task] = peer

    for peer in ordered[:len(ordered) - len(waiting)]:
        launch(peer)
    leading: list[Received] = []  # the attackers' replies: they lead the quorum
    honest: list[Received] = []
    unheard = set(first)  # attackers that neither answered nor were rejected yet
    patience_ends: float | None = None  # set once a quorum is possible: how long attackers are awaited
    deadline = start + policy.give_up_seconds
    try:
        while True:
            have = len(leading) + len(honest)
            if have >= q:
                if not unheard:
                    break
                now = time.monotonic()
                if patience_ends is None:
                    patience_ends = now + policy.rpc_seconds
                if now >= patience_ends:
                    for name in sorted(unheard):
                        log.info("attacker not heard within the patience; not waited for again",
                                 extra={"fields": {"peer": name}})
                        if order is not None:
                            order.lost(name)
                    break
            elif have + len(pending) + len(waiting) < q:
                raise QuorumError(f"only {have + len(pending) + len(waiting)} of {len(peers)} peers can still "
                                  f"give a valid reply; {q} are needed")
            now = time.monotonic()
            if now >= deadline:
                raise QuorumError(f"{have} of the {q} replies needed after {policy.give_up_seconds:.0f} s")
            if waiting and have < q and (now >= hedge_at or not pending):  # preferred peers slow: ask the rest
                for peer in waiting:
                    launch(peer)
                waiting = []
            wake = deadline
            if waiting:
                wake = min(wake, hedge_at)
            if patience_ends is not None:
                wake = min(wake, patience_ends)
            done, _ = await asyncio.wait(pending, timeout=max(0.0, wake - now), return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                peer = pending.pop(task)
                reply = task.result()
                unheard.discard(peer.name)
                if reply is None:  # a rejected answer: ask the next peer right away
                    if waiting and len(leading) + len(honest) < q:
                        launch(waiting.pop(0))
                elif peer.name in first:
                    leading.append(reply)
                else:
                    honest.append(reply)
    finally:
        for task in pending:
            task.cancel()
    replies = (leading + honest)[:q]
    if order is not None:
        order.update([r.sender for r in replies], peers, time.monotonic() - start)
    return replies


def adopted_step(steps: Sequence[int], f: int) -> int:
    """The step a node may move to after hearing `steps`: the (f+1)-th largest, which at least
    one correct node has reached when at most f of the replies are Byzantine. A lagging node
    catches up this way; a Byzantine node announcing a huge step moves no one."""
    ordered = sorted(steps, reverse=True)
    return ordered[min(f, len(ordered) - 1)]
