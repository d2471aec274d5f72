"""Issue 27, point 5, in the system Chromium at phone width in Indonesian and desktop
width in English: the console's health column gives a state and a short reason in the
console's language, a revoked session's devices are neither listed as playing nor
offered to be ended, and the API page groups its operations by tag. Screenshots go to
test-output/screenshots/."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from gateway.app import create_app
from gateway.openapi import TAGS
from gateway.routes import SWAGGER_UI_DIR
from gateway.settings import PACKAGE_DIR
from tests.browser.conftest import page_problems, signed_in_console
from tests.browser.test_watch_page import shot
from tests.conftest import IN_CI, make_settings
from tests.gate.conftest import write_catalog
from tests.server_process import free_port

pytestmark = pytest.mark.browser

DEMO_SEGMENTS = PACKAGE_DIR / "demo" / "live"
PHONE = {"viewport": {"width": 390, "height": 844}, "locale": "id-ID"}
DESKTOP = {"viewport": {"width": 1280, "height": 800}, "locale": "en-US"}
VIEWERS = [pytest.param(PHONE, id="phone-id"), pytest.param(DESKTOP, id="desktop-en")]
TEXT = {
    "id-ID": {"up": "Aktif", "down": "Mati", "unreachable": "origin tidak bisa dihubungi",
              "sessions": "Sesi", "search": "Cari", "revoke": "Hentikan akses",
              "playing": "sedang diputar", "ended_early": "Dihentikan lebih awal"},
    "en-US": {"up": "Up", "down": "Down", "unreachable": "origin unreachable",
              "sessions": "Sessions", "search": "Search", "revoke": "End access",
              "playing": "playing", "ended_early": "Ended early"},
}


@pytest.fixture
async def console_site(tmp_path: Path,
                       aiohttp_server: Callable[..., Awaitable[TestServer]]) -> str:
    catalog = write_catalog(tmp_path / "streams.toml", [
        {"id": "demo", "title": "Demo Live", "price": 1000,
         "origin": f"file://{DEMO_SEGMENTS}/", "loop": True},
        # An origin nobody answers at: offline after its (here 1 s) grace.
        {"id": "down", "title": "Origin Mati", "price": 2000,
         "origin": f"http://127.0.0.1:{free_port()}/"},
    ])
    settings = make_settings(tmp_path, GATEWAY_STREAMS=str(catalog),
                             GATEWAY_STREAM_CHECK_INTERVAL_SECONDS="1",
                             GATEWAY_STREAM_OFFLINE_AFTER_SECONDS="1")
    server = await aiohttp_server(create_app(settings))
    return str(server.make_url("/")).rstrip("/")


async def buy_and_play(browser: Any, site: str) -> dict[str, Any]:
    """A viewer buys the demo and its player fetches the playlist: a device seen playing."""
    context = await browser.new_context()
    request = context.request
    qr = (await (await request.post(f"{site}/api/generate-qris",
                                    data={"streamId": "demo"})).json())["data"]
    assert (await request.post(f"{site}/simulator/pay/{qr['trxId']}")).ok
    access = (await (await request.get(f"{site}/api/check-access",
                                       params={"streamId": "demo"})).json())["data"]
    assert (await request.get(site + access["playbackUrl"])).ok
    await context.close()
    return dict(qr)


async def fits(page: Any, viewer: dict[str, Any]) -> None:
    width = viewer["viewport"]["width"]
    assert await page.evaluate("document.documentElement.scrollWidth") <= width


@pytest.mark.parametrize("viewer", VIEWERS)
async def test_health_says_state_and_reason_and_a_revoked_session_plays_nowhere(
        browser: Any, console_site: str, viewer: dict[str, Any]) -> None:
    site, text = console_site, TEXT[viewer["locale"]]
    sold = await buy_and_play(browser, site)
    context, page = await signed_in_console(browser, site, **viewer)
    problems = page_problems(page)

    # The dashboard: the dead origin's row says "down" and why, in the console's words.
    down = page.locator("tr[data-stream=down] .health")
    deadline = time.monotonic() + 15
    while text["down"] not in (await down.text_content() or ""):
        assert time.monotonic() < deadline, await down.text_content()
        await asyncio.sleep(0.5)
        await page.reload()
    assert await down.locator(".pill").text_content() == text["down"]
    assert await down.locator(".reason").text_content() == text["unreachable"]
    demo = page.locator("tr[data-stream=demo] .health")
    assert await demo.locator(".pill").text_content() == text["up"]
    await fits(page, viewer)
    await shot(page, f"27-5-health-{viewer['locale']}")

    # The session, found and ended: its device is no longer listed as playing.
    await page.get_by_role("link", name=text["sessions"], exact=True).click()
    await page.fill("#q", sold["trxId"])
    await page.get_by_role("button", name=text["search"]).click()
    session = page.locator(f"article[data-session='{sold['sessionId']}']")
    await session.wait_for()
    assert text["playing"] in (await session.locator("ul.devices .pill").all_text_contents())
    assert await session.locator("form.end-device").count() == 1
    page.once("dialog", lambda dialog: dialog.accept())
    await session.get_by_role("button", name=text["revoke"]).click()
    await page.locator(".notice").wait_for()
    session = page.locator(f"article[data-session='{sold['sessionId']}']")
    assert text["ended_early"] in (await session.locator(".grants").text_content() or "")
    assert text["playing"] not in await session.locator("ul.devices .pill").all_text_contents()
    # Nothing left to end: no device's button is offered.
    assert await session.locator("form.end-device").count() == 0
    await fits(page, viewer)
    await shot(page, f"27-5-revoked-devices-{viewer['locale']}")
    assert problems == []
    await context.close()


@pytest.mark.parametrize("viewer", VIEWERS)
async def test_the_api_page_groups_operations_by_tag(browser: Any, console_site: str,
                                                     viewer: dict[str, Any]) -> None:
    if not (SWAGGER_UI_DIR / "swagger-ui-bundle.js").is_file():
        message = "Swagger UI is not installed (npm ci)"
        if IN_CI:
            pytest.fail(f"{message}: .ci/run installs it")
        pytest.skip(f"NOT TESTED: {message}")
    context = await browser.new_context(**viewer)
    page = await context.new_page()
    await page.goto(f"{console_site}/api/docs")
    await page.locator(".opblock-tag-section .opblock").first.wait_for()
    tags = await page.locator(".opblock-tag-section .opblock-tag").evaluate_all(
        "headings => headings.map(h => h.dataset.tag)")
    assert tags == list(TAGS)
    # Every operation sits under a tag: none in a catch-all "default" group.
    everywhere = await page.locator(".opblock").count()
    tagged = await page.locator(".opblock-tag-section .opblock").count()
    assert everywhere == tagged > 10
    await shot(page, f"27-5-api-tags-{viewer['locale']}")
    await context.close()
