"""'Watch here instead' in the system Chromium: a purchase allowed on one device plays in
one browser; the same viewer opens it elsewhere, is told (in Indonesian or English) that
it plays on another device, moves it there, and the first browser stops."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from tests.browser.test_watch_page import shot, until
from tests.conftest import make_settings

pytestmark = pytest.mark.browser

VIDEO_TIME = "document.getElementById('video').currentTime"


@pytest.fixture
async def one_device_site(tmp_path: Path,
                          aiohttp_server: Callable[..., Awaitable[TestServer]]) -> str:
    # Both browsers run on this machine: each sends the address it "plays from" the way a
    # trusted proxy in front of the service would, so they are two places.
    settings = make_settings(tmp_path, GATEWAY_MAX_DEVICES="1",
                             GATEWAY_TRUSTED_PROXIES="127.0.0.1")
    server = await aiohttp_server(create_app(settings))
    return str(server.make_url("/")).rstrip("/")


async def test_watch_here_instead_moves_playback_to_this_browser(
        browser: Any, one_device_site: str) -> None:
    site = one_device_site
    home = await browser.new_context(locale="id-ID",
                                     extra_http_headers={"X-Forwarded-For": "203.0.113.1"})
    qr = (await (await home.request.post(f"{site}/api/generate-qris",
                                         data={"streamId": "demo"})).json())["data"]
    await home.request.post(f"{site}/simulator/pay/{qr['trxId']}")
    at_home = await home.new_page()
    await at_home.goto(f"{site}/watch/demo")
    await until(at_home, f"{VIDEO_TIME} > 1", 30)

    # The same viewer (their cookie) in a browser somewhere else.
    away = await browser.new_context(locale="en-US",
                                     extra_http_headers={"X-Forwarded-For": "203.0.113.2"})
    await away.add_cookies([cookie for cookie in await home.cookies()
                            if cookie["name"] == "viewer"])
    elsewhere = await away.new_page()
    await elsewhere.goto(f"{site}/watch/demo")
    panel = elsewhere.locator("#device-panel")
    await panel.wait_for(state="visible", timeout=10_000)
    assert await elsewhere.locator("#player-panel").is_hidden()
    assert await elsewhere.locator("#pay-panel").is_hidden()
    assert await elsewhere.locator("#device-heading").text_content() == (
        "Playing on another device")
    await shot(elsewhere, "6-device-limit-en")

    await elsewhere.get_by_role("button", name="Watch here instead").click()
    await elsewhere.locator("#player-panel").wait_for(state="visible", timeout=10_000)
    await until(elsewhere, f"{VIDEO_TIME} > 1", 30)
    assert await elsewhere.evaluate("document.getElementById('video').paused") is False

    # The first browser is stopped at its next request, and says why, in Indonesian.
    home_panel = at_home.locator("#device-panel")
    await home_panel.wait_for(state="visible", timeout=30_000)
    assert await at_home.locator("#device-heading").text_content() == (
        "Sedang diputar di perangkat lain")
    assert await at_home.evaluate("document.getElementById('video').paused") is True
    assert await at_home.locator("#pay-panel").is_hidden()
    await shot(at_home, "7-device-moved-away-id")
    # And it can take playback back the same way.
    await at_home.get_by_role("button", name="Tonton di sini saja").click()
    await until(at_home, f"{VIDEO_TIME} > 1", 30)
    await home.close()
    await away.close()
