"""The simulated Byzantine behaviours' registry, kept free of tensor libraries: one `AttackEntry`
per attack and side (`AttackSide`).

The CRD schema enumerates the names, validation checks a job's attack parameters and the docs
generator lists them, without importing torch. The implementations (`garfield.attacks.worker`,
`garfield.attacks.server`) register under the same names and take exactly these parameters,
already checked, with these defaults (None: derived at run time, as the Param's doc says); an
import-time check in each module enforces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Mapping

from garfield.params import Param, check_params, positive, seed

_FILL = Param("value", "choice", "nan", "what every coordinate is set to", choices=("nan", "inf", "-inf"))


@dataclass(frozen=True)
class AttackEntry:
    """One catalog entry: an attack kind as jobs and callers see it (name, summary, typed
    parameters). Not `AttackSpec`: that is the job's attack field (`garfield.spec.model`: which
    attack, how many replicas, the values given), which names an entry of this catalog; the rule
    catalog's `RuleSpec` plays this role for the aggregation rules. `withholds`: it may send nothing (always, or at
    random), so the asynchronous adversary cannot make it answer first and evaluation runs do not
    wait for it (see protocol.quorum.PeerOrder)."""

    name: str
    summary: str
    params: tuple[Param, ...] = ()
    withholds: bool = False

    def check(self, given: Mapping[str, Any] | None, owner: str = "", path: str = "") -> tuple[dict[str, Any], list[str]]:
        """`check_params` against this attack's parameters (see `garfield.params`); `owner` names
        it in messages (default: its name)."""
        return check_params(owner or self.name, given, self.params, path)


def _table(*specs: AttackEntry) -> dict[str, AttackEntry]:
    table = {spec.name: spec for spec in specs}
    assert len(table) == len(specs), "two attacks of one role share a name"
    return table


# The adaptive attacks' line search (as in byzfl's Optimal_* attacks): from `start`, steps of
# `delta` doubling while the harm grows, then shrinking by `ratio`, `evals` evaluations in all.
_LINE_SEARCH = (
    Param("evals", "integer", 20, "evaluations of the rule per round (the search's budget)", minimum=1, maximum=1000),
    Param("start", "number", 0.0, "first scale tried"),
    positive("delta", 10.0, "first step of the search"),
    Param("ratio", "number", 0.8, "factor shrinking the step once the harm stops growing", minimum=0.5,
          exclusive_minimum=True, maximum=1, exclusive_maximum=True),
)

# Worker attacks act on the gradient (or momentum) a worker sends, except label-flip (data level)
# and crash (the node stops answering).
WORKER_ATTACKS: dict[str, AttackEntry] = _table(
    AttackEntry("random", "i.i.d. uniform coordinates in [-scale, scale], unrelated to the gradient",
               (positive("scale", 10.0, "half-width of the uniform draw"), seed("draw"))),
    AttackEntry("gaussian", "i.i.d. N(0, std^2) coordinates (Blanchard et al. 2017)",
               (positive("std", 200.0, "standard deviation of the draw"), seed("draw"))),
    AttackEntry("signflip", "-scale x the honest gradient (sign flip; large scales: Garfield's reversed gradient)",
               (positive("scale", 1.0, "factor applied to the negated gradient"),)),
    AttackEntry("drop", "each coordinate of the honest gradient zeroed with probability p",
               (Param("p", "number", 0.5, "probability of zeroing a coordinate", minimum=0, maximum=1), seed("draw")),
               withholds=True),
    AttackEntry("little", "A Little Is Enough (Baruch et al. 2019): mean + z x std of the honest vectors",
               (Param("z", "number", None, "standard deviations off the mean; null: z_max from n and f"),)),
    AttackEntry("empire", "Fall of Empires (Xie et al. 2020): -epsilon x the mean of the honest vectors",
               (positive("epsilon", 0.1, "factor applied to the negated honest mean"),)),
    AttackEntry("optimal-little", "A Little Is Enough with the z that moves the job's own rule (with its pre-aggregation) "
                                  "farthest from the honest mean, found by a line search on each round",
               _LINE_SEARCH),
    AttackEntry("optimal-empire", "Fall of Empires with the epsilon that moves the job's own rule farthest from the "
                                  "honest mean, found by a line search on each round",
               _LINE_SEARCH),
    AttackEntry("labelflip", "trains on targets y -> num_classes - 1 - y and sends that gradient",
               (Param("num_classes", "integer", 10, "number of classes of the task's targets", minimum=2),)),
    AttackEntry("mimic", "sends one honest worker's vector (Karimireddy et al. 2022)",
               (Param("target", "integer", 0, "index of the honest vector copied (modulo their count)", minimum=0),)),
    AttackEntry("nan", "a vector full of NaN (or +inf / -inf)", (_FILL,)),
    AttackEntry("crash", "honest until step `after`, then silent forever",
               (Param("after", "integer", 0, "first step it sends nothing", minimum=0),), withholds=True),
)

# Server attacks act on the model a server sends to workers and to the other servers.
SERVER_ATTACKS: dict[str, AttackEntry] = _table(
    AttackEntry("random", "a model of i.i.d. N(0, std^2) parameters",
               (positive("std", 1.0, "standard deviation of the draw"), seed("draw"))),
    AttackEntry("reversed", "-scale x the model", (positive("scale", 1.0, "factor applied to the negated model"),)),
    AttackEntry("stale", "the model it had `delay` calls ago (its oldest until it has that many)",
               (Param("delay", "integer", 10, "how many calls old the model sent is (copies held)", minimum=1),)),
    AttackEntry("silent", "never answers", withholds=True),
    AttackEntry("nan", "a model full of NaN (or +inf / -inf)", (_FILL,)),
)



class AttackSide(StrEnum):
    """Which replicas an attack runs on, and so which table names it: the worker side (workers, and
    the peers of a decentralized job, `spec.attack.workers`) or the servers (`spec.attack.servers`).
    Not a `Role`: peers take worker attacks, and the catalog must stay importable by the spec."""

    WORKER = "worker"
    SERVER = "server"

    @property
    def spec_path(self) -> str:
        """Where a job names this side's attack."""
        return f"spec.attack.{self.value}s"


BY_SIDE: dict[AttackSide, dict[str, AttackEntry]] = {AttackSide.WORKER: WORKER_ATTACKS, AttackSide.SERVER: SERVER_ATTACKS}

# Attacks that may withhold their reply, by name (spec.model.AttackSpec.answers reads it).
WITHHOLDING: frozenset[str] = frozenset(
    spec.name for table in BY_SIDE.values() for spec in table.values() if spec.withholds
)


def attack_entry(side: AttackSide, name: str) -> AttackEntry:
    """The AttackEntry of the `side` attack `name`; ValueError otherwise."""
    table = BY_SIDE[side]
    try:
        return table[name]
    except KeyError:
        raise ValueError(f"unknown {side} attack {name!r}; known: {', '.join(sorted(table))}") from None


def resolve(side: AttackSide, name: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults of the `side` attack `name` overridden by `params`, checked; ValueError naming
    every unknown parameter and out-of-range value."""
    values, errors = attack_entry(side, name).check(params, owner=f"{side} attack {name}")
    if errors:
        raise ValueError("; ".join(errors))
    return values
