"""Names and parameters of the simulated Byzantine behaviours, kept free of tensor libraries.

The CRD schema enumerates the names and validation checks them without importing torch; the
attack implementations (`garfield.attacks.worker`, `garfield.attacks.server`) register under the
same names and take exactly the parameters listed here, with these defaults (None: derived at
run time, see the attack's docstring).
"""

from __future__ import annotations

# Worker attacks act on the gradient (or momentum) a worker sends, except label-flip (data level)
# and crash (the node stops answering).
WORKER_PARAMS: dict[str, dict[str, object]] = {
    "random": {"scale": 10.0, "seed": None},
    "gaussian": {"std": 200.0, "seed": None},
    "signflip": {"scale": 1.0},
    "drop": {"p": 0.5, "seed": None},
    "little": {"z": None},  # A Little Is Enough (Baruch et al. 2019)
    "empire": {"epsilon": 0.1},  # Fall of Empires / inner-product manipulation (Xie et al. 2020)
    "labelflip": {"num_classes": 10},
    "mimic": {"target": 0},
    "nan": {"value": "nan"},
    "crash": {"after": 0},
}

# Server attacks act on the model a server sends to workers and to the other servers.
SERVER_PARAMS: dict[str, dict[str, object]] = {
    "random": {"std": 1.0, "seed": None},
    "reversed": {"scale": 1.0},
    "stale": {"delay": 10},
    "silent": {},
    "nan": {"value": "nan"},
}

# Attacks that may withhold their reply (always, or at random): the asynchronous adversary cannot
# make them answer first, so evaluation runs do not wait for them (see protocol.quorum.PeerOrder).
WITHHOLDING: frozenset[str] = frozenset({"crash", "silent", "drop"})

WORKER_ATTACKS: frozenset[str] = frozenset(WORKER_PARAMS)
SERVER_ATTACKS: frozenset[str] = frozenset(SERVER_PARAMS)
