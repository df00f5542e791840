"""A job's lifecycle, decided once for both launchers (pure, torch-free).

`garfield run` observes processes and the operator observes pods; each turns what it sees into
:class:`ReplicaState` values and asks :func:`decide` for the job's fate, so the same faults end a
job the same way on a laptop and on a cluster (tests/lifecycle run one table through both).
"""

from garfield.lifecycle.fate import Fault, Verdict, decide, faults
from garfield.lifecycle.phase import Phase, Reason
from garfield.lifecycle.replica import Health, ReplicaState
from garfield.lifecycle.restart import Restart, RestartDecision, restart_decision

__all__ = ["Fault", "Health", "Phase", "Reason", "ReplicaState", "Restart", "RestartDecision", "Verdict", "decide",
           "faults", "restart_decision"]
