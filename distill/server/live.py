"""Live streams: one WebSocket per page, each with a bounded outbox and one relay task.

Per client there are four small tasks, so that nothing a client does (or fails to do)
reaches the bus or the training:

- a reader follows the events the page shows (through the core: the store first, then
  live, by seq, so a page opened mid-run or a reconnecting socket misses nothing and
  gets nothing twice) and only notes what changed: O(1) per event, no rendering;
- a flusher renders what changed, at most once per MIN_INTERVAL (leading edge: a quiet
  stream's first event goes out at once), and puts the message in the outbox;
- the relay sends the outbox in order. A burst (a page's history replayed on connect)
  waits for room in the outbox; a client whose outbox stays full for SLOW_CLIENT_S is
  dropped with close code 4000 ("resync": reconnect with your last seq). Only that
  client's own tasks ever wait on it: the bus hands events to its subscription without
  waiting (and closes a subscription that falls too far behind, which follow() turns
  into a re-read from the store). The websockets docs (topics/broadcast) explain why
  awaiting each client's send in turn would instead stall everyone behind the slowest;
- a listener reads what the client sends: a message over the size limit closes the socket
  with 1009, a malformed one gets an error message back, never a crash.

Page streams push HTML fragments whose root elements carry the ids of the elements they
replace (web/static/live.js swaps them in); the first element, `live-seq`, carries the
last seq the fragments include, which a reconnecting page sends back as `after`.
The event stream (`/ws/runs/{id}/events`, for `distill train --follow` through a
server) pushes each event as JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket, WebSocketDisconnect

from distill.core.bus import SubscriptionClosed
from distill.core.core import Core, RunError
from distill.events import STEP_KINDS, TERMINAL_KINDS
from distill.server.inputs import InputError
from distill.server.views import PARTS_OF_KIND, RUN_PARTS, dashboard_context, run_context

logger = logging.getLogger(__name__)

MIN_INTERVAL = 0.25  # seconds between two messages to one page: at most 4 updates/s
OUTBOX_SIZE = 32  # messages waiting for a client to read them
SLOW_CLIENT_S = 10.0  # a client whose outbox stays full this long is dropped
NORMAL_CLOSE = 1000
POLICY_VIOLATION = 1008
TOO_BIG = 1009
SERVER_ERROR = 1011
RESYNC = 4000  # "you fell behind: reconnect with your last seq"
DASHBOARD_KINDS = frozenset(
    k for k, parts in PARTS_OF_KIND.items() if {"status", "progress"} & parts
)


@dataclass
class LiveStats:
    """Counters a test or benchmark reads: clients now, and clients dropped for lagging."""

    clients: int = 0
    dropped: int = 0


class Client:
    """One WebSocket: a bounded outbox, the relay that drains it, and the listener."""

    _CLOSE = object()

    def __init__(self, ws: WebSocket, max_message_bytes: int, stats: LiveStats) -> None:
        self.ws = ws
        self.max_message_bytes = max_message_bytes
        self.stats = stats
        self.outbox: asyncio.Queue = asyncio.Queue(maxsize=OUTBOX_SIZE)
        self.done = asyncio.Event()
        self._close: tuple[int, str] = (NORMAL_CLOSE, "")

    def offer(self, message) -> bool:
        """Queue a message without waiting; False when the outbox is full."""
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:
            return False
        return True

    async def push(self, message) -> bool:
        """Queue a message, waiting for room; False when the client is too far behind."""
        if self.offer(message):
            return True
        try:
            await asyncio.wait_for(self.outbox.put(message), SLOW_CLIENT_S)
        except TimeoutError:
            return False
        return True

    async def finish(self, code: int = NORMAL_CLOSE, reason: str = "") -> None:
        """Close after everything already queued has been sent."""
        self._close = (code, reason[:120])
        if not await self.push(self._CLOSE):
            self.done.set()  # cannot even queue the close: the relay is stuck, give up

    async def relay(self) -> None:
        try:
            while True:
                message = await self.outbox.get()
                if message is self._CLOSE:
                    await self.ws.close(*self._close)
                    return
                await self.ws.send_text(message)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client went away
        finally:
            self.done.set()

    async def listen(self, on_message: Callable[[dict], None] | None = None) -> None:
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("text")
                if data is None:
                    data = message.get("bytes") or b""
                if len(data) > self.max_message_bytes:
                    await self.ws.close(TOO_BIG, "message too big")
                    return
                self.answer(data, on_message)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return
        finally:
            self.done.set()

    def answer(self, data: str | bytes, on_message: Callable[[dict], None] | None) -> None:
        """A client may send {"type": "ping"}; anything else gets an error, not a crash."""
        try:
            request = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            request = None
        if not isinstance(request, dict) or not isinstance(request.get("type"), str):
            reply = {"type": "error", "message": 'expected a JSON object like {"type": "ping"}'}
        elif request["type"] == "ping":
            reply = {"type": "pong"}
        else:
            reply = {"type": "error", "message": f"unknown message type {request['type']!r}"}
        if on_message is not None and reply["type"] == "pong":
            on_message(request)
        self.offer(json.dumps(reply))

    async def resync(self) -> None:
        """Drop a client that fell behind: tell it to reconnect from its last seq."""
        self.stats.dropped += 1
        try:
            await asyncio.wait_for(self.ws.close(RESYNC, "fell behind: reconnect"), timeout=2)
        except (TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
            pass
        self.done.set()


async def serve_client(
    ws: WebSocket, max_message_bytes: int, stats: LiveStats, produce: Callable[[Client], Awaitable]
) -> None:
    """Accept, then run the relay, the listener and `produce` until one side ends."""
    await ws.accept()
    client = Client(ws, max_message_bytes, stats)
    stats.clients += 1

    async def producer() -> None:
        try:
            await produce(client)
        except (RunError, InputError) as error:  # an unknown run, a bad `after`
            await client.finish(POLICY_VIOLATION, str(error))
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("live stream failed")
            await client.finish(SERVER_ERROR, "server error")

    tasks = [
        asyncio.create_task(client.relay()),
        asyncio.create_task(client.listen()),
        asyncio.create_task(producer()),
    ]
    try:
        await client.done.wait()
    finally:
        stats.clients -= 1
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class Flusher:
    """Renders what changed at most once per MIN_INTERVAL; what the reader and flusher share."""

    def __init__(self, client: Client, render: Callable[[set[str], int], Awaitable[str]]):
        self.client = client
        self.render = render
        self.dirty: set[str] = set()
        self.seq = 0  # the last seq the reader has noted
        self.ended = False
        self._wake = asyncio.Event()

    def note(self, parts: frozenset[str] | set[str], seq: int | None = None) -> None:
        if seq is not None:
            self.seq = seq
        if parts:
            self.dirty |= parts
            self._wake.set()

    def end(self) -> None:
        self.ended = True
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last = -MIN_INTERVAL
        while True:
            await self._wake.wait()
            self._wake.clear()
            wait = last + MIN_INTERVAL - loop.time()
            if wait > 0 and not self.ended:
                await asyncio.sleep(wait)  # let changes gather: one message for all of them
            if self.dirty:
                parts, self.dirty = self.dirty, set()
                message = await self.render(parts, self.seq)
                last = loop.time()
                if not await self.client.push(message):
                    await self.client.resync()
                    return
            if self.ended and not self.dirty:
                await self.client.finish(NORMAL_CLOSE, "the run ended")
                return


class FragmentCache:
    """Rendered messages shared by every client at the same point of the same run.

    Fifty tabs on one run would otherwise each query and render the same fragments;
    a render in progress is shared too (its future is cached, not its result).
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._items: OrderedDict[tuple, asyncio.Future] = OrderedDict()

    async def get(self, key: tuple, make: Callable[[], Awaitable[str]]) -> str:
        future = self._items.get(key)
        if future is None:
            future = asyncio.ensure_future(make())
            self._items[key] = future
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(key)
        try:
            return await asyncio.shield(future)
        except Exception:
            self._items.pop(key, None)
            raise


class Streams:
    """The three kinds of live stream, over one core and one set of templates."""

    def __init__(self, core: Core, render_fragment: Callable[[str, dict], str]) -> None:
        self.core = core
        self.render_fragment = render_fragment
        self.cache = FragmentCache()
        self.stats = LiveStats()

    # -- the run page ----------------------------------------------------------------

    async def run_page(self, client: Client, run_id: str, after: int) -> None:
        """Fragments of one run's page; ends (1000) after the run's terminal event."""
        step: dict | None = None

        connection = client.ws  # its root path is the one the fragments' links go under

        async def render(parts: set[str], seq: int) -> str:
            key = (connection.scope.get("root_path", ""), run_id, frozenset(parts), seq)
            return await self.cache.get(
                key, lambda: self._render_run(connection, run_id, parts, seq, step)
            )

        flusher = Flusher(client, render)
        flushing = asyncio.create_task(flusher.run())
        try:
            if after == 0:
                flusher.note(set(RUN_PARTS))  # a fresh page gets every part
            async for event in self.core.follow(run_id, after_seq=after):
                if event.kind in STEP_KINDS:
                    step = event.payload
                flusher.note(PARTS_OF_KIND.get(event.kind, frozenset()), event.seq)
            flusher.end()
            await flushing
        finally:
            flushing.cancel()

    async def _render_run(
        self, connection: HTTPConnection, run_id: str, parts: set[str], seq: int,
        step: dict | None,
    ) -> str:  # fmt: skip
        context = await run_context(self.core.store, run_id, frozenset(parts), step)
        if context is None:
            raise RunError(f"no run {run_id!r}")
        context["request"] = connection  # url_for in the fragments, as on the first paint
        html = [f'<span id="live-seq" data-seq="{seq}" hidden></span>']
        html += [self.render_fragment(f"_run_{part}.html", context) for part in context["parts"]]
        return "\n".join(html)

    # -- the dashboard ---------------------------------------------------------------

    async def dashboard(self, client: Client) -> None:
        """Active runs with their progress and the recent runs, re-rendered when any run moves.

        Recent runs are part of it so that a run that starts and ends between two
        renders (a fast run, at most 4 renders a second) still shows up on the page.
        """
        steps: dict[str, dict] = {}

        async def render(parts: set[str], seq: int) -> str:
            context = await dashboard_context(self.core.store, steps)
            context["request"] = client.ws  # url_for in the fragments, as on the first paint
            active = self.render_fragment("_active_runs.html", context)
            return active + "\n" + self.render_fragment("_recent_runs.html", context)

        flusher = Flusher(client, render)
        flushing = asyncio.create_task(flusher.run())
        try:
            while True:
                sub = self.core.bus.subscribe(None)
                flusher.note({"active"})  # (re)subscribed: render from the store
                try:
                    while True:
                        event = await sub.get()
                        if event.kind in STEP_KINDS:
                            steps[event.run_id] = event.payload
                        elif event.kind in TERMINAL_KINDS:
                            steps.pop(event.run_id, None)
                        if event.kind in DASHBOARD_KINDS:
                            flusher.note({"active"})
                        if flushing.done():
                            return
                except SubscriptionClosed:
                    continue  # fell behind: subscribe again and re-read the store
                finally:
                    self.core.bus.unsubscribe(sub)
        finally:
            flushing.cancel()

    # -- the event stream (CLI) ------------------------------------------------------

    async def run_events(self, client: Client, run_id: str, after: int) -> None:
        """Every event after `after` as JSON, in seq order; closes (1000) after the last."""
        async for event in self.core.follow(run_id, after_seq=after):
            if not await client.push(json.dumps(event.to_dict())):
                await client.resync()
                return
        await client.finish(NORMAL_CLOSE, "the run ended")
