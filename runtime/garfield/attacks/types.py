"""The seams between the attacks and the rest of the runtime, as structural types.

The protocol nodes and the adapters drive an attack only through these members, so they are
typed here, free of torch and of every tensor library: the protocol stack may not import torch
(see the import-linter contracts), and its code can still be checked against what an attack
offers instead of probing attributes with `getattr`. Tensors are `Any` at this seam, as in
`garfield.adapters.base.Tensor` (torch or TensorFlow, on the node's device).

The implementations (`garfield.attacks.worker`, `garfield.attacks.server`) satisfy these
protocols; a test-made attack may too, without inheriting from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class Defence:
    """The rule the attacked quorum is aggregated with, as an adaptive attack is told it (an
    omniscient adversary knows the job's spec): its name, parameters and pre-aggregation stages
    (`garfield.aggregators.preaggregation.Stage` or {name, params} mappings)."""

    rule: str = "average"
    params: Mapping[str, Any] = field(default_factory=dict)
    pre: Sequence[Any] = ()


@runtime_checkable
class LabelTransform(Protocol):
    """Maps a training batch's targets to the targets actually trained on (label flipping), in
    the targets' framework. The adapter receives it once, before training
    (`FrameworkAdapter.set_label_transform`)."""

    def __call__(self, targets: Any, /) -> Any: ...


@runtime_checkable
class WorkerAttack(Protocol):
    """What a Byzantine worker (or peer) sends instead of its honest gradient.

    `omniscient`: `corrupt` needs the round's honest vectors (`peers`), so the node computes
    n - f of them. `silent`: it may send nothing. `label_transform`: None, or the targets
    transform its honest computation trains on (data poisoning)."""

    name: str
    omniscient: bool
    silent: bool
    label_transform: LabelTransform | None

    def corrupt(self, honest: Any, peers: Any, n: int, f: int, step: int) -> Any:
        """The vector to send for `step` (same framework, device and dtype as `honest`), or None to
        send nothing; see `garfield.attacks.worker` for the arguments."""
        ...


@runtime_checkable
class ServerAttack(Protocol):
    """What a Byzantine server offers instead of its model. `silent`: it answers nothing."""

    name: str
    silent: bool

    def corrupt(self, model: Any, step: int) -> Any:
        """The flat model to offer for `step` (same framework, device and dtype), or None to offer
        nothing."""
        ...


__all__ = ["Defence", "LabelTransform", "ServerAttack", "WorkerAttack"]
