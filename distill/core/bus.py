"""The in-process event bus: hands committed events to live followers.

Every event published here is already in SQLite (the recorder publishes after each
committed batch), so the bus is never the record. That is what lets it refuse to wait for
anyone:

- `publish` is synchronous and never blocks or awaits. Awaiting each follower in turn
  would hold every run's events behind the slowest browser tab (the websockets docs make
  the same point in topics/broadcast). Instead each subscription has its own bounded
  queue: a follower that stops reading costs at most `queue_size` events of memory and
  slows nobody else. There is no backpressure.
- Step metrics are a progress gauge; a reader that is behind only needs the newest. When
  a queue is at least half full and its newest item is a step of the same run, a new step
  replaces it; when the queue is full and a step cannot replace one, the step is dropped.
  Both count in `coalesced`, and both leave gaps in the step seqs a follower sees: one that
  needs every step reads them from the store.
- Every other kind is delivered in order, exactly once, or the subscription ends. When
  such an event does not fit, the bus closes the subscription with `FELL_BEHIND` rather
  than skip it: a gap the follower cannot see is worse than a resync it can. Events
  queued before the close stay readable; then `get` raises `SubscriptionClosed`, and the
  follower re-reads from the store after its last seq and subscribes again.
- A closed subscription drains before it raises, whoever closed it, so an event that was
  queued for a reader is never silently lost.
- Everything runs on one event loop thread, so there are no locks and nothing here is
  thread-safe. Publish from the loop that runs the readers; from another thread, use
  `loop.call_soon_threadsafe(bus.publish_many, events)`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable

from distill.events import STEP_KINDS, Event

FELL_BEHIND = "fell behind: resync from the store"


class SubscriptionClosed(Exception):
    """The subscription is closed and every queued event was read; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Subscription:
    """One follower's bounded queue of events, read with `get` or `async for`.

    `async for` ends quietly when the subscription closes; check `reason` afterwards to
    tell a resync (`FELL_BEHIND`) from an ordinary close.
    """

    def __init__(
        self, run_id: str | None, queue_size: int, on_close: Callable[[Subscription], None]
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.run_id = run_id  # None: every run
        self.queue_size = queue_size
        self.closed = False
        self.reason: str | None = None
        self.coalesced = 0  # step events replaced by a newer one or dropped
        self._queue: deque[Event] = deque()
        self._wakeup = asyncio.Event()  # set whenever the queue gains an event or we close
        self._on_close = on_close

    @property
    def pending(self) -> int:
        """Events queued and not yet read; never more than `queue_size`."""
        return len(self._queue)

    async def get(self) -> Event:
        """The next event in publish order, waiting for one if none is queued."""
        while not self._queue:
            if self.closed:
                raise SubscriptionClosed(self.reason or "closed")
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._queue.popleft()

    def get_nowait(self) -> Event | None:
        """The next event, or None if none is queued yet; raises once closed and drained."""
        if self._queue:
            return self._queue.popleft()
        if self.closed:
            raise SubscriptionClosed(self.reason or "closed")
        return None

    def close(self, reason: str = "closed") -> None:
        """Stop deliveries and wake any waiting `get`; the first reason given sticks."""
        if self.closed:
            return
        self.closed = True
        self.reason = reason
        self._wakeup.set()
        self._on_close(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        try:
            return await self.get()
        except SubscriptionClosed:
            raise StopAsyncIteration from None

    def _offer(self, event: Event) -> None:
        """Queue `event` without waiting: coalesce a step, or close if a non-step won't fit."""
        queue = self._queue
        full = len(queue) >= self.queue_size
        if event.kind in STEP_KINDS:
            tail = queue[-1] if queue else None
            if (
                2 * len(queue) >= self.queue_size
                and tail is not None
                and tail.kind == event.kind
                and tail.run_id == event.run_id
            ):
                queue[-1] = event  # latest wins; a reader is already due to wake for the tail
                self.coalesced += 1
                return
            if full:
                self.coalesced += 1
                return
        elif full:
            self.close(FELL_BEHIND)
            return
        queue.append(event)
        self._wakeup.set()


class EventBus:
    """Fans events out to subscriptions; `publish` costs O(subscribers) and never waits."""

    def __init__(self, queue_size: int = 1024) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.queue_size = queue_size
        self._subs: dict[Subscription, None] = {}  # an ordered set

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    def subscribe(self, run_id: str | None = None, queue_size: int | None = None) -> Subscription:
        """A new subscription to one run's events, or to every run's if `run_id` is None."""
        size = self.queue_size if queue_size is None else queue_size
        sub = Subscription(run_id, size, self._detach)
        self._subs[sub] = None
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Remove `sub` from the bus and close it; safe to call more than once."""
        sub.close("unsubscribed")
        self._detach(sub)

    def publish(self, event: Event) -> None:
        # A snapshot: a subscription that overflows closes and leaves the dict mid-loop.
        for sub in tuple(self._subs):
            if sub.run_id is None or sub.run_id == event.run_id:
                sub._offer(event)

    def publish_many(self, events: Iterable[Event]) -> None:
        for event in events:
            self.publish(event)

    def _detach(self, sub: Subscription) -> None:
        self._subs.pop(sub, None)
