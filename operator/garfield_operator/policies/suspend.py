"""suspend: delete the job's pods while true (keeping the service), recreate them when false."""

from __future__ import annotations

from collections.abc import Iterable

from garfield_operator.observe import PodView


def pods_to_delete(views: Iterable[PodView]) -> list[PodView]:
    """Every pod not already going away; finished pods too, so a resume starts every replica fresh."""
    return [v for v in views if not v.terminating]
