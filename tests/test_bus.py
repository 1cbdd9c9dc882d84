"""The event bus: order, exactly-once, coalescing of steps, overflow and close."""

from __future__ import annotations

import asyncio

import pytest
from waiting import within_deadline

from distill.core.bus import FELL_BEHIND, EventBus, Subscription, SubscriptionClosed
from distill.events import CheckpointSaved, EpochMetrics, Event, StepMetrics

STEP = StepMetrics.kind
EPOCH = EpochMetrics.kind
CHECKPOINT = CheckpointSaved.kind


class Stream:
    """Events of one run with consecutive seqs, as the core stamps them."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.seq = 0

    def next(self, kind: str) -> Event:
        self.seq += 1
        return Event(self.run_id, self.seq, kind, {"n": self.seq})


def ids(events: list[Event]) -> list[tuple[str, int]]:
    return [(e.run_id, e.seq) for e in events]


async def read_all(sub: Subscription) -> list[Event]:
    return [event async for event in sub]


def test_every_subscriber_gets_every_event_in_order_exactly_once() -> None:
    async def scenario() -> None:
        bus = EventBus(queue_size=10_000)
        everything_1, everything_2 = bus.subscribe(), bus.subscribe()
        only_b = bus.subscribe("b")
        readers = [asyncio.create_task(read_all(s)) for s in (everything_1, everything_2, only_b)]
        a, b = Stream("a"), Stream("b")
        published: list[Event] = []
        for chunk in range(50):
            batch = [a.next(EPOCH), b.next(CHECKPOINT), b.next(EPOCH)]
            published += batch
            if chunk % 2:
                bus.publish_many(batch)
            else:
                for event in batch:
                    bus.publish(event)
            await asyncio.sleep(0)  # let the readers run between chunks
        for sub in (everything_1, everything_2, only_b):
            bus.unsubscribe(sub)
        got_1, got_2, got_b = await asyncio.gather(*readers)
        assert ids(got_1) == ids(published)
        assert ids(got_2) == ids(published)
        assert ids(got_b) == [(e.run_id, e.seq) for e in published if e.run_id == "b"]
        assert bus.subscriber_count == 0

    within_deadline(scenario())


def test_a_stuck_subscriber_neither_blocks_publishing_nor_starves_a_reader() -> None:
    async def scenario() -> None:
        bus = EventBus()
        stuck = bus.subscribe(queue_size=64)
        reader_sub = bus.subscribe(queue_size=4096)
        reader = asyncio.create_task(read_all(reader_sub))
        stream = Stream("a")
        published = [stream.next(EPOCH if i % 100 == 99 else STEP) for i in range(100_000)]
        for start in range(0, len(published), 1000):
            bus.publish_many(published[start : start + 1000])
            await asyncio.sleep(0)  # let the reader run between chunks
        bus.unsubscribe(reader_sub)
        got = await reader
        assert ids(got) == ids(published)
        assert reader_sub.coalesced == 0
        assert stuck.closed and stuck.reason == FELL_BEHIND
        assert stuck.pending <= 64

    within_deadline(scenario())


@pytest.mark.parametrize("epoch_every", [0, 100], ids=["steps-only", "mixed-kinds"])
def test_a_never_reading_subscriber_holds_at_most_queue_size_events(epoch_every: int) -> None:
    bus = EventBus()
    stuck = bus.subscribe(queue_size=32)
    a, b = Stream("a"), Stream("b")  # alternating runs, so no step replaces the one before
    most = 0
    for i in range(100_000):
        kind = EPOCH if epoch_every and i % epoch_every == epoch_every - 1 else STEP
        bus.publish((a if i % 2 else b).next(kind))
        most = max(most, stuck.pending)
    assert most == 32
    assert stuck.closed == bool(epoch_every)


def test_a_slow_subscriber_gets_every_other_event_and_the_latest_step() -> None:
    async def scenario() -> None:
        bus = EventBus()
        slow = bus.subscribe("a", queue_size=8)
        stream = Stream("a")
        published: list[Event] = []
        received: list[Event] = []
        for epoch in range(20):
            for _ in range(50):
                published.append(stream.next(STEP))
                bus.publish(published[-1])
                if len(published) % 10 == 0:  # reads one event for every ten published
                    received.append(await slow.get())
            published.append(stream.next(EPOCH if epoch < 19 else STEP))
            bus.publish(published[-1])
        bus.unsubscribe(slow)
        received += await read_all(slow)

        assert slow.reason == "unsubscribed"  # never fell behind
        not_steps = [e for e in published if e.kind != STEP]
        assert ids([e for e in received if e.kind != STEP]) == ids(not_steps)
        assert [e.seq for e in received] == sorted(e.seq for e in received)
        assert received[-1] is published[-1]  # the latest step
        published_steps = sum(e.kind == STEP for e in published)
        received_steps = sum(e.kind == STEP for e in received)
        assert received_steps < published_steps
        assert slow.coalesced == published_steps - received_steps

    within_deadline(scenario())


def test_steps_of_different_runs_do_not_replace_each_other() -> None:
    bus = EventBus()
    sub = bus.subscribe(queue_size=2)
    a, b = Stream("a"), Stream("b")
    bus.publish_many([a.next(STEP), b.next(STEP)])
    bus.publish(b.next(STEP))  # half full and the tail is b's step: replaced
    bus.publish(a.next(STEP))  # full and the tail is b's: dropped
    assert ids([sub.get_nowait(), sub.get_nowait()]) == [("a", 1), ("b", 2)]
    assert sub.coalesced == 2
    assert not sub.closed


def test_overflow_of_other_kinds_closes_with_the_resync_reason_after_draining() -> None:
    async def scenario() -> None:
        bus = EventBus()
        sub = bus.subscribe(queue_size=4)
        stream = Stream("a")
        queued = [stream.next(EPOCH) for _ in range(4)]
        bus.publish_many(queued)
        bus.publish(stream.next(STEP))  # a step that does not fit is dropped, not fatal
        assert not sub.closed and sub.coalesced == 1

        bus.publish(stream.next(CHECKPOINT))
        assert sub.closed and sub.reason == FELL_BEHIND
        assert bus.subscriber_count == 0
        bus.publish(stream.next(EPOCH))  # no longer delivered
        assert [await sub.get() for _ in range(4)] == queued
        with pytest.raises(SubscriptionClosed) as closed:
            await sub.get()
        assert closed.value.reason == FELL_BEHIND

    within_deadline(scenario())


def test_close_wakes_a_pending_get_and_ends_iteration() -> None:
    async def scenario() -> None:
        bus = EventBus()
        waiting = bus.subscribe()
        pending_get = asyncio.create_task(waiting.get())
        await asyncio.sleep(0)  # let it start waiting
        assert not pending_get.done()
        waiting.close("bye")
        with pytest.raises(SubscriptionClosed) as closed:
            await pending_get
        assert closed.value.reason == "bye"
        with pytest.raises(SubscriptionClosed):
            waiting.get_nowait()

        iterated = bus.subscribe("a")
        reader = asyncio.create_task(read_all(iterated))
        stream = Stream("a")
        bus.publish_many([stream.next(EPOCH), stream.next(STEP)])
        await asyncio.sleep(0)
        bus.publish(stream.next(CHECKPOINT))
        bus.unsubscribe(iterated)
        bus.unsubscribe(iterated)  # idempotent
        assert [e.seq for e in await reader] == [1, 2, 3]
        assert iterated.reason == "unsubscribed"
        assert bus.subscriber_count == 0

    within_deadline(scenario())


def test_get_nowait_returns_none_while_open_and_empty() -> None:
    bus = EventBus()
    sub = bus.subscribe()
    assert sub.get_nowait() is None
    event = Stream("a").next(EPOCH)
    bus.publish(event)
    assert sub.get_nowait() is event
    assert sub.get_nowait() is None
