"""Never miss a stop: a check for a cancellation that a library swallowed.

Python 3.11's ``asyncio.wait_for`` (inside aiomqtt, pymodbus and others) can lose a cancellation when
its inner future completes at the same moment; the task's ``cancelling()`` count still says it is
being cancelled. Loops that call such libraries check it so a stopping gateway never waits forever.
"""

from __future__ import annotations

import asyncio

CHECK_EVERY = 1.0
"""Seconds a loop waits at most between two checks."""


def check_cancelled() -> None:
    """Raise ``CancelledError`` if the current task is being cancelled."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
