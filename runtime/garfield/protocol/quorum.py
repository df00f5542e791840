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


async def gather(peers: Sequence[Peer], q: int, request: bytes, expect: Callable[[Peer], Expect], policy: CallPolicy,
                 on_reject: Callable[[Peer, Rejected], None]) -> list[Received]:
    """The first `q` valid replies among `peers` (in arrival order); the rest are cancelled."""
    if q <= 0:
        return []
    if q > len(peers):
        raise QuorumError(f"a quorum of {q} among {len(peers)} peers is impossible")
    pending = {asyncio.create_task(_ask(p, request, expect(p), policy, on_reject), name=f"ask-{p.name}") for p in peers}
    replies: list[Received] = []
    deadline = time.monotonic() + policy.give_up_seconds
    try:
        while len(replies) < q:
            if len(replies) + len(pending) < q:
                raise QuorumError(f"only {len(replies) + len(pending)} of {len(peers)} peers can still give a valid "
                                  f"reply; {q} are needed")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise QuorumError(f"{len(replies)} of the {q} replies needed after {policy.give_up_seconds:.0f} s")
            done, pending = await asyncio.wait(pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                reply = task.result()
                if reply is not None and len(replies) < q:
                    replies.append(reply)
    finally:
        for task in pending:
            task.cancel()
    return replies


def adopted_step(steps: Sequence[int], f: int) -> int:
    """The step a node may move to after hearing `steps`: the (f+1)-th largest, which at least
    one correct node has reached when at most f of the replies are Byzantine. A lagging node
    catches up this way; a Byzantine node announcing a huge step moves no one."""
    ordered = sorted(steps, reverse=True)
    return ordered[min(f, len(ordered) - 1)]
