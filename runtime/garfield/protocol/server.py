"""A parameter server (SSMW: the only one; MSMW: one of n_s replicas, f_s of which may be Byzantine).

Per step t: pull step-t vectors from the workers and keep the first q_w = n_w - f_w valid ones;
aggregate them with ``spec.workers.gar``; one step of the user's optimizer. With replicas, then
offer the updated model as a PROPOSAL, pull step-(t+1) proposals from the other servers (first
q_s - 1, plus its own: q_s = n_s - f_s), aggregate them with ``spec.servers.gar`` and adopt the
result (ByzSGD's contraction step, which keeps correct servers' models close without
consensus). Finally offer the MODEL of step t+1 to the workers.

Checkpoints (spec.checkpoint): every everySteps steps a correct server writes its state (model,
optimizer, RNG) with garfield.observability.checkpoints, and on start it resumes from its newest
valid one. A server that (re)starts behind the others joins them without holding anyone back:
its quorums are the first q replies, so nobody waits for it, and it learns the current step from
what it receives. Workers' vectors carry their step: it moves to the (f_w+1)-th largest among
its quorum (a step some correct worker reached), and its peers' proposals then pull its model to
theirs (the contraction step) and their step too.
"""

from __future__ import annotations

import logging
from pathlib import Path

from garfield.adapters.base import FrameworkAdapter
from garfield.attacks.types import ServerAttack
from garfield.observability.checkpoints import FOLDER, CheckpointStore
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
        self.checkpoints = checkpoint_store(config, byzantine=attack is not None)
        self._last_checkpoint = 0

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
        step = self.resume()
        await self.offer_model(step)
        self.state.set_step(step)
        while step < self.total_steps:
            timer = self.Timer()
            grads = await self.collect(self.worker_peers, workers.quorum, GRADIENT, step)
            timer.lap("communication")
            ahead = self.next_step(grads, workers.byzantine)
            if ahead > step:  # (re)started behind: the workers are further (see the module doc)
                log.info("catching up", extra={"fields": {"from": step, "to": ahead, "with": "workers"}})
                step = ahead
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
            self.maybe_checkpoint(step)

    def resume(self) -> int:
        """The step to start from: the newest valid checkpoint's (its state loaded), else 0."""
        if self.checkpoints is None:
            return 0
        checkpoint = self.checkpoints.restore(self.adapter.load_state)
        if checkpoint is None:
            return 0
        self._last_checkpoint = checkpoint.step
        self.resumed_from = checkpoint.step
        log.info("resumed from checkpoint", extra={"fields": {"step": checkpoint.step, "path": str(checkpoint.path)}})
        return checkpoint.step

    def maybe_checkpoint(self, step: int) -> None:
        """Write a checkpoint when everySteps steps passed since the last one (not at the end: the
        final model is exported then). A write that fails (disk full) is logged and training goes
        on: the server loses only the chance to resume from this step."""
        if self.checkpoints is None or step >= self.total_steps:
            return
        if step - self._last_checkpoint < self.spec.checkpoint.every_steps:
            return
        try:
            written = self.checkpoints.save(step, self.adapter.save_state, accuracy=self.state.accuracy)
        except OSError as exc:  # a safety net that failed: training goes on, the previous checkpoints stay
            log.error("cannot write a checkpoint", extra={"fields": {"step": step, "error": str(exc)}})
            self._last_checkpoint = step
            return
        self._last_checkpoint = step
        log.info("checkpoint written", extra={"fields": {"step": step, "path": str(written.path),
                                                         "sha256": written.manifest["sha256"]}})


def checkpoint_store(config: NodeConfig, byzantine: bool) -> CheckpointStore | None:
    """This server's checkpoint store: <output>/<role>-<index>/checkpoints, keeping spec.checkpoint.keep.
    None when checkpoints are off, when there is no output folder, and for a simulated Byzantine
    server (it never writes)."""
    spec = config.spec.checkpoint
    if not spec.enabled or byzantine or config.attack is not None:
        return None
    if config.output_dir is None:
        log.warning("spec.checkpoint is set but this replica has no output folder (spec.output.path); "
                    "no checkpoints are written")
        return None
    return CheckpointStore(Path(config.output_dir) / config.name / FOLDER, spec.keep, job=config.job,
                           replica=config.name, framework=config.spec.framework)
