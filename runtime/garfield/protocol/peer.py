"""A peer of a decentralized job (LEARN): worker and server in one node, no trusted party.

Per step t: compute its own vector at its model and offer it; pull step-t vectors from the other
peers (first n - f, itself included), aggregate with ``spec.workers.gar``, take the optimizer
step; offer the updated model as a PROPOSAL, pull step-(t+1) proposals from the other peers
(first n - f, itself included), aggregate with ``spec.workers.gar``, adopt the result and offer
it as its MODEL of step t+1 (what an observer fetches). Byzantine peers attack through the
vectors they offer.
"""

from __future__ import annotations

import logging

from garfield.adapters.base import FrameworkAdapter
from garfield.attacks.types import WorkerAttack
from garfield.observability.state import NodeState
from garfield.plan.replicas import NodeConfig
from garfield.proto import GRADIENT, MODEL, PROPOSAL
from garfield.protocol.base import Contribution, ProtocolNode
from garfield.protocol.gradients import GradientSource

log = logging.getLogger("garfield.peer")


class PeerNode(ProtocolNode):
    offers = (GRADIENT, MODEL, PROPOSAL)
    final_kinds = (PROPOSAL,)

    def __init__(self, config: NodeConfig, adapter: FrameworkAdapter, state: NodeState,
                 attack: WorkerAttack | None = None) -> None:
        super().__init__(config, adapter, state)
        peers = config.spec.workers
        self.source = GradientSource(adapter, config.spec.training.worker_momentum, attack, peers.replicas, peers.byzantine)

    def expected_final_requesters(self) -> set[str]:
        return {p.name for p in self.worker_peers}

    async def train(self) -> None:
        peers = self.spec.workers
        gar, f, q = peers.gar, peers.byzantine, peers.quorum
        step = 0
        self.state.set_step(0)
        await self.publish(MODEL, 0, self.adapter.get_params())
        await self.publish(PROPOSAL, 0, self.adapter.get_params())
        while step < self.total_steps:
            timer = self.Timer()
            vector, loss = self.source.compute(step)
            self.state.set_loss(loss)
            timer.lap("computation")
            await self.publish(GRADIENT, step, vector, loss)
            self.source.prepare_next()
            # A Byzantine peer's own vector is what it offers; it does not fool itself.
            own_vector = vector if vector is not None and self.source.attack is None else None
            local = [Contribution(own_vector, step, loss, self.name)] if own_vector is not None else []
            timer.lap("communication")
            grads = await self.collect(self.worker_peers, q, GRADIENT, step, local=local)
            timer.lap("communication")
            await self.source.settle()  # the attacker's preparation read the parameters about to change
            update = self.aggregate(gar, f, grads)
            timer.lap("aggregation")
            self.adapter.apply_gradient(update)
            step += 1
            await self.publish(PROPOSAL, step, self.adapter.get_params())
            own = Contribution(self.adapter.get_params(), step, loss, self.name)
            timer.lap("computation")
            models = await self.collect(self.worker_peers, q, PROPOSAL, step, local=[own])
            timer.lap("communication")
            self.adapter.set_params(self.aggregate(gar, f, models))
            timer.lap("aggregation")
            caught_up = self.next_step(models, f)
            if caught_up > step:
                log.info("catching up", extra={"fields": {"from": step, "to": caught_up}})
                step = caught_up
            await self.publish(MODEL, step, self.adapter.get_params())
            timer.lap("communication")
            self.state.add_timing(**timer.split)
            self.state.set_step(step)
            self.maybe_evaluate(step)
        await self.source.settle()
