"""Byzantine worker behaviours: what a Byzantine worker sends instead of its honest gradient.

`corrupt(honest, peers, n, f, step)`: `honest` is the node's own honest 1-D gradient (or momentum);
`peers` is None or the round's honest vectors, a (k, d) tensor or a list (omniscient attacks need
them: the runtime's Byzantine worker computes k honest vectors on its own data stream); n and f
are the workers' count and tolerated f. Returns the vector to send, in the input's framework,
device and dtype, or None to send nothing. Tensors may be torch or TensorFlow.
"""

from __future__ import annotations

import statistics
from typing import Any

import torch

from garfield.attacks._common import FILL_VALUES, Rng, build, implementations, peers_matrix, to_torch
from garfield.attacks.catalog import AttackSide
from garfield.attacks.types import Defence, LabelTransform


class TorchWorkerAttack:
    """Base class of the implementations, which work on torch views of the tensors; it satisfies
    `garfield.attacks.types.WorkerAttack`, the type the protocol sees. `omniscient`: needs the
    round's honest vectors; `silent`: may send nothing. Constructors take the catalog's parameters
    already checked (`catalog.resolve`), so they hold only checks that need run-time values (the
    peers, n and f)."""

    name = ""
    omniscient = False
    silent = False
    label_transform: LabelTransform | None = None

    def corrupt(self, honest: Any, peers: Any, n: int, f: int, step: int) -> Any:
        g, back = to_torch(honest)
        res = self._corrupt(g.reshape(-1), peers_matrix(peers), n, f, step)
        return None if res is None else back(res)

    def _corrupt(self, g: torch.Tensor, peers: torch.Tensor | None, n: int, f: int, step: int) -> torch.Tensor | None:
        raise NotImplementedError

    def _need_peers(self, g: torch.Tensor, peers: torch.Tensor | None) -> torch.Tensor:
        if peers is None or peers.shape[0] == 0:
            raise ValueError(f"attack {self.name} is omniscient: it needs the round's honest vectors (peers)")
        if peers.shape[1] != g.shape[0]:
            raise ValueError(f"attack {self.name}: peers have {peers.shape[1]} coordinates, the gradient {g.shape[0]}")
        return peers.to(g.device)


class Random(TorchWorkerAttack):
    """I.i.d. uniform coordinates in [-scale, scale], unrelated to the gradient (the "random"
    Byzantine vector of Blanchard et al. 2017 and Garfield)."""

    name = "random"

    def __init__(self, scale: float, seed: int | None) -> None:
        self.scale = scale
        self.rng = Rng(seed)

    def _corrupt(self, g: torch.Tensor, peers: torch.Tensor | None, n: int, f: int, step: int) -> torch.Tensor | None:
        u = torch.rand(g.shape, generator=self.rng.get(g.device), device=g.device, dtype=g.dtype)
        return u.mul_(2 * self.scale).sub_(self.scale)


class Gaussian(TorchWorkerAttack):
    """I.i.d. N(0, std^2) coordinates; std = 200 as in Blanchard et al. 2017 (Krum), section 5."""

    name = "gaussian"

    def __init__(self, std: float, seed: int | None) -> None:
        self.std = std
        self.rng = Rng(seed)

    def _corrupt(self, g: torch.Tensor, peers: torch.Tensor | None, n: int, f: int, step: int) -> torch.Tensor | None:
        return torch.randn(g.shape, generator=self.rng.get(g.device), device=g.device, dtype=g.dtype).mul_(self.std)


class SignFlip(TorchWorkerAttack):
    """-scale x the honest gradient: sign flipping (scale 1, e.g. Allen-Zhu et al. 2021) or
    Garfield's "reversed" gradient (a large scale such as 100)."""

    name = "signflip"

    def __init__(self, scale: float) -> None:
        self.scale = scale

    def _corrupt(self, g: torch.Tensor, peers: torch.Tensor | None, n: int, f: int, step: int) -> torch.Tensor | None:
        return g.mul(-self.scale)


class Drop(TorchWorkerAttack):
    """Partial drop: each coordinate of the honest gradient is zeroed with probability p (a lossy
    or faulty sender; Garfield's "drop")."""

    name = "drop"

    def __init__(self, p: float, seed: int | None) -> None:
        self.p = p
        self.rng = Rng(seed)

    def _corrupt(self, g: torch.Tensor, peers: torch.Tensor | None, n: int, f: int, step: int) -> torch.Tensor | None:
        keep = torch.rand(g.shape, generator=self.rng.get(g.device), device=g.device) >= self.p
        return g * keep


def alie_z(n: int, f: int) -> float:
    """z_max of Baruch et al. 2019 ("A Little Is Enough", section 4): s = floor(n/2 + 1) - f
    workers must be swayed; z = Phi^-1((n - s) / n)."""
    s = n // 2 + 1 - f
    q = (n - s) / n
    q = min(max(q, 1e-6), 1 - 1e-6)
    return statistics.NormalDist().inv_cdf(q)


class Little(TorchWorkerAttack):
    """A Little Is Enough (Baruch et al., NeurIPS 2019): per coordinate mean + z * std of the
    round's honest vectors, z from n and f (`alie_z`) unless given. Small enough to pass
    distance and order-statistics filters, consistent across Byzantine workers."""

    name = "little"
    omniscient = True

    def __init__(self, z: float | None) -> None:
        self.z = z

    def _corrupt(self, g: torch.Tensor, peers: torch.Tensor | None, n: int, f: int, step: int) -> torch.Tensor | None:
        P = self._need_peers(g, peers)
        z = alie_z(n, f) if self.z is None else self.z
        mean = P.mean(0)
        std = P.std(0, unbiased=False) if P.shape[0] > 1 else torch.zeros_like(mean)
        return mean.add_(std, alpha=z).to(g.dtype)


class Empire(TorchWorkerAttack):
    """Fall of Empires / inner-product manipulation (Xie et al., UAI 2020): -epsilon x the mean of
    the honest vectors, making the aggregate's inner product with the true gradient negative."""

    name = "empire"
    omniscient = True

    def __init__(self, epsilon: float) -> None:
        self.epsilon = epsilon

    def _corrupt(self, g: torch.Tensor, peers: torch.Tensor | None, n: int, f: int, step: int) -> torch.Tensor | None:
        P = self._need_peers(g, peers)
        return P.mean(0).mul_(-self.epsilon).to(g.dtype)


class _LineSearch(TorchWorkerAttack):
    """An omniscient attack that, each round, picks the scale of its vector that moves the job's own
    rule (`defence`, with its pre-aggregation) farthest from the honest mean, as byzfl's
    Optimal_* attacks do: the harm of a scale is the distance between the rule's result on a
    simulated quorum (n - 2f of the round's honest vectors and f copies of the attack vector, the
    shape of the quorum a node aggregates when every attacker is in it) and the honest mean. The
    search starts at `start`, steps by `delta` doubling while the harm grows, then shrinks the
    step by `ratio`, within `evals` evaluations. `defence` is set by `make_worker_attack`."""

    omniscient = True
    defence = Defence()

    def __init__(self, evals: int, start: float, delta: float, ratio: float) -> None:
        self.evals, self.start, self.delta, self.ratio = evals, start, delta, ratio
        self.last_scale: float | None = None  # the scale the last round chose (tests, diagnostics)

    def vector(self, mean: torch.Tensor, std: torch.Tensor, scale: float) -> torch.Tensor:
        raise NotImplementedError

    def _corrupt(self, g: torch.Tensor, peers: torch.Tensor | None, n: int, f: int, step: int) -> torch.Tensor | None:
        from garfield.aggregators import aggregate

        P = self._need_peers(g, peers)
        mean = P.mean(0)
        std = P.std(0, unbiased=False) if P.shape[0] > 1 else torch.zeros_like(mean)
        f = max(f, 1)
        honest = P[: max(n - 2 * f, 1)]
        d = self.defence

        def harm(scale: float) -> float:
            X = torch.cat([honest, self.vector(mean, std, scale).expand(f, -1)])
            result = aggregate(d.rule, X, f, pre=d.pre, **d.params)
            return float(torch.linalg.vector_norm((result - mean).double()))

        best, best_harm = self.start, harm(self.start)
        step_size, left = self.delta, self.evals - 1
        while left > 0:  # expansion: double the step while it helps
            left -= 1
            candidate = best + step_size
            value = harm(candidate)
            if value > best_harm:
                best, best_harm, step_size = candidate, value, step_size * 2
            else:
                step_size *= self.ratio
                break
        while left > 0:  # contraction
            left -= 1
            candidate = best + step_size
            value = harm(candidate)
            if value > best_harm:
                best, best_harm = candidate, value
            step_size *= self.ratio
        self.last_scale = best
        return self.vector(mean, std, best).to(g.dtype)


class OptimalLittle(_LineSearch):
    """A Little Is Enough (mean + z x std of the honest vectors) with z chosen by the line search."""

    name = "optimal-little"

    def vector(self, mean: torch.Tensor, std: torch.Tensor, scale: float) -> torch.Tensor:
        return mean + std * scale


class OptimalEmpire(_LineSearch):
    """Fall of Empires (-epsilon x the honest mean) with epsilon chosen by the line search."""

    name = "optimal-empire"

    def vector(self, mean: torch.Tensor, std: torch.Tensor, scale: float) -> torch.Tensor:
        return mean * -scale


def _flip_labels(num_classes: int) -> LabelTransform:
    def transform(y: Any) -> Any:
        """y -> num_classes - 1 - y, on torch or TensorFlow integer targets."""
        if isinstance(y, torch.Tensor):
            return (num_classes - 1) - y
        if type(y).__module__.startswith("tensorflow"):
            import tensorflow as tf

            return tf.cast(num_classes - 1, y.dtype) - y
        return (num_classes - 1) - y

    return transform


class LabelFlip(TorchWorkerAttack):
    """Label flipping (data poisoning; e.g. Tolpegin et al. 2020, Allen-Zhu et al. 2021): the worker
    trains on targets y -> num_classes - 1 - y and sends that honest-looking gradient."""

    name = "labelflip"

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.label_transform = _flip_labels(self.num_classes)

    def _corrupt(self, g: torch.Tensor, peers: torch.Tensor | None, n: int, f: int, step: int) -> torch.Tensor | None:
        return g


class Mimic(TorchWorkerAttack):
    """Mimic (Karimireddy, He & Jaggi, ICLR 2022): every Byzantine worker sends the vector of one
    honest worker (`target`, an index into the round's honest vectors), over-weighting it; hurts
    most with heterogeneous data."""

    name = "mimic"
    omniscient = True

    def __init__(self, target: int) -> None:
        self.target = target

    def _corrupt(self, g: torch.Tensor, peers: torch.Tensor | None, n: int, f: int, step: int) -> torch.Tensor | None:
        P = self._need_peers(g, peers)
        return P[self.target % P.shape[0]].clone().to(g.dtype)


class NonFinite(TorchWorkerAttack):
    """Sends a vector full of NaN (or +inf / -inf): a robust aggregator must not propagate it."""

    name = "nan"

    def __init__(self, value: str) -> None:
        self.value = FILL_VALUES[value]

    def _corrupt(self, g: torch.Tensor, peers: torch.Tensor | None, n: int, f: int, step: int) -> torch.Tensor | None:
        return torch.full_like(g, self.value)


class Crash(TorchWorkerAttack):
    """Crash failure: honest until step `after`, then silent forever (sends nothing)."""

    name = "crash"
    silent = True

    def __init__(self, after: int) -> None:
        self.after = after

    def _corrupt(self, g: torch.Tensor, peers: torch.Tensor | None, n: int, f: int, step: int) -> torch.Tensor | None:
        return None if step >= self.after else g


_CLASSES: dict[str, type[TorchWorkerAttack]] = implementations(
    AttackSide.WORKER, (Random, Gaussian, SignFlip, Drop, Little, Empire, OptimalLittle, OptimalEmpire, LabelFlip, Mimic,
                        NonFinite, Crash))


def make_worker_attack(name: str, params: dict[str, Any] | None = None, defence: Defence | None = None) -> TorchWorkerAttack:
    """The worker attack `name` with `params` over its catalog defaults; ValueError on an unknown
    name or parameter and on an out-of-range value (the catalog's check, as in `garfield validate`).
    `defence`: the rule the attacked quorum uses, which the adaptive attacks aim at (else average)."""
    attack: TorchWorkerAttack = build(AttackSide.WORKER, _CLASSES, name, params)
    if isinstance(attack, _LineSearch) and defence is not None:
        attack.defence = defence
    return attack
