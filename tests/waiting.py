"""How tests wait: one deadline, and polls that say what they waited for.

A test waits on an event, or polls a condition it cannot be told about (another process's
database, a server's counter). The deadline only turns a hang into a failure that names
what never came; it is never a speed check, so it is generous and there is one of it.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

DEADLINE = 240.0  # seconds: a guard against a hung process or loop, not a speed check
POLL_INTERVAL = 0.05  # seconds between two looks at a condition


def wait_until(
    predicate: Callable[[], T], timeout: float = DEADLINE, what: str = "the condition"
) -> T:
    """Poll `predicate` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL_INTERVAL)  # polling with a deadline, not sleeping to wait


async def until(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = DEADLINE,
    what: str = "the condition",
) -> T:
    """`wait_until` inside an event loop: the loop runs on between looks."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(POLL_INTERVAL)


def within_deadline(
    coroutine: Coroutine[Any, Any, T], timeout: float = DEADLINE, what: str = "the scenario"
) -> T:
    """`asyncio.run(coroutine)`; a coroutine that hangs fails, naming `what`."""

    async def guarded() -> T:
        scope = asyncio.timeout(timeout)
        try:
            async with scope:
                return await coroutine
        except TimeoutError:
            if not scope.expired():
                raise  # the coroutine's own timeout, not the deadline
            raise AssertionError(f"{what} did not finish within {timeout:g} s") from None

    return asyncio.run(guarded())
