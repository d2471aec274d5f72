"""The watch page through a real nginx with the generated config: Chromium pays and plays,
its live status arriving over the WebSocket through nginx, the media served by nginx
itself after the service's decision."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from tests.browser.test_watch_page import shot, until
from tests.gate.conftest import DEMO_SEGMENTS, write_catalog
from tests.nginx_process import Edge, edge_in_front

pytestmark = pytest.mark.browser


@pytest.fixture
async def edge(tmp_path: Path,
               aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[Edge]:
    catalog = write_catalog(tmp_path / "streams.toml", [
        {"id": "vod", "title": "Served by nginx", "price": 1000,
         "origin": f"file://{DEMO_SEGMENTS}/", "playlist": "loop.m3u8"},
    ])
    edge = await edge_in_front(tmp_path, aiohttp_server, catalog)
    yield edge
    edge.stop()


async def test_the_watch_page_pays_and_plays_through_nginx(browser: Any, edge: Edge) -> None:
    context = await browser.new_context(locale="id-ID")
    page = await context.new_page()
    sockets: list[str] = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    await page.goto(f"{edge.url}/watch/vod")
    await until(page, "document.getElementById('status').textContent === 'Menunggu pembayaran…'")
    await until(page, "!document.getElementById('simulate').disabled")
    await page.get_by_role("button", name="Simulasikan pembayaran").click()

    # The push came over the WebSocket through nginx; the page turns into the player.
    await page.locator("#player-panel").wait_for(state="visible", timeout=15_000)
    await until(page, "document.getElementById('video').currentTime > 1.5", 30)
    await shot(page, "6-playing-behind-nginx")
    assert sockets and all(url.startswith(f"ws://127.0.0.1:{edge.port}/ws?") for url in sockets)
    assert errors == []
    # The service decided (/gate/auth) and nginx served every playlist and segment.
    answered = edge.answered[0]
    assert "/gate/auth" in answered and "/ws" in answered
    assert not [path for path in answered if path.startswith("/hls/")]
    await context.close()
