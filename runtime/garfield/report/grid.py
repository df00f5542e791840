"""The report's grids (full and tiny) and the job manifests its sections run.

Every job is a plain ByzantineTrainingJob manifest (a mapping), built here from a few knobs
(topology, replicas, f, rules, pre-aggregation, attack, momentum mode, model, steps, seed), so
the report runs exactly what a user's manifest would: `garfield simulate` for the accuracy grids,
`garfield run` for the timings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

# The attacks of section 1, by the label the report shows: (worker attack name, parameters).
ATTACKS: dict[str, tuple[str, dict[str, Any]] | None] = {
    "none": None,
    "sign flip": ("signflip", {"scale": 10.0}),
    "FoE eps=0.1": ("empire", {"epsilon": 0.1}),
    "FoE eps=10": ("empire", {"epsilon": 10.0}),
    "ALIE": ("little", {}),
    "label flip": ("labelflip", {}),
    "random": ("random", {}),
    "crash": ("crash", {}),
}

MOMENTUM = 0.9
MODES = ("worker", "server")


@dataclass(frozen=True)
class Grid:
    """How much the report runs. `full` is sized to finish in under 30 minutes on 2 cores."""

    name: str
    seeds: tuple[int, ...]
    workers: int  # section 1 and (a): SSMW with this many workers, f of them Byzantine
    f: int
    steps: int  # section 1
    eval_interval: int
    rules: tuple[str, ...]
    attacks: tuple[str, ...]
    a_steps: int  # finding (a): longer runs, evaluated often, for the steps to 90%
    a_eval_interval: int
    a_rules: tuple[str, ...]
    alie_rules: tuple[str, ...]
    pre_chains: tuple[tuple[str, ...], ...]
    c_steps: int  # finding (c), simulated
    real_steps: int  # finding (b) and (c), real runs
    models: tuple[str, ...]
    topologies: tuple[str, ...]
    scaling_workers: tuple[int, ...]
    scaling_f: tuple[int, ...]
    scaling_steps: int
    # The ALIE section's setting, the earlier measurement's (docs/attacks.md), where ALIE does harm: a fixed z,
    # f of alie_workers workers, alie_steps steps.
    alie_workers: int = 7
    alie_steps: int = 300
    alie_z: float = 1.0
    real_workers: int = 7  # finding (b) and (c): workers of the real runs, f_real of them tolerated
    real_f: int = 2
    jobs: int = 2  # simulations run at once, each in its own process

    def describe(self) -> str:
        return (f"grid `{self.name}`: seeds {list(self.seeds)}; accuracy grids on SSMW with {self.workers} workers, "
                f"f = {self.f}, "
                f"{self.steps} steps (finding (a): {self.a_steps} steps); real runs {self.real_steps} steps "
                f"(scaling {self.scaling_steps}); {self.jobs} simulations at a time")


FULL = Grid(
    name="full", seeds=(1, 2, 3), workers=9, f=2, steps=100, eval_interval=25,
    rules=("average", "median", "trimmed-mean", "krum", "mda"), attacks=tuple(ATTACKS),
    a_steps=200, a_eval_interval=10, a_rules=("median", "trimmed-mean", "krum", "mda"),
    alie_rules=("median", "trimmed-mean", "krum", "mda"),
    pre_chains=((), ("nnm",), ("arc",), ("nnm", "arc"), ("bucketing",)),
    c_steps=150, real_steps=100, models=("mlp", "convnet"), topologies=("ssmw", "msmw", "decentralized"),
    scaling_workers=(4, 7, 10, 13), scaling_f=(0, 1, 2), scaling_steps=80,
)

TINY = Grid(
    name="tiny", seeds=(1,), workers=5, f=1, steps=6, eval_interval=3,
    rules=("average", "median"), attacks=("none", "ALIE", "crash"),
    a_steps=6, a_eval_interval=3, a_rules=("median",), alie_rules=("median",), pre_chains=((), ("nnm",)),
    c_steps=6, real_steps=6, models=("mlp",), topologies=("ssmw",),
    scaling_workers=(4,), scaling_f=(0, 1), scaling_steps=6, real_workers=4, real_f=1,
    alie_workers=5, alie_steps=6,
)

GRIDS = {"full": FULL, "tiny": TINY}


@dataclass(frozen=True)
class Knobs:
    """One job of the report. `attack` / `server_attack`: (name, params) on f_w workers / f_s servers."""

    topology: str = "ssmw"
    servers: int = 1
    f_s: int = 0
    server_gar: str = "median"
    workers: int = 9
    f_w: int = 2
    gar: str = "median"
    pre: tuple[str, ...] = ()
    attack: tuple[str, Mapping[str, Any]] | None = None
    server_attack: tuple[str, Mapping[str, Any]] | None = None
    momentum: str = "worker"  # worker: spec.training.workerMomentum; server: the task optimizer's momentum
    model: str = "mlp"
    steps: int = 100
    eval_interval: int = 25
    seed: int = 1
    extra: Mapping[str, Any] = field(default_factory=dict)


def manifest(name: str, k: Knobs) -> dict[str, Any]:
    """The job manifest for `k` (mutual TLS off: plaintext loopback, as the paper's measurements)."""
    server_momentum = MOMENTUM if k.momentum == "server" else 0.0
    if k.model == "mlp":
        task = {"entrypoint": "garfield.tasks.mnist:mlp", "args": {"hidden": 128, "momentum": server_momentum, "seed": k.seed}}
        lr = 0.1
    else:
        task = {"entrypoint": "garfield.tasks.mnist:convnet",
                "args": {"channels": [16, 32], "hidden": 128, "momentum": server_momentum, "seed": k.seed}}
        lr = 0.05
    workers: dict[str, Any] = {"replicas": k.workers, "byzantine": k.f_w, "gar": {"name": k.gar}}
    if k.pre:
        workers["gar"]["preAggregation"] = [{"name": stage} for stage in k.pre]
    spec: dict[str, Any] = {
        "framework": "pytorch", "task": task, "topology": k.topology, "workers": workers,
        "training": {"steps": k.steps, "batchSize": 32, "learningRate": lr,
                     "workerMomentum": MOMENTUM if k.momentum == "worker" else 0.0,
                     "evaluationInterval": k.eval_interval, "seed": k.seed},
        "security": {"mutualTLS": False},
    }
    if k.topology != "decentralized":
        spec["servers"] = {"replicas": k.servers, "byzantine": k.f_s, "gar": {"name": k.server_gar}}
    attack: dict[str, Any] = {}
    if k.attack is not None and k.f_w:
        attack["workers"] = {"count": k.f_w, "name": k.attack[0], "params": dict(k.attack[1])}
    if k.server_attack is not None and k.f_s:
        attack["servers"] = {"count": k.f_s, "name": k.server_attack[0], "params": dict(k.server_attack[1])}
    if attack:
        spec["attack"] = attack
    return {"apiVersion": "garfield.dev/v1alpha1", "kind": "ByzantineTrainingJob", "metadata": {"name": name}, "spec": spec}


def chain_label(pre: tuple[str, ...]) -> str:
    return " -> ".join(pre) if pre else "-"
