"""The kopf handlers that feed the controller run on the event loop, not in kopf's thread pool."""

from __future__ import annotations

import inspect

from garfield_operator import handlers


def test_handlers_touching_the_work_queue_are_coroutines() -> None:
    # kopf runs plain functions in an executor thread; the controller's asyncio work queue must
    # only be used from the loop's thread (a put from another thread may never wake a worker).
    for handler in (handlers.job_event, handlers.pod_event, handlers.service_event, handlers.probe):
        assert inspect.iscoroutinefunction(handler), handler.__name__
