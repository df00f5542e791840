"""A parameter server (SSMW: the only one; MSMW: one of n_s replicas, f_s of which may be Byzantine).

Per step t: pull step-t vectors from the workers and keep the first q_w = n_w - f_w valid ones;
aggregate them with ``spec.workers.gar``; one step of the user's optimizer. With replicas, then
offer the updated model as a PROPOSAL, pull step-(t+1) proposals from the other servers (first
q_s - 1, plus its own: q_s = n_s - f_s), aggregate them with ``spec.servers.gar`` and adopt the
result (ByzSGD's contraction step, which keeps correct servers' models close without
consensus). Finally offer the MODEL of step t+1 to the workers.
"""

from __future__ import annotations

import logging

from garfield.adapters.base import FrameworkAdapter
from garfield.attacks.types import ServerAttack
from garfield.observability.state import NodeState
from garfield.plan.replicas import NodeConfig
from garfield.proto import GRADIENT, MODEL, PROPOSAL
from garfield.protocol.base import Contribution, ProtocolNode

log = logging.getLogger("garfield.server")


class ServerNode(ProtocolNode):
    offers = (MODEL, PROPOSAL)

    def __init__(self, config: NodeConfig, adapter: FrameworkAdapter, state: NodeState,
                 attack: ServerAttack | None = None) -> None:
        super().__init__(config, adapter, state)
        assert config.spec.servers is not None
        self.attack = attack  # a server attack: corrupts (or withholds) the models this server offers

    def expected_final_requesters(self) -> set[str]:
        return {p.name for p in self.server_peers + self.worker_peers}

    async def offer_model(self, step: int, kind: int = MODEL) -> None:
        model = self.adapter.get_params()
        if self.attack is not None:
            model = self.attack.corrupt(model, step)  # None: a silent server answers nothing
        await self.publish(kind, step, model, self.state.loss if self.state.loss is not None else float("nan"))

    async def train(self) -> None:
        spec = self.spec
        servers, workers = spec.servers, spec.workers
        assert servers is not None
        replicated = servers.replicas > 1
        step = 0
        await self.offer_model(step)
        self.state.set_step(0)
        while step < self.total_steps:
            timer = self.Timer()
            grads = await self.collect(self.worker_peers, workers.quorum, GRADIENT, step)
            timer.lap("communication")
            update = self.aggregate(workers.gar, workers.byzantine, grads)
            timer.lap("aggregation")
            self.adapter.apply_gradient(update)
            step += 1
            self.state.set_loss(self.median_loss(grads))
            timer.lap("computation")
            if replicated:
                await self.offer_model(step, PROPOSAL)
                own = Contribution(self.adapter.get_params(), step, self.state.loss or float("nan"), self.name)
                timer.lap("computation")
                models = await self.collect(self.server_peers, servers.quorum, PROPOSAL, step, local=[own])
                timer.lap("communication")
                self.adapter.set_params(self.aggregate(servers.gar, servers.byzantine, models))
                timer.lap("aggregation")
                caught_up = self.next_step(models, servers.byzantine)
                if caught_up > step:
                    log.info("catching up", extra={"fields": {"from": step, "to": caught_up}})
                    step = caught_up
            await self.offer_model(step)
            timer.lap("communication")
            self.state.add_timing(**timer.split)
            self.state.set_step(step)
            self.maybe_evaluate(step)
