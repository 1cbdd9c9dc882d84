"""The dashboard mounted under a path prefix (a Starlette Mount, as behind a reverse proxy
that forwards /distill/ to it), served by a real uvicorn on 127.0.0.1.

Every page is crawled: each href, src, form action, hx-get/hx-post and data-*-url it
names is requested, and must stay under the prefix and be a route (a POST-only one
answers a GET with 405, never 404). The WebSocket addresses the pages name are opened,
and the fragments they push are crawled too. A real browser opens a live run page and
its socket connects under the prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin, urlsplit

import httpx
import pytest
import uvicorn
from helpers import CHROMIUM, CHROMIUM_ARGS, stamp, write_preview_run
from starlette.applications import Starlette
from starlette.routing import Match, Mount
from waiting import DEADLINE, wait_until

from distill.events import RunQueued, RunStarted
from distill.paths import models_dir
from distill.server.serve import ServerThread, uvicorn_config
from distill.server.settings import ServerSettings

PREFIX = "/distill"
URL_ATTRIBUTES = {"href", "src", "action", "formaction", "hx-get", "hx-post", "data-live"}
LIVE_RUN = "live-run"


class MountedServer(ServerThread):
    """A ServerThread whose app is mounted at PREFIX inside another Starlette app."""

    def __init__(self, settings: ServerSettings) -> None:
        super().__init__(settings)
        inner = self.app

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            async with inner.router.lifespan_context(inner):  # a Mount runs none itself
                yield

        outer = Starlette(routes=[Mount(PREFIX, app=inner)], lifespan=lifespan)
        self.server = uvicorn.Server(uvicorn_config(settings, outer))


class Links(HTMLParser):
    """Every URL a page names, with whether a GET is what the page would send."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str, bool]] = []  # (attribute, url, fetched by GET)
        self._form_method = "get"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {key: value for key, value in attrs if value is not None}
        if tag == "form":
            self._form_method = named.get("method", "get").lower()
        for key, value in named.items():
            if key in URL_ATTRIBUTES or (key.startswith("data-") and key.endswith("-url")):
                by_get = key in ("href", "src", "hx-get") or (
                    key == "action" and self._form_method == "get"
                )
                self.found.append((key, value, by_get))


def links_of(html: str) -> list[tuple[str, str, bool]]:
    parser = Links()
    parser.feed(html)
    return parser.found


def posts_to_a_route(server: ServerThread, path: str) -> bool:
    """Whether a POST to `path` (under PREFIX) reaches a route of the app, not its 404.
    Asked of the router rather than sent: a POST would act (train, delete, rename)."""
    scope = {"type": "http", "method": "POST", "path": urlsplit(path).path.removeprefix(PREFIX)}
    scope["root_path"] = ""
    for route in server.app.routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return True
    return False


@pytest.fixture(scope="module")
def mounted(kit: dict, tmp_path_factory) -> Iterator[dict]:
    """The server under PREFIX: `kit` in its library with a generated clip and a saved
    edit, a finished run with previews, and a run still running (for the live page)."""
    home = tmp_path_factory.mktemp("mounted") / "data"
    shutil.copy(kit["model"], models_dir(home) / "kit.distill")
    settings = ServerSettings.for_host(home, "127.0.0.1", 0, allowed_roots=(kit["base"],))
    with MountedServer(settings) as server:
        write_preview_run(server, "done-run", decoder_stage=True)

        async def running() -> None:
            store = server.core.store
            await store.create_run(LIVE_RUN, "vqvae", str(kit["sounds"]), {})
            await store.append(stamp(LIVE_RUN, [
                RunQueued("vqvae", str(kit["sounds"]), {}),
                RunStarted("vqvae", str(kit["sounds"]), 2, 0, 1, {}),
            ]))  # fmt: skip

        server.call(running())
        base = server.url + PREFIX
        origin = f"http://127.0.0.1:{server.info.port}"
        client = httpx.Client(
            headers={"Origin": origin}, trust_env=False, timeout=120, follow_redirects=True
        )
        with client as http:
            # Through the prefix, the way the pages send them: a generate request, an edit.
            generate = http.post(
                f"{base}/models/kit/generate", data={"count": "1", "seconds": "0.5"}
            )
            assert generate.status_code == 200 and generate.url.path.startswith(PREFIX)
            save = http.post(
                f"{base}/models/kit/edit/save", json={"grid": kit["grid"], "name": "e1"}
            )
            assert save.status_code == 200, save.text
            clip = f'<audio controls preload="none" src="{PREFIX}/models/kit/generated/'
            wait_until(
                lambda: clip in http.get(f"{base}/models/kit").text,
                what="the generated clip on the model page",
            )
            yield {"server": server, "base": base, "http": http}


def test_every_link_and_form_of_every_page_stays_under_the_prefix(mounted) -> None:
    server, http = mounted["server"], mounted["http"]
    root = mounted["base"] + "/"
    queue, seen, sockets = [root], {root}, set()
    checked = 0
    while queue:
        url = queue.pop()
        page = http.get(url)
        assert page.status_code == 200, f"{url}: {page.status_code}"
        assert urlsplit(str(page.url)).path.startswith(PREFIX + "/"), f"{url} left the prefix"
        if "text/html" not in page.headers.get("content-type", ""):
            continue
        for attribute, link, by_get in links_of(page.text):
            if link.startswith(("data:", "blob:", "#")) or not link:
                continue
            absolute, _ = urldefrag(urljoin(url, link))
            path = urlsplit(absolute).path
            assert absolute.startswith(server.url), f"{url}: {attribute}={link} leaves the server"
            assert path.startswith(PREFIX + "/"), f"{url}: {attribute}={link} is not under {PREFIX}"
            checked += 1
            if attribute == "data-live":
                sockets.add(path)
            elif not by_get:  # posted by the page: some route must take the POST
                assert posts_to_a_route(server, path), f"{url}: {attribute}={link}: no route"
            elif absolute not in seen:
                seen.add(absolute)
                queue.append(absolute)
    assert checked > 100 and len(seen) > 30, (checked, len(seen))  # pages, previews, clips
    run_stream = f"{PREFIX}/ws/runs/{LIVE_RUN}"
    assert {f"{PREFIX}/ws/dashboard", run_stream} <= sockets

    async def first_message(path: str) -> str:
        from websockets.asyncio.client import connect

        origin = f"http://127.0.0.1:{server.info.port}"
        async with connect(server.ws_url + path, proxy=None, origin=origin) as ws:
            return await asyncio.wait_for(ws.recv(), DEADLINE)

    for path in sorted(sockets):
        pushed = asyncio.run(first_message(path))
        links = [link for _, link, _ in links_of(pushed)]
        assert links, f"{path} pushed no links to check"
        for link in links:  # the pushed fragments link under the prefix too
            assert link.startswith(PREFIX + "/"), f"{path} pushed {link}"
            target = mounted["base"] + link.removeprefix(PREFIX)
            assert posts_to_a_route(server, link) or http.get(target).status_code == 200, link


def test_a_form_redirects_under_the_prefix(mounted) -> None:
    http, base = mounted["http"], mounted["base"]
    renamed = http.post(
        f"{base}/models/kit/rename", data={"new_name": "kit-2"}, follow_redirects=False
    )
    assert renamed.status_code == 303, renamed.text
    assert renamed.headers["location"].startswith(f"{PREFIX}/models")
    assert "kit-2" in http.get(base + renamed.headers["location"].removeprefix(PREFIX)).text


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (make install)")
def test_the_live_run_page_connects_its_websocket_under_the_prefix(mounted) -> None:
    from playwright.sync_api import sync_playwright

    server = mounted["server"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(DEADLINE * 1000)
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            sockets: list[str] = []
            page.on("websocket", lambda ws: sockets.append(ws.url))
            page.goto(f"{mounted['base']}/runs/{LIVE_RUN}")
            page.locator("body[data-socket='open']").wait_for()
            assert [urlsplit(url).path for url in sockets] == [f"{PREFIX}/ws/runs/{LIVE_RUN}"]
            assert page.locator("#run-status a, #run-status form").count() >= 1
            outside = [u for u in requested if not urlsplit(u).path.startswith(PREFIX + "/")]
            assert outside == [], f"the page asked outside {PREFIX}: {outside}"
            assert all(u.startswith((server.url, server.ws_url)) for u in requested)
        finally:
            browser.close()
