"""The kopf way of doing the garfield operator's background work, reduced to what it costs.

kopf gives per-object background work through timers and daemons (``@kopf.timer``,
``@kopf.daemon``): a resync every 5 minutes, the ``/status`` reads every 10 s and the
deadline/TTL wake-ups would all be one of those on each ByzantineTrainingJob. kopf registers every
timer and daemon with ``requires_finalizer=True`` (kopf/on.py), so it puts its finalizer on every
job it serves. ``bench/operator.py`` runs this module with ``kopf run`` next to the real
operator and measures what that finalizer does to ``kubectl delete btj`` while the operator is
down. The handler bodies are empty on purpose: the finalizer comes with the decorator alone.
"""

from __future__ import annotations

from typing import Any

import kopf

GROUP, VERSION, PLURAL = "garfield.dev", "v1alpha1", "byzantinetrainingjobs"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = "garfield.dev/kopf-way"
    settings.posting.enabled = False


@kopf.timer(GROUP, VERSION, PLURAL, interval=300.0)
async def resync(**_: Any) -> None:
    """Where the controller's 5-minute resync, progress reads and deadline wake-ups would go."""
