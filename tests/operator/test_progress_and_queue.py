"""Progress summarising (untrusted /status replies) and the work queue's de-duplication."""

from __future__ import annotations

import asyncio
import datetime as dt

from garfield_operator.status import same_progress
from garfield_operator.status import summarize_progress as summarize
from garfield_operator.workqueue import WorkQueue

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def test_summarize_takes_the_median_step_reply() -> None:
    replies = [
        {"step": 10, "loss": 1.0, "accuracy": 0.5, "steps_per_second": 3.0, "rejected": {"stale": 1}},
        {"step": 12, "loss": 0.9, "accuracy": 0.6, "steps_per_second": 3.5, "rejected": {"stale": 2, "nan": 3}},
        {"step": 10 ** 9, "loss": -1, "accuracy": 1.0},  # a lying server cannot move the median
    ]
    out = summarize(replies, NOW)
    assert out == {"step": 12, "loss": 0.9, "accuracy": 0.6, "stepsPerSecond": 3.5, "rejectedMessages": 5,
                   "updateTime": "2026-01-01T00:00:00Z"}


def test_summarize_drops_garbage() -> None:
    assert summarize([{"step": "ten"}, {"step": float("nan")}, {}], NOW) is None
    out = summarize([{"step": 3, "loss": float("inf"), "accuracy": True, "rejected": {"x": -4, "y": "z"}}], NOW)
    assert out == {"step": 3, "rejectedMessages": 0, "updateTime": "2026-01-01T00:00:00Z"}


def test_same_progress_ignores_update_time() -> None:
    assert same_progress({"step": 1, "updateTime": "a"}, {"step": 1, "updateTime": "b"})
    assert not same_progress({"step": 1}, {"step": 2})


def test_workqueue_deduplicates_and_requeues_dirty_keys() -> None:
    async def scenario() -> list[str]:
        q = WorkQueue()
        for _ in range(65):
            q.add("job")
        assert len(q) == 1
        key = await q.get()
        q.add("job")  # an event while processing: one more pass afterwards, not now
        assert len(q) == 0
        q.done(key)
        assert len(q) == 1
        seen = [await q.get()]
        q.done("job")
        q.add_after("later", 0.05)
        q.add_after("later", 5.0)  # the earlier timer wins
        seen.append(await asyncio.wait_for(q.get(), 1.0))
        q.close()
        return seen

    assert asyncio.run(scenario()) == ["job", "later"]


def test_workqueue_backoff_grows_and_resets() -> None:
    async def scenario() -> list[float]:
        q = WorkQueue(base_backoff=0.2, max_backoff=1.0)
        delays = [q.add_rate_limited("k") for _ in range(5)]
        q.forget("k")
        delays.append(q.add_rate_limited("k"))
        q.close()
        return delays

    assert asyncio.run(scenario()) == [0.2, 0.4, 0.8, 1.0, 1.0, 0.2]
