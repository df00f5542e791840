"""A worker: pull models, aggregate them, compute one vector per step, serve it to every server.

Per step t: pull models of step >= t from the servers and keep the first q_s = n_s - f_s valid
ones; move to the (f_s+1)-th largest step among them (a worker that fell behind jumps to where
the correct servers are); aggregate the models with ``spec.servers.gar``; compute the gradient
on its own next batch, fold it into its momentum, and offer that vector for the step. Each server
asking for step t receives the same bytes: the worker computes once per step, whichever number
of servers ask.
"""

from __future__ import annotations

from garfield.adapters.base import FrameworkAdapter
from garfield.attacks.types import WorkerAttack
from garfield.observability.state import NodeState
from garfield.plan.replicas import NodeConfig
from garfield.proto import GRADIENT, MODEL
from garfield.protocol.base import ProtocolNode
from garfield.protocol.gradients import GradientSource


class WorkerNode(ProtocolNode):
    offers = (GRADIENT,)
    final_kinds = (GRADIENT,)

    def __init__(self, config: NodeConfig, adapter: FrameworkAdapter, state: NodeState,
                 attack: WorkerAttack | None = None) -> None:
        super().__init__(config, adapter, state)
        workers = config.spec.workers
        self.source = GradientSource(adapter, config.spec.training.worker_momentum, attack, workers.replicas,
                                     workers.byzantine)

    def expected_final_requesters(self) -> set[str]:
        return {p.name for p in self.server_peers}

    async def train(self) -> None:
        servers = self.spec.servers
        assert servers is not None
        step = 0
        while True:
            timer = self.Timer()
            models = await self.collect(self.server_peers, servers.quorum, MODEL, step)
            timer.lap("communication")
            step = max(step, self.next_step(models, servers.byzantine))
            await self.source.settle()
            if step >= self.total_steps:
                return
            self.adapter.set_params(self.aggregate(servers.gar, servers.byzantine, models))
            timer.lap("aggregation")
            vector, loss = self.source.compute(step)
            self.state.set_loss(loss)
            timer.lap("computation")
            await self.publish(GRADIENT, step, vector, loss)
            self.source.prepare_next()
            timer.lap("communication")
            self.state.add_timing(**timer.split)
            step += 1
            self.state.set_step(step)
