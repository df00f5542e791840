"""Names of the simulated Byzantine behaviours, kept free of tensor libraries.

The CRD schema enumerates them and validation checks them without importing torch; the attack
implementations register under the same names.
"""

from __future__ import annotations

# Worker attacks act on the gradient (or momentum) a worker sends, except label-flip (data level)
# and crash (the node stops answering).
WORKER_ATTACKS: frozenset[str] = frozenset(
    {
        "random",
        "gaussian",
        "signflip",
        "drop",
        "little",  # A Little Is Enough (Baruch et al. 2019)
        "empire",  # Fall of Empires / inner-product manipulation (Xie et al. 2020)
        "labelflip",
        "mimic",
        "nan",
        "crash",
    }
)

# Server attacks act on the model a server sends to workers and to the other servers.
SERVER_ATTACKS: frozenset[str] = frozenset({"random", "reversed", "stale", "silent", "nan"})
